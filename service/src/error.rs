//! The API's one error shape, `{"error": {"code", "message"}}` with its status, for every
//! failure (bad path segments, unknown routes and methods included).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bankconnect_store::StoreError;

/// `{"error": {"code", "message"}}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetailBody,
}

/// What went wrong.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct ErrorDetailBody {
    /// A stable code: INVALID_REQUEST, UNAUTHORIZED, NOT_FOUND, NOT_TRACKING, METHOD_NOT_ALLOWED, PAYLOAD_TOO_LARGE, UNSUPPORTED_MEDIA_TYPE, STORE_UNAVAILABLE, STORE_ERROR.
    pub code: String,
    /// One sentence for people.
    pub message: String,
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

    /// The store failed: 503 "try again" when a retry can help (the store is unreachable or
    /// busy), 500 when it cannot (a damaged row, a schema this build does not know).
    pub(crate) fn store(err: &StoreError) -> Self {
        if err.is_transient() {
            tracing::warn!(error = %err, "store unavailable");
            Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "STORE_UNAVAILABLE",
                "the store did not answer; nothing was changed, try again",
            )
        } else {
            tracing::error!(error = %err, "store error");
            Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "STORE_ERROR",
                "the store refused the operation; retrying will not help, see the service's log",
            )
        }
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
