//! Response classification: an HTTP response (or a transport failure) becomes a typed result, an
//! API error, or a transient failure. Pure functions over data; the policy decides what to do next.

use std::fmt;
use std::time::Duration;

use http::header::{DATE, RETRY_AFTER};
use serde::{Deserialize, Serialize};

use crate::error_codes::ApiErrorCode;
use crate::json_guard::{nesting_depth, DEFAULT_MAX_DEPTH};
use crate::progress::ProgressReport;
use crate::retry_after::parse_retry_after;
use crate::transport_error::TransportError;

/// Largest response body the classifier reads; a transport should stop reading past it.
pub const MAX_RESPONSE_BODY: usize = 4 * 1024 * 1024;

/// How much of a refused response's body an [`ApiError`] keeps.
pub(crate) const MAX_KEPT_BODY: usize = 8 * 1024;

/// Longest message an [`ApiError`] keeps, in bytes.
pub(crate) const MAX_MESSAGE_LEN: usize = 1024;

/// What a transport hands back: a response with its body read, or a failure to get one.
pub type HttpResult = Result<http::Response<Vec<u8>>, TransportError>;

/// The result of classifying one exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::exhaustive_enums)] // closed: ok, refused or transient is the whole classification
pub enum Classified<T> {
    /// The call succeeded with this value.
    Ok(T),
    /// The API refused the call.
    Api(ApiError),
    /// The call may succeed if retried.
    Transient(TransientFailure),
}

impl<T> Classified<T> {
    /// The value, if the call succeeded.
    pub fn ok(self) -> Option<T> {
        match self {
            Self::Ok(value) => Some(value),
            _ => None,
        }
    }
}

/// A refusal by the API: its code, HTTP status and message, and (part of) the raw body.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ApiError {
    /// The code from the body, else inferred from the status ([`ApiErrorCode::from_status`]).
    pub code: ApiErrorCode,
    /// The HTTP status.
    pub http_status: u16,
    /// The message from the body, else the status's reason phrase.
    pub message: String,
    /// The first 8 KiB of the body as received, for diagnosis.
    #[serde(skip)]
    pub body: Vec<u8>,
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiError")
            .field("code", &self.code)
            .field("http_status", &self.http_status)
            .field("message", &self.message)
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (HTTP {}): {}",
            self.code, self.http_status, self.message
        )
    }
}

impl std::error::Error for ApiError {}

/// A failure worth retrying: the server or the network had a problem, not the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "failure", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TransientFailure {
    /// No response at all.
    Transport(TransportError),
    /// A 5xx (or 408) response, with its `Retry-After` if any.
    ServerError {
        /// The HTTP status.
        http_status: u16,
        /// The server's requested delay.
        retry_after: Option<Duration>,
    },
    /// 429 Too Many Requests, with its `Retry-After` if any.
    RateLimited {
        /// The server's requested delay.
        retry_after: Option<Duration>,
    },
    /// A success status whose body could not be read as the expected JSON.
    UnparsableBody {
        /// The HTTP status.
        http_status: u16,
        /// What was wrong with it.
        reason: String,
    },
}

impl TransientFailure {
    /// The HTTP status of the answer, when there was one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::Transport(_) => None,
            Self::ServerError { http_status, .. } | Self::UnparsableBody { http_status, .. } => {
                Some(*http_status)
            }
            Self::RateLimited { .. } => Some(429),
        }
    }

    /// The delay the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::ServerError { retry_after, .. } | Self::RateLimited { retry_after } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// Whether this is a 429, which also slows the whole client down.
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, Self::RateLimited { .. })
    }
}

impl fmt::Display for TransientFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transport(err) => write!(f, "{err}"),
            Self::ServerError { http_status, .. } => write!(f, "server error: HTTP {http_status}"),
            Self::RateLimited { .. } => f.write_str("rate limited: HTTP 429"),
            Self::UnparsableBody {
                http_status,
                reason,
            } => write!(f, "unparsable response (HTTP {http_status}): {reason}"),
        }
    }
}

/// Classifies a progress exchange.
///
/// ```
/// use bankconnect_core::{classify_progress, Classified};
/// let response = http::Response::builder()
///     .status(404)
///     .body(br#"{"error": {"code": "SESSION_NOT_FOUND", "message": "The provided session ID is invalid"}}"#.to_vec())
///     .unwrap();
/// let Classified::Api(err) = classify_progress(Ok(response)) else { panic!() };
/// assert_eq!(err.code.as_str(), "SESSION_NOT_FOUND");
/// ```
pub fn classify_progress(result: HttpResult) -> Classified<ProgressReport> {
    classify_with(result, parse_json::<ProgressReport>)
}

/// What FinBox answers to a successful *update webhook*.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WebhookUpdated {
    /// The message (`"success"`), if any.
    pub message: Option<String>,
}

