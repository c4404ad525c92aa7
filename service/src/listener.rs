//! A bounded HTTP/1 listener for the service's router: at most so many connections, the request
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
    /// Most connections open at once (default 1 024); further clients wait in the kernel's
    /// backlog until one closes.
    pub max_connections: usize,
    /// Longest a client may take to send a request's head, and longest a keep-alive
    /// connection may sit idle (default 10 s).
    pub head_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            head_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `router` on `listener` until `stop` completes, then stops accepting, lets the
/// requests in flight finish (up to `grace`) and returns.
pub async fn serve(
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
        // At the cap, stop accepting: new clients wait in the kernel's backlog, costing nothing.
        let permit = tokio::select! {
            () = &mut stop => break,
            permit = Arc::clone(&connections).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _peer)) = accepted else {
            // Out of file descriptors and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
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
