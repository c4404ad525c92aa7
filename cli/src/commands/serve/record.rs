//! The JSON shapes of the service's API: session records, errors, deliveries.

use std::time::SystemTime;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bankconnect_store::SessionRecord;
use serde_json::Value;

/// RFC 3339 in UTC with milliseconds.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// Where a session stands.
#[derive(Debug, Clone, Copy, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StateBody {
    /// Being polled.
    Tracking,
    /// Ended with an outcome.
    Finished,
    /// Cancelled; no delivery.
    Cancelled,
}

/// Where a finished session's delivery stands.
#[derive(Debug, Clone, Copy, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DeliveryStateBody {
    /// No delivery (not finished, cancelled, or none configured).
    None,
    /// Not attempted yet.
    Pending,
    /// Answered 2xx.
    Delivered,
    /// Failed; will be retried.
    Failing,
    /// Failed on every attempt of the schedule.
    GivenUp,
}

/// A session's delivery.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct DeliveryBody {
    pub(crate) state: DeliveryStateBody,
    pub(crate) attempts: u32,
    pub(crate) last_error: Option<String>,
}

/// The replica polling a session, while tracking.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct LeaseBody {
    pub(crate) replica: String,
    /// RFC 3339.
    pub(crate) until: String,
}

/// A session record, as the API and deliveries show it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct RecordBody {
    pub(crate) session_id: String,
    pub(crate) reference: Option<String>,
    pub(crate) state: StateBody,
    /// RFC 3339.
    pub(crate) added_at: String,
    /// RFC 3339.
    pub(crate) updated_at: String,
    /// This session's own max wait, when not the service's.
    pub(crate) max_wait_ms: Option<u64>,
    /// The outcome object of the CLI contract, once finished.
    #[schema(value_type = Option<Object>)]
    pub(crate) outcome: Option<Value>,
    pub(crate) delivery: DeliveryBody,
    pub(crate) lease: Option<LeaseBody>,
}

/// A session record as the API and deliveries show it.
pub(crate) fn record_body(record: &SessionRecord) -> RecordBody {
    use bankconnect_store::{DeliveryState, SessionState};
    RecordBody {
        session_id: record.session_id.as_str().to_owned(),
        reference: record.reference.clone(),
        state: match record.state {
            SessionState::Finished => StateBody::Finished,
            SessionState::Cancelled => StateBody::Cancelled,
            _ => StateBody::Tracking,
        },
        added_at: rfc3339(record.added_at),
        updated_at: rfc3339(record.updated_at),
        max_wait_ms: record
            .max_wait
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        outcome: record.outcome.clone(),
        delivery: DeliveryBody {
            state: match record.delivery.state {
                DeliveryState::Pending => DeliveryStateBody::Pending,
                DeliveryState::Delivered => DeliveryStateBody::Delivered,
                DeliveryState::Failing => DeliveryStateBody::Failing,
                DeliveryState::GivenUp => DeliveryStateBody::GivenUp,
                _ => DeliveryStateBody::None,
            },
            attempts: record.delivery.attempts,
            last_error: record.delivery.last_error.clone(),
        },
        lease: record.lease.as_ref().map(|lease| LeaseBody {
            replica: lease.owner.clone(),
            until: rfc3339(lease.until),
        }),
    }
}

/// The record as JSON.
pub(crate) fn record_json(record: &SessionRecord) -> Value {
    serde_json::to_value(record_body(record)).unwrap_or(Value::Null)
}

/// `{"error": {"code", "message"}}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    pub(crate) error: ErrorDetailBody,
}

/// What went wrong.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorDetailBody {
    /// INVALID_REQUEST, UNAUTHORIZED, NOT_FOUND, METHOD_NOT_ALLOWED, PAYLOAD_TOO_LARGE, STORE_UNAVAILABLE.
    pub(crate) code: String,
    pub(crate) message: String,
}

/// An API error: `{"error": {"code", "message"}}` with its status.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    pub(crate) fn unavailable(err: &bankconnect_store::StoreError) -> Self {
        tracing::warn!(error = %err, "store unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "STORE_UNAVAILABLE",
            "the store did not answer; nothing was changed, try again",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetailBody {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        (self.status, axum::Json(body)).into_response()
    }
}
