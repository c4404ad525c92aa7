//! An operator's actions on one session (docs/operations.md): redeliver its outcome, track it
//! again, poll it now. Each is committed to the store before it is answered, and recorded on
//! the session's history in the same transaction.

use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bankconnect_store::Retrack;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::body::{self, path_segment, session_id};
use super::App;
use crate::error::{ApiError, ErrorBody};
use crate::record::{record_body, RecordBody};
use crate::tracking::Command;

/// The action routes (behind the bearer check).
pub(super) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(redeliver))
        .routes(routes!(retrack))
        .routes(routes!(poll))
}

/// What a redelivery may be told.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RedeliverBody {
    /// Deliver again even a delivery the back end acknowledged already.
    #[serde(default)]
    pub force: bool,
}

/// No parameters: no body, or `{}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EmptyBody {}

#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/redeliver",
    tag = "actions",
    params(("id" = String, Path, description = "the session id")),
    request_body(content = Option<RedeliverBody>, description = "optional: {\"force\": true} to deliver a delivered one again", content_type = "application/json"),
    responses(
        (status = 202, description = "pending again, attempted at once with the same webhook-id and a fresh schedule: the record", body = RecordBody),
        (status = 400, description = "bad id or body", body = ErrorBody),
        (status = 401, description = "missing or wrong bearer token", body = ErrorBody),
        (status = 403, description = "the read-only token may not change anything", body = ErrorBody),
        (status = 404, description = "unknown session", body = ErrorBody),
        (status = 409, description = "NOT_FINISHED (tracking or cancelled), ALREADY_DELIVERED (without force), NO_DELIVERY_TARGET (serve has no --deliver-to)", body = ErrorBody),
        (status = 415, description = "a body that is not application/json", body = ErrorBody),
        (status = 503, description = "the store did not answer; try again", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn redeliver(
    State(app): State<App>,
    headers: HeaderMap,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let id = session_id(&path_segment(id)?)?;
    let asked: RedeliverBody = body::optional_json(&headers, body, &app.body_budget).await?;
    let record = crate::actions::redeliver(&app, &id, asked.force).await?;
    Ok((StatusCode::ACCEPTED, Json(record_body(record))).into_response())
}

#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/retrack",
    tag = "actions",
    params(("id" = String, Path, description = "the session id")),
    request_body(content = Option<EmptyBody>, description = "none, or {}", content_type = "application/json"),
    responses(
        (status = 202, description = "tracked again (its old outcome stays in its history; the next one gets a new webhook-id): the record", body = RecordBody),
        (status = 400, description = "bad id or body", body = ErrorBody),
        (status = 401, description = "missing or wrong bearer token", body = ErrorBody),
        (status = 403, description = "the read-only token may not change anything", body = ErrorBody),
        (status = 404, description = "unknown session", body = ErrorBody),
        (status = 409, description = "TRACKING: it is being tracked already", body = ErrorBody),
        (status = 415, description = "a body that is not application/json", body = ErrorBody),
        (status = 503, description = "the store did not answer; try again", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn retrack(
    State(app): State<App>,
    headers: HeaderMap,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let id = session_id(&path_segment(id)?)?;
    let _: EmptyBody = body::optional_json(&headers, body, &app.body_budget).await?;
    let now = SystemTime::now();
    // Leased here in the same transaction: polled at once, with no claim.
    match app
        .store
        .retrack(&id, now, Some((&app.replica, now + app.hold)))
        .await
    {
        Ok(Retrack::Retracked(record)) => {
            app.metrics.operator_action("retrack");
            tracing::info!(session = %id, "session tracked again");
            let answer = record_body((*record).clone());
            let _ = app
                .commands
                .send(Command::Track(vec![*record], Vec::new()))
                .await;
            Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
        }
        Ok(Retrack::Tracking) => Err(crate::actions::conflict(
            "TRACKING",
            format!("session {id} is being tracked already"),
        )),
        Ok(_) => Err(ApiError::not_found(format!("no session {id}"))),
        Err(err) => Err(ApiError::store(&err)),
    }
}

/// What asking for a poll answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct PollAskedBody {
    /// The session.
    pub session_id: String,
    /// Always true: the replica holding it polls it within a second.
    pub poll_requested: bool,
}

#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/poll",
    tag = "actions",
    params(("id" = String, Path, description = "the session id")),
    request_body(content = Option<EmptyBody>, description = "none, or {}", content_type = "application/json"),
    responses(
        (status = 202, description = "asked: the replica holding the session polls it within a second", body = PollAskedBody),
        (status = 400, description = "bad id or body", body = ErrorBody),
        (status = 401, description = "missing or wrong bearer token", body = ErrorBody),
        (status = 403, description = "the read-only token may not change anything", body = ErrorBody),
        (status = 404, description = "unknown session", body = ErrorBody),
        (status = 409, description = "NOT_TRACKING: it is not being tracked", body = ErrorBody),
        (status = 415, description = "a body that is not application/json", body = ErrorBody),
        (status = 503, description = "the store did not answer; try again", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn poll(
    State(app): State<App>,
    headers: HeaderMap,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let id = session_id(&path_segment(id)?)?;
    let _: EmptyBody = body::optional_json(&headers, body, &app.body_budget).await?;
    crate::actions::poll_now(&app, &id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(PollAskedBody {
            session_id: id.as_str().to_owned(),
            poll_requested: true,
        }),
    )
        .into_response())
}
