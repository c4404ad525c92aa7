//! An axum integration over the framework-free [`Receiver`] (feature `axum`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// Longest a client may take to send a request's head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a client may take to send a body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until the task is dropped, with the timeouts a public endpoint
/// needs ([`HEAD_TIMEOUT`] for the request head; the handler bounds the body by [`BODY_TIMEOUT`]),
/// so slow or idle clients cannot hold connections open.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) {
    use tower::ServiceExt;
    loop {
        let Ok((stream, _peer)) = listener.accept().await else {
            // Out of file descriptors and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let router = router.clone();
        let service =
            hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let router = router.clone();
                async move {
                    router
                        .oneshot(request.map(Body::new))
                        .await
                        .map_err(|never: Infallible| never)
                }
            });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Runs one request through the receiver.
pub async fn receive(receiver: &Receiver, request: Request) -> Reception {
    let (parts, body) = request.into_parts();
    if let Some(rejection) = receiver.precheck(&parts.method, parts.uri.path(), &parts.headers) {
        return Reception::Rejected(rejection);
    }
    let limit = receiver.config().limits.max_body;
    let read = axum::body::to_bytes(Body::new(body), limit.saturating_add(1));
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => return Reception::Rejected(Rejection::TooLarge { limit }),
        Err(_) => {
            return Reception::Rejected(Rejection::Unreadable(format!(
                "the body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            )))
        }
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
