//! A bounded HTTP/1 listener for an axum router (the receiver's, or the status service's): at most so many connections, the request
//! head within a time limit (which also closes idle keep-alive connections), and a graceful
//! stop that lets requests in flight finish. Bodies are bounded in time and bytes by the
//! handlers (the API and the intake).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// The listener's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::exhaustive_structs)] // Plain data built with `..Default::default()`.
pub struct ListenerLimits {
    /// Most connections open at once (default [`crate::axum_handler::MAX_CONNECTIONS`]); a
    /// client beyond them is answered 503 at once.
    pub max_connections: usize,
    /// Longest a client may take to send a request's head, and longest a keep-alive
    /// connection may sit idle (default 10 s).
    pub head_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            max_connections: crate::axum_handler::MAX_CONNECTIONS,
            head_timeout: crate::axum_handler::HEAD_TIMEOUT,
        }
    }
}

/// Answers a connection over the cap with 503 and closes it, within a second.
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    const BODY: &str =
        r#"{"error": {"code": "OVERLOADED", "message": "too many connections; try again"}}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Serves `router` on `listener` until `stop` completes, then stops accepting, lets the
/// requests in flight finish (up to `grace`) and returns.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    limits: ListenerLimits,
    stop: impl Future<Output = ()>,
    grace: Duration,
) {
    let max = limits.max_connections.max(1);
    let connections = Arc::new(Semaphore::new(max));
    let (stopping_tx, stopping) = watch::channel(false);
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _peer)) = accepted else {
            // Out of file descriptors and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        // At the cap, a new client is told so at once (503) instead of waiting in the backlog
        // behind connections that may never send anything.
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let router = router.clone();
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            use tower::ServiceExt;
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
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.head_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(connection);
            let stopped = tokio::select! {
                _ = connection.as_mut() => false,
                stopped = stopping.wait_for(|stop| *stop) => stopped.is_ok(),
            };
            if stopped {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    // Every connection's permit back means every request in flight was answered.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(grace, connections.acquire_many(all)).await;
}
