//! The JSON shapes of the service's API: session records, errors, deliveries.

use std::time::SystemTime;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bankconnect_store::SessionRecord;
use serde_json::{json, Value};

/// RFC 3339 in UTC with milliseconds.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// A session record as the API and deliveries show it.
pub(crate) fn record_json(record: &SessionRecord) -> Value {
    json!({
        "session_id": record.session_id,
        "reference": record.reference,
        "state": record.state.as_str(),
        "added_at": rfc3339(record.added_at),
        "updated_at": rfc3339(record.updated_at),
        "max_wait_ms": record.max_wait.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        "outcome": record.outcome,
        "delivery": {
            "state": record.delivery.state.as_str(),
            "attempts": record.delivery.attempts,
            "last_error": record.delivery.last_error,
        },
        "lease": record.lease.as_ref().map(|lease| json!({
            "replica": lease.owner,
            "until": rfc3339(lease.until),
        })),
    })
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
        (
            self.status,
            axum::Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}
