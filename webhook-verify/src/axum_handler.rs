//! An axum integration over the framework-free [`Receiver`] (feature `axum`).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::receiver::{Receiver, Reception, Rejection};

/// A router that answers every request with the receiver's verdict, and hands each accepted or
/// duplicate [`Reception`] to `on_reception` (after the status is decided, before it is sent).
///
/// The body is read through a limit of `max_body + 1` bytes, so an oversized or endless body is
/// refused with 413 without being buffered.
pub fn router<F>(receiver: Arc<Receiver>, on_reception: F) -> Router
where
    F: Fn(&Reception) + Send + Sync + 'static,
{
    let on_reception = Arc::new(on_reception);
    Router::new().fallback(move |request: Request| {
        let receiver = Arc::clone(&receiver);
        let on_reception = Arc::clone(&on_reception);
        async move {
            let reception = receive(&receiver, request).await;
            on_reception(&reception);
            respond(&reception)
        }
    })
}

/// Runs one request through the receiver.
pub async fn receive(receiver: &Receiver, request: Request) -> Reception {
    let (parts, body) = request.into_parts();
    if let Some(rejection) = receiver.precheck(&parts.method, parts.uri.path(), &parts.headers) {
        return Reception::Rejected(rejection);
    }
    let limit = receiver.config().limits.max_body;
    let bytes = match axum::body::to_bytes(Body::new(body), limit.saturating_add(1)).await {
        Ok(bytes) => bytes,
        Err(_) => return Reception::Rejected(Rejection::TooLarge { limit }),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default();
    receiver.receive_body(&parts.headers, &bytes, now)
}

/// The HTTP answer for a reception: its status and a short JSON body.
pub fn respond(reception: &Reception) -> Response {
    let body = match reception {
        Reception::Accepted(_) => serde_json::json!({"status": "accepted"}),
        Reception::Duplicate(_) => serde_json::json!({"status": "duplicate"}),
        Reception::Rejected(rejection) => {
            serde_json::json!({"status": "rejected", "error": rejection.to_string()})
        }
    };
    let mut response = (reception.status(), body.to_string()).into_response();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
