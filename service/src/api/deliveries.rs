//! Deliveries to the lender's back end as a whole (docs/operations.md): their health
//! (`GET /v1/delivery`), the fleet-wide pause for planned maintenance, and the recovery of
//! everything a dead back end missed, in one call.

use std::time::SystemTime;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use bankconnect_store::{DeliveryOverview, DeliveryState};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::body;
use super::session_actions::EmptyBody;
use super::stats::DeliveryCountsBody;
use super::App;
use crate::error::{ApiError, ErrorBody};
use crate::record::rfc3339;

/// The delivery routes (behind the bearer check).
pub(super) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(delivery))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(recover))
}

/// The last failed attempt.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct FailureBody {
    /// RFC 3339.
    pub at: String,
    /// Why it failed.
    pub error: String,
}

/// Deliveries' health and the switch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct DeliveryOverviewBody {
    /// Where deliveries go (`scheme://host[:port]/path`; never a query or credentials); null
    /// when serve delivers nowhere.
    pub target: Option<String>,
    /// Paused for the whole fleet: no attempt is made, none is counted.
    pub paused: bool,
    /// Not attempted yet.
    pub pending: u64,
    /// Failed; to be retried.
    pub failing: u64,
    /// Given up.
    pub given_up: u64,
    /// Every state's count.
    pub counts: DeliveryCountsBody,
    /// When the oldest undelivered outcome was committed (RFC 3339).
    pub oldest_undelivered_at: Option<String>,
    /// The last attempt answered 2xx (RFC 3339).
    pub last_success_at: Option<String>,
    /// The last failed attempt.
    pub last_failure: Option<FailureBody>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u64,
}

fn body_of(app: &App, overview: &DeliveryOverview) -> DeliveryOverviewBody {
    DeliveryOverviewBody {
        target: app.delivery_target.as_deref().map(str::to_owned),
        paused: overview.paused,
        pending: overview.counts.pending,
        failing: overview.counts.failing,
        given_up: overview.counts.given_up,
        counts: DeliveryCountsBody::from(&overview.counts),
        oldest_undelivered_at: overview.oldest_undelivered_at.map(rfc3339),
        last_success_at: overview.last_success_at.map(rfc3339),
        last_failure: overview
            .last_failure
            .as_ref()
            .map(|(at, error)| FailureBody {
                at: rfc3339(*at),
                error: error.clone(),
            }),
        consecutive_failures: overview.consecutive_failures,
    }
}

async fn overview(app: &App) -> Result<Json<DeliveryOverviewBody>, ApiError> {
    let overview = crate::actions::delivery_overview(app).await?;
    Ok(Json(body_of(app, &overview)))
}

