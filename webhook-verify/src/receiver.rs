//! One call from an HTTP request to an answer: accepted, duplicate, or rejected with the status to
//! send. Framework-free; the `axum` integration and the CLI's listener are thin layers over it.

use std::io::Read;
use std::sync::Mutex;

use http::{HeaderMap, Method, StatusCode};

use crate::dedupe::{DedupeStore, EventKey, MemoryDedupe};
use crate::event::{ParseError, WebhookEvent};
use crate::limits::Limits;
use crate::signature::{AuthError, Authenticator, WebhookSecret};

/// How a receiver is set up.
#[derive(Debug, Clone)]
#[allow(clippy::exhaustive_structs)] // plain data, built with `..Default::default()`
pub struct ReceiverConfig {
    /// The path webhooks are POSTed to (default `/`).
    pub path: String,
    /// Input bounds.
    pub limits: Limits,
    /// Authenticity check of the body (default none).
    pub auth: Authenticator,
    /// A shared token the request must carry, as query `?token=` or header `x-webhook-token`
    /// (compared in constant time): a secret URL, which is what FinBox's unsigned webhooks allow.
    pub token: Option<WebhookSecret>,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        Self {
            path: "/".into(),
            limits: Limits::default(),
            auth: Authenticator::None,
            token: None,
        }
    }
}

impl ReceiverConfig {
    /// Whether a request must prove itself (a token or a signature): then its accounts may
    /// decide an outcome.
    pub fn authenticates(&self) -> bool {
        self.token.is_some() || self.auth.is_enabled()
    }
}

/// The header that may carry the shared token.
pub const TOKEN_HEADER: &str = "x-webhook-token";

/// The shared token a request carries: header first, then the `token` query parameter.
fn given_token<'a>(
    query: Option<&'a str>,
    headers: &'a HeaderMap,
) -> Option<std::borrow::Cow<'a, [u8]>> {
    if let Some(value) = headers.get(TOKEN_HEADER) {
        return Some(std::borrow::Cow::Borrowed(value.as_bytes()));
    }
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .map(percent_decode)
}

/// Decodes `%XX` escapes (and `+` as a space), as a form's query does.
fn percent_decode(text: &str) -> std::borrow::Cow<'_, [u8]> {
    if !text.contains(['%', '+']) {
        return std::borrow::Cow::Borrowed(text.as_bytes());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |at: usize| bytes.get(at).and_then(|c| (*c as char).to_digit(16));
        match b {
            b'%' => match (hex(i + 1), hex(i + 2)) {
                (Some(hi), Some(lo)) => {
                    out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            other => out.push(other),
        }
        i += 1;
    }
    std::borrow::Cow::Owned(out)
}

/// Why a request was refused, with the HTTP status to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// 405: not a POST.
    #[error("method {0} not allowed; webhooks are POSTed")]
    MethodNotAllowed(String),
    /// 404: another path.
    #[error("no webhook receiver at this path")]
    NotFound,
    /// 415: the content type is not JSON.
    #[error("content-type must be application/json")]
    UnsupportedMediaType,
    /// 413: the body exceeds the limit.
    #[error("body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// 400: the body could not be read.
    #[error("could not read the body: {0}")]
    Unreadable(String),
    /// 401: authentication failed.
    #[error("unauthenticated: {0}")]
    Unauthenticated(#[from] AuthError),
    /// 400: the body is not a valid event.
    #[error("malformed event: {0}")]
    Malformed(#[from] ParseError),
    /// 503: too many bodies are being read at once; try again.
    #[error("too many webhooks in flight; try again")]
    Overloaded,
}

impl Rejection {
    /// The status to answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unreadable(_) | Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// What became of a request.
#[derive(Debug, Clone)]
#[must_use]
#[allow(clippy::exhaustive_enums)] // closed: accepted, duplicate or rejected
pub enum Reception {
    /// A new event: answer 200, then act on it (after confirming through the API).
    Accepted(Delivery),
    /// An event seen before: answer 200 and do nothing.
    Duplicate(Delivery),
    /// Refused: answer with [`Rejection::status`].
    Rejected(Rejection),
}

/// An accepted or duplicate event and its dedupe key.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Delivery {
    /// The event.
    pub event: WebhookEvent,
    /// Its dedupe key.
    pub key: EventKey,
    /// The `webhook-id`, when the delivery was signed.
    pub webhook_id: Option<String>,
    /// Whether a token or signature was checked (false when the receiver authenticates nothing).
    pub authenticated: bool,
}

impl Delivery {
    /// What a tracked session learns from this delivery, marked authenticated when it was: only
    /// then may its accounts decide an outcome.
    pub fn hint(&self) -> Option<bankconnect_core::WebhookHint> {
        let mut hint = self.event.hint()?;
        hint.authenticated = self.authenticated;
        Some(hint)
    }
}

impl Reception {
    /// The status to answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Accepted(_) | Self::Duplicate(_) => StatusCode::OK,
            Self::Rejected(rejection) => rejection.status(),
        }
    }

    /// The event's normalized JSON line (`duplicate` set), for accepted and duplicate events.
    pub fn event_json(&self) -> Option<serde_json::Value> {
        match self {
            Self::Accepted(delivery) => Some(delivery.event.to_json(false)),
            Self::Duplicate(delivery) => Some(delivery.event.to_json(true)),
            Self::Rejected(_) => None,
        }
    }
}

