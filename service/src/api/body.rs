//! Reading what a client sends the API: a bounded `application/json` body, strict JSON
//! (duplicate keys refused, as at the webhook intake), then the documented type by serde; and
//! path segments. Every refusal is the JSON error shape.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use bankconnect_core::SessionId;
use bankconnect_webhook_verify::axum_handler::{BodyBudget, BodyReadError};
use bankconnect_webhook_verify::Limits;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Longest a client may take to send a body.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Largest API request body (a batch of 1 000 sessions fits many times over).
pub(crate) const MAX_API_BODY: usize = 1024 * 1024;

/// The body as `T`: 415 unless `application/json`, 413 beyond [`MAX_API_BODY`], 400 for
/// anything not strict JSON of that shape.
pub(crate) async fn json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    budget: &BodyBudget,
) -> Result<T, ApiError> {
    if !is_json(headers) {
        return Err(unsupported_media_type());
    }
    let bytes = read_timed(body, budget).await?;
    parse(&bytes)
}

/// The body within [`BODY_TIMEOUT`] and [`MAX_API_BODY`].
async fn read_timed(body: Body, budget: &BodyBudget) -> Result<Vec<u8>, ApiError> {
    tokio::time::timeout(BODY_TIMEOUT, read(body, MAX_API_BODY, budget))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "REQUEST_TIMEOUT",
                format!(
                    "the body did not arrive within {} s",
                    BODY_TIMEOUT.as_secs()
                ),
            )
        })?
}

/// Strict JSON of the shape `T`.
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let limits = Limits {
        max_body: MAX_API_BODY,
        max_depth: 8,
        ..Limits::default()
    };
    bankconnect_webhook_verify::check_strict_json(bytes, &limits)
        .map_err(|err| ApiError::invalid(format!("the body is not acceptable JSON: {err}")))?;
    serde_json::from_slice(bytes).map_err(|err| ApiError::invalid(shape_error(&err)))
}

/// An action's optional body: none (or an empty one) is `T::default()`; one that is sent must
/// be `application/json` of that shape, as for [`json`].
pub(crate) async fn optional_json<T: DeserializeOwned + Default>(
    headers: &HeaderMap,
    body: Body,
    budget: &BodyBudget,
) -> Result<T, ApiError> {
    if is_json(headers) {
        let bytes = read_timed(body, budget).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        return parse(&bytes);
    }
    json_if_any_body(headers)?;
    // No length said (an in-process caller): read it to know.
    let bytes = read_timed(body, budget).await?;
    if bytes.is_empty() {
        Ok(T::default())
    } else {
        Err(unsupported_media_type())
    }
}

fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(http::header::TRANSFER_ENCODING)
        || headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// 415 for a request that carries a body (e.g. a DELETE's) that is not `application/json`:
/// a cross-site form must not reach a state-changing endpoint with any body.
pub(crate) fn json_if_any_body(headers: &HeaderMap) -> Result<(), ApiError> {
    if has_body(headers) && !is_json(headers) {
        return Err(unsupported_media_type());
    }
    Ok(())
}

fn unsupported_media_type() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
        "send the body as Content-Type: application/json",
    )
}

/// `application/json`, with or without parameters (`; charset=utf-8`), in any case.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// serde's message without its position noise for one-line bodies, bounded in length.
fn shape_error(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let text: String = text.chars().take(300).collect();
    format!("bad body: {text}")
}

/// Reads a request body of at most `limit` bytes within the server's shared body budget: 413
/// beyond the limit, 503 when the budget is spent, 400 when it cannot be read.
async fn read(body: Body, limit: usize, budget: &BodyBudget) -> Result<Vec<u8>, ApiError> {
    match budget.read(body, limit).await {
        // The body is parsed at once and dropped with the request: its share goes back then.
        Ok((bytes, _share)) => Ok(bytes),
        Err(BodyReadError::TooLarge) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("the body is larger than {limit} bytes"),
        )),
        Err(BodyReadError::Overloaded) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "OVERLOADED",
            "too many request bodies in flight; try again",
        )),
        Err(_) => Err(ApiError::invalid("the body could not be read")),
    }
}

/// A session id from a path segment (already percent-decoded by the router).
pub(crate) fn session_id(text: &str) -> Result<SessionId, ApiError> {
    SessionId::new(text).map_err(|err| ApiError::invalid(format!("bad session_id: {err}")))
}

/// A path segment that must decode to UTF-8: the JSON error shape, never axum's text.
pub(crate) fn path_segment(
    path: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<String, ApiError> {
    path.map(|axum::extract::Path(segment)| segment)
        .map_err(|err| ApiError::invalid(format!("bad path: {}", err.body_text())))
}