#[utoipa::path(
    get,
    path = "/v1/delivery",
    tag = "delivery",
    responses(
        (status = 200, description = "deliveries' health and the switch", body = DeliveryOverviewBody),
        (status = 401, description = "missing or wrong bearer token", body = ErrorBody),
        (status = 503, description = "the store did not answer; try again", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn delivery(State(app): State<App>) -> Result<Json<DeliveryOverviewBody>, ApiError> {
    overview(&app).await
}

async fn switch(
    app: &App,
    headers: &HeaderMap,
    body: Body,
    paused: bool,
) -> Result<Json<DeliveryOverviewBody>, ApiError> {
    let _: EmptyBody = body::optional_json(headers, body, &app.body_budget).await?;
    let overview = crate::actions::switch_delivery(app, paused).await?;
    Ok(Json(body_of(app, &overview)))
}

#[utoipa::path(
    post,
    path = "/v1/delivery/pause",
    tag = "delivery",
    request_body(content = Option<EmptyBody>, description = "none, or {}", content_type = "application/json"),
    responses(
        (status = 200, description = "paused for the whole fleet (kept in the store)", body = DeliveryOverviewBody),
        (status = 400, description = "a body that is not {}", body = ErrorBody),
        (status = 401, description = "missing or wrong bearer token", body = ErrorBody),
        (status = 403, description = "the read-only token may not change anything", body = ErrorBody),
        (status = 415, description = "a body that is not application/json", body = ErrorBody),
        (status = 503, description = "the store did not answer; try again", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn pause(
    State(app): State<App>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<DeliveryOverviewBody>, ApiError> {
    switch(&app, &headers, body, true).await
}

#[utoipa::path(
    post,
    path = "/v1/delivery/resume",
    tag = "delivery",
    request_body(content = Option<EmptyBody>, description = "none, or {}", content_type = "application/json"),
    responses(
        (status = 200, description = "resumed: what is due is sent at once", body = DeliveryOverviewBody),
        (status = 400, description = "a body that is not {}", body = ErrorBody),
        (status = 401, description = "missing or wrong bearer token", body = ErrorBody),
        (status = 403, description = "the read-only token may not change anything", body = ErrorBody),
        (status = 415, description = "a body that is not application/json", body = ErrorBody),
        (status = 503, description = "the store did not answer; try again", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn resume(
    State(app): State<App>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<DeliveryOverviewBody>, ApiError> {
    switch(&app, &headers, body, false).await
}

/// A delivery state a recovery may requeue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RecoverState {
    /// Given up after the whole schedule.
    GivenUp,
    /// Failing, waiting for its next retry.
    Failing,
}

/// What to recover.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RecoverBody {
    /// Outcomes committed from this time on (RFC 3339); not further back than the retention.
    pub since: String,
    /// Up to (not including) this time (RFC 3339); default now.
    pub until: Option<String>,
    /// The delivery states to requeue (default `["given_up"]`).
    pub states: Option<Vec<RecoverState>>,
    /// Only count what would be requeued.
    #[serde(default)]
    pub dry_run: bool,
}

/// What a recovery matched and requeued.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct RecoveredBody {
    /// Deliveries that matched.
    pub matched: u64,
    /// Deliveries requeued (0 on a dry run).
    pub requeued: u64,
}

#[utoipa::path(
    post,
    path = "/v1/deliveries/recover",
    tag = "delivery",
    request_body(content = RecoverBody, content_type = "application/json"),
    responses(
        (status = 200, description = "every match requeued in one transaction (same webhook-ids, fresh schedules), or counted on a dry run", body = RecoveredBody),
        (status = 400, description = "bad body: a bad time, until before since, or since further back than the retention", body = ErrorBody),
        (status = 401, description = "missing or wrong bearer token", body = ErrorBody),
        (status = 403, description = "the read-only token may not change anything", body = ErrorBody),
        (status = 409, description = "NO_DELIVERY_TARGET: serve has no --deliver-to", body = ErrorBody),
        (status = 415, description = "not application/json", body = ErrorBody),
        (status = 503, description = "the store did not answer; try again", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn recover(
    State(app): State<App>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<RecoveredBody>, ApiError> {
    let asked: RecoverBody = body::json(&headers, body, &app.body_budget).await?;
    let now = SystemTime::now();
    let since = super::time::parse_rfc3339(&asked.since)
        .map_err(|err| ApiError::invalid(format!("bad since: {err}")))?;
    let until = match &asked.until {
        Some(text) => super::time::parse_rfc3339(text)
            .map_err(|err| ApiError::invalid(format!("bad until: {err}")))?,
        None => now,
    };
    let mut states: Vec<DeliveryState> = Vec::new();
    for state in asked.states.unwrap_or_else(|| vec![RecoverState::GivenUp]) {
        let state = match state {
            RecoverState::GivenUp => DeliveryState::GivenUp,
            RecoverState::Failing => DeliveryState::Failing,
        };
        if !states.contains(&state) {
            states.push(state);
        }
    }
    let recovered = crate::actions::recover(&app, since, until, &states, asked.dry_run).await?;
    Ok(Json(RecoveredBody {
        matched: recovered.matched,
        requeued: recovered.requeued,
    }))
}