/// A webhook receiver: limits, authentication, parsing and dedupe behind one call.
///
/// ```
/// use bankconnect_webhook_verify::{Receiver, ReceiverConfig, Reception};
/// let receiver = Receiver::new(ReceiverConfig::default());
/// let mut headers = http::HeaderMap::new();
/// headers.insert("content-type", "application/json".parse().unwrap());
/// let body = br#"{"session_id": "s1", "event_name": "ENRICHMENT_NOTIFICATION", "accounts": []}"#;
/// let reception = receiver.receive(&http::Method::POST, "/", &headers, &body[..], 1_700_000_000);
/// assert!(matches!(reception, Reception::Accepted(_)));
/// assert_eq!(reception.status(), 200);
/// ```
#[derive(Debug)]
pub struct Receiver {
    config: ReceiverConfig,
    dedupe: Mutex<Box<dyn DedupeStore>>,
}

impl std::fmt::Debug for dyn DedupeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DedupeStore")
    }
}

impl Receiver {
    /// A receiver with the default in-memory dedupe store.
    pub fn new(config: ReceiverConfig) -> Self {
        Self::with_store(config, Box::new(MemoryDedupe::default()))
    }

    /// A receiver with a dedupe store of your own.
    pub fn with_store(config: ReceiverConfig, store: Box<dyn DedupeStore>) -> Self {
        Self {
            config,
            dedupe: Mutex::new(store),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ReceiverConfig {
        &self.config
    }

    /// Checks what can be checked before reading the body: method, path, shared token, content
    /// type and declared length. `path` may carry its query (`/hooks?token=…`). `None` means
    /// read the body (at most `limits.max_body + 1` bytes).
    pub fn precheck(&self, method: &Method, path: &str, headers: &HeaderMap) -> Option<Rejection> {
        let (path, query) = match path.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path, None),
        };
        // A path that is not the receiver's is 404 whatever the method, as routers answer.
        if path != self.config.path {
            return Some(Rejection::NotFound);
        }
        if let Some(token) = &self.config.token {
            let given = given_token(query, headers);
            if !token.matches(given.as_deref().unwrap_or_default()) {
                return Some(Rejection::Unauthenticated(AuthError::BadToken));
            }
        }
        if method != Method::POST {
            return Some(Rejection::MethodNotAllowed(
                method.as_str().chars().take(32).collect(),
            ));
        }
        if !is_json(headers) {
            return Some(Rejection::UnsupportedMediaType);
        }
        let declared = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.config.limits.max_body as u64) {
            return Some(Rejection::TooLarge {
                limit: self.config.limits.max_body,
            });
        }
        None
    }

    /// Handles a request whose body is read from `body`, never more than the limit plus one byte.
    pub fn receive(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: impl Read,
        now_unix: i64,
    ) -> Reception {
        if let Some(rejection) = self.precheck(method, path, headers) {
            return Reception::Rejected(rejection);
        }
        let limit = self.config.limits.max_body;
        let mut bytes = Vec::new();
        let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
        if let Err(err) = body.take(cap).read_to_end(&mut bytes) {
            return Reception::Rejected(Rejection::Unreadable(err.to_string()));
        }
        self.receive_body(headers, &bytes, now_unix)
    }

    /// The session a body names at its top level (`"session_id": "…"`), read leniently, for a
    /// webhook that passed authentication but failed strict parsing: a reason to poll that
    /// session at once, never a verdict. `None` unless the receiver authenticates requests
    /// (token or signature), since an unauthenticated body proves nothing.
    pub fn named_session(&self, body: &[u8]) -> Option<bankconnect_core::SessionId> {
        if !self.config.authenticates() || body.len() > self.config.limits.max_body {
            return None;
        }
        // serde_json bounds its own recursion (128 levels), so any body is safe to read here.
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        let id = value.get("session_id")?.as_str()?;
        bankconnect_core::SessionId::new(id).ok()
    }

    /// Handles a body already read (by a framework that bounded it to at most limit + 1 bytes),
    /// after [`Receiver::precheck`] passed: [`Receiver::verify_body`], then this receiver's
    /// dedupe.
    pub fn receive_body(&self, headers: &HeaderMap, body: &[u8], now_unix: i64) -> Reception {
        match self.verify_body(headers, body, now_unix) {
            // A panic elsewhere may have poisoned the dedupe lock; the store is still consistent.
            Ok(delivery) => self.receive_body_verified(delivery, now_unix),
            Err(rejection) => Reception::Rejected(rejection),
        }
    }

    /// The dedupe half of [`Receiver::receive_body`], for a delivery already verified.
    pub(crate) fn receive_body_verified(&self, delivery: Delivery, now_unix: i64) -> Reception {
        let first = match self.dedupe.lock() {
            Ok(mut store) => store.insert_if_absent(delivery.key, now_unix),
            Err(poisoned) => poisoned
                .into_inner()
                .insert_if_absent(delivery.key, now_unix),
        };
        if first {
            Reception::Accepted(delivery)
        } else {
            Reception::Duplicate(delivery)
        }
    }

    /// Authenticates and strictly parses a body already read, after [`Receiver::precheck`]
    /// passed, with no dedupe: for an intake that dedupes in its own store, with the
    /// delivery's [`Delivery::key`].
    pub fn verify_body(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<Delivery, Rejection> {
        if body.len() > self.config.limits.max_body {
            return Err(Rejection::TooLarge {
                limit: self.config.limits.max_body,
            });
        }
        // Authenticate the bytes as received, before any parsing.
        let webhook_id = self.config.auth.verify(headers, body, now_unix)?;
        let event = WebhookEvent::parse(body, &self.config.limits)?;
        let key = match &webhook_id {
            Some(id) => EventKey::from_webhook_id(id),
            None => EventKey::from_normalized(&event.to_json(false)),
        };
        Ok(Delivery {
            event,
            key,
            webhook_id,
            authenticated: self.config.authenticates(),
        })
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}
