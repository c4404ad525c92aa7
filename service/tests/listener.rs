//! The bounded listener over raw sockets: idle and half-sent heads are closed, a client over
//! the connection cap is answered at once, and a graceful stop lets requests in flight finish.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use bankconnect_service::ListenerLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(
    limits: ListenerLimits,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(800)).await;
                "slow"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop_tx, stop) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bankconnect_service::serve(
        listener,
        router,
        limits,
        async {
            let _ = stop.await;
        },
        Duration::from_secs(5),
    ));
    (addr, stop_tx, server)
}

/// Sends `request` on a new connection and reads the whole answer (the request closes it).
async fn ask(addr: &str, path: &str) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer)).await;
    (answer, started.elapsed())
}

/// How long until the server closes `stream` (reads until EOF or an error).
async fn closed_within(mut stream: TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(
            limit.saturating_sub(started.elapsed()),
            stream.read(&mut buf),
        )
        .await
        {
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

fn limits(max_connections: usize) -> ListenerLimits {
    ListenerLimits {
        max_connections,
        head_timeout: Duration::from_secs(1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_heads_are_closed_at_the_head_timeout() {
    let (addr, _stop, _server) = start(limits(64)).await;
    let idle = TcpStream::connect(&addr).await.unwrap();
    let mut partial = TcpStream::connect(&addr).await.unwrap();
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await
        .unwrap();
    let (idle, partial) = tokio::join!(
        closed_within(idle, Duration::from_secs(5)),
        closed_within(partial, Duration::from_secs(5))
    );
    assert!(idle.is_some(), "an idle connection stayed open");
    assert!(partial.is_some(), "a half-sent head stayed open");
    // A keep-alive connection that answered once and then sits idle goes too.
    let mut kept = TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(closed_within(kept, Duration::from_secs(5)).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_cap_a_client_is_answered_at_once_and_served_once_room_frees() {
    let (addr, _stop, _server) = start(limits(20)).await;
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (answer, took) = ask(&addr, "/healthz").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("OVERLOADED"), "{answer}");
    assert!(took < Duration::from_millis(900), "{took:?}");
    // The idle ones are closed at the head timeout; then there is room again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (answer, _) = ask(&addr, "/healthz").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_idle_connections_below_the_cap_do_not_slow_a_normal_request() {
    let (addr, _stop, _server) = start(ListenerLimits::default()).await;
    let mut idle = Vec::new();
    for _ in 0..500 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    let (answer, took) = ask(&addr, "/healthz").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_finishes_the_requests_in_flight() {
    let (addr, stop, server) = start(limits(64)).await;
    let slow = tokio::spawn({
        let addr = addr.clone();
        async move { ask(&addr, "/slow").await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(()).unwrap();
    let (answer, _) = slow.await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("slow"),
        "{answer}"
    );
    tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .expect("serve returned")
        .unwrap();
    assert!(TcpStream::connect(&addr).await.is_err(), "still accepting");
}