/// Classifies an *update webhook* exchange. Any 2xx with a JSON object (or an empty body) succeeds.
pub fn classify_update_webhook(result: HttpResult) -> Classified<WebhookUpdated> {
    classify_with(result, |body| {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(WebhookUpdated { message: None });
        }
        let parsed: serde_json::Map<String, serde_json::Value> = parse_json(body)?;
        let message = parsed.get("message").map(text_of);
        Ok(WebhookUpdated { message })
    })
}

/// Classifies any exchange, parsing a 2xx body with `parse_ok`.
///
/// 2xx bodies that fail to parse are transient, unless they hold an `{"error": {"code"}}` envelope,
/// which is then an API error. 429, 408 and 5xx are transient; any other status is an API error.
pub(crate) fn classify_with<T>(
    result: HttpResult,
    parse_ok: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Classified<T> {
    let response = match result {
        Ok(response) => response,
        Err(err) => return Classified::Transient(TransientFailure::Transport(err)),
    };
    let status = response.status().as_u16();
    let retry_after = retry_after_of(&response);
    let body = response.body();
    match status {
        200..=299 => {
            if body.len() > MAX_RESPONSE_BODY {
                return Classified::Transient(TransientFailure::UnparsableBody {
                    http_status: status,
                    reason: format!("body of {} bytes exceeds {MAX_RESPONSE_BODY}", body.len()),
                });
            }
            match parse_ok(body) {
                Ok(value) => Classified::Ok(value),
                Err(reason) => match error_envelope(body) {
                    Some((Some(code), message)) => {
                        Classified::Api(api_error(status, Some(code), message, body))
                    }
                    _ => Classified::Transient(TransientFailure::UnparsableBody {
                        http_status: status,
                        reason,
                    }),
                },
            }
        }
        429 => Classified::Transient(TransientFailure::RateLimited { retry_after }),
        408 | 500..=599 => Classified::Transient(TransientFailure::ServerError {
            http_status: status,
            retry_after,
        }),
        _ => {
            let (code, message) = error_envelope(body).unwrap_or((None, None));
            Classified::Api(api_error(status, code, message, body))
        }
    }
}

/// A response's `Retry-After`, as a delay (an HTTP date is read against the response's `Date`).
pub(crate) fn retry_after_of<B>(response: &http::Response<B>) -> Option<Duration> {
    let value = response.headers().get(RETRY_AFTER)?.to_str().ok()?;
    let date = response
        .headers()
        .get(DATE)
        .and_then(|date| date.to_str().ok());
    parse_retry_after(value, date)
}

/// Parses a bounded JSON object into `T`, with the error as text (it names the field and position).
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    // Every body this API sends is an object; serde would also read a struct from an array.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err("expected a JSON object".into());
    }
    if body.len() > MAX_RESPONSE_BODY {
        return Err(format!("body exceeds {MAX_RESPONSE_BODY} bytes"));
    }
    if nesting_depth(body, DEFAULT_MAX_DEPTH) > DEFAULT_MAX_DEPTH {
        return Err(format!(
            "JSON nested deeper than {DEFAULT_MAX_DEPTH} levels"
        ));
    }
    serde_json::from_slice(body).map_err(|err| err.to_string())
}

fn api_error(
    status: u16,
    code: Option<ApiErrorCode>,
    message: Option<String>,
    body: &[u8],
) -> ApiError {
    let message = message.filter(|m| !m.trim().is_empty()).unwrap_or_else(|| {
        let reason = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Unknown status");
        format!("{reason} (HTTP {status}, no error message in the body)")
    });
    ApiError {
        code: code.unwrap_or_else(|| ApiErrorCode::from_status(status)),
        http_status: status,
        message: truncate(message, MAX_MESSAGE_LEN),
        body: body.get(..MAX_KEPT_BODY).unwrap_or(body).to_vec(),
    }
}

/// Reads `{"error": {"code", "message"}}` or `{"detail": …}`; `None` if the body is neither.
fn error_envelope(body: &[u8]) -> Option<(Option<ApiErrorCode>, Option<String>)> {
    #[derive(Deserialize)]
    struct Envelope {
        #[serde(default)]
        error: Option<serde_json::Value>,
        #[serde(default)]
        detail: Option<serde_json::Value>,
        #[serde(default)]
        message: Option<serde_json::Value>,
    }
    let envelope: Envelope = parse_json(body).ok()?;
    match envelope.error {
        Some(serde_json::Value::Object(error)) => {
            let code = error
                .get("code")
                .map(text_of)
                .filter(|code| !code.is_empty())
                .map(|code| ApiErrorCode::parse(&code));
            let message = error.get("message").map(text_of);
            Some((code, message))
        }
        Some(serde_json::Value::String(message)) => Some((None, Some(message))),
        _ => match (envelope.detail, envelope.message) {
            (Some(detail), _) => Some((None, Some(text_of(&detail)))),
            (None, Some(message)) => Some((None, Some(text_of(&message)))),
            (None, None) => None,
        },
    }
}

/// A JSON value as message text: strings as they are, anything else as compact JSON.
fn text_of(value: &serde_json::Value) -> String {
    let text = match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    truncate(text, MAX_MESSAGE_LEN)
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}
