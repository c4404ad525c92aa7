//! `GET /v1/stats`: store-wide counts, so every replica answers the same.

use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::App;
use crate::error::{ApiError, ErrorBody};
use crate::record::rfc3339;

/// The stats routes (behind the bearer check).
pub(super) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new().routes(routes!(stats))
}

/// Sessions per state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct SessionCountsBody {
    /// Being polled.
    pub tracking: u64,
    /// Ended with an outcome.
    pub finished: u64,
    /// Cancelled.
    pub cancelled: u64,
}

/// Deliveries per state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct DeliveryCountsBody {
    /// Sessions with no delivery.
    pub none: u64,
    /// Not attempted yet.
    pub pending: u64,
    /// Answered 2xx.
    pub delivered: u64,
    /// Failed; to be retried.
    pub failing: u64,
    /// Given up.
    pub given_up: u64,
}

impl From<&bankconnect_store::DeliveryCounts> for DeliveryCountsBody {
    fn from(c: &bankconnect_store::DeliveryCounts) -> Self {
        Self {
            none: c.none,
            pending: c.pending,
            delivered: c.delivered,
            failing: c.failing,
            given_up: c.given_up,
        }
    }
}

/// One error code and how often it came.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct CodeCountBody {
    /// The code (an account's or the API error's).
    pub code: String,
    /// Outcomes of the last 24 h that had it.
    pub count: u64,
}

/// The store-wide counts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct StatsBody {
    /// Sessions per state.
    pub sessions: SessionCountsBody,
    /// Deliveries per state.
    pub deliveries: DeliveryCountsBody,
    /// Outcomes committed in the last 24 h, by kind.
    pub outcomes_24h: std::collections::BTreeMap<String, u64>,
    /// The most frequent error codes of the last 24 h, most first (at most 10).
    pub top_error_codes_24h: Vec<CodeCountBody>,
    /// When the oldest session still tracking began tracking (RFC 3339).
    pub oldest_tracking_added_at: Option<String>,
    /// When the oldest undelivered outcome (pending or failing) was committed (RFC 3339).
    pub oldest_undelivered_at: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "stats",
    responses(
        (status = 200, description = "store-wide counts", body = StatsBody),
        (status = 401, description = "missing or wrong bearer token", body = ErrorBody),
        (status = 503, description = "the store did not answer; try again", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn stats(State(app): State<App>) -> Result<Json<StatsBody>, ApiError> {
    let since = SystemTime::now()
        .checked_sub(Duration::from_secs(24 * 3600))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let stats = app
        .store
        .stats(since)
        .await
        .map_err(|err| ApiError::store(&err))?;
    Ok(Json(StatsBody {
        sessions: SessionCountsBody {
            tracking: stats.sessions.tracking,
            finished: stats.sessions.finished,
            cancelled: stats.sessions.cancelled,
        },
        deliveries: DeliveryCountsBody::from(&stats.deliveries),
        outcomes_24h: stats.outcomes.into_iter().collect(),
        top_error_codes_24h: stats
            .top_error_codes
            .into_iter()
            .map(|(code, count)| CodeCountBody { code, count })
            .collect(),
        oldest_tracking_added_at: stats.oldest_tracking_added_at.map(rfc3339),
        oldest_undelivered_at: stats.oldest_undelivered_at.map(rfc3339),
    }))
}
