//! The axum receiver over real loopback sockets: how bodies that are cut short, malformed or too
//! many at once are answered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use bankconnect_webhook_verify::{axum_handler, Receiver, ReceiverConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum_handler::router(Arc::new(Receiver::new(ReceiverConfig::default())), |_| {});
    tokio::spawn(axum_handler::serve(listener, app));
    addr
}

/// Sends `head` then `body`, optionally closes the write side, and returns the status line.
async fn exchange(addr: std::net::SocketAddr, head: &str, body: &[u8], close: bool) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    if close {
        stream.shutdown().await.unwrap();
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

const EVENT: &str =
    r#"{"session_id": "s1", "event_name": "ENRICHMENT_NOTIFICATION", "accounts": []}"#;

#[tokio::test]
async fn a_truncated_body_is_a_bad_request_not_too_large() {
    let addr = server().await;
    let head = "POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 500\r\nconnection: close\r\n\r\n";
    let status = exchange(addr, head, &EVENT.as_bytes()[..40], true).await;
    assert!(status.contains(" 400 "), "{status}");
}

#[tokio::test]
async fn malformed_chunked_encoding_is_a_bad_request() {
    let addr = server().await;
    let head = "POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    let status = exchange(addr, head, b"zz\r\nnot hex\r\n0\r\n\r\n", true).await;
    assert!(status.contains(" 400 "), "{status}");
}

#[tokio::test]
async fn whole_bodies_are_judged_as_before() {
    let addr = server().await;
    let head = format!(
        "POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        EVENT.len()
    );
    assert!(exchange(addr, &head, EVENT.as_bytes(), false)
        .await
        .contains(" 200 "));
    // Chunked and over the limit: 413 without buffering it all.
    let head = "POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    let chunk = vec![b' '; 64 * 1024];
    let mut body = Vec::new();
    for _ in 0..20 {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(&chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let status = exchange(addr, head, &body, false).await;
    assert!(status.contains(" 413 "), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_in_flight_share_one_memory_budget() {
    let addr = server().await;
    // 70 senders each hold almost 1 MiB of an unfinished body: past the 64 MiB budget, the
    // receiver answers 503 instead of buffering more.
    let mut held = Vec::new();
    let mut refused = 0;
    let almost = vec![b' '; 1024 * 1024 - 16];
    for _ in 0..70 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            1024 * 1024 - 8
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        if stream.write_all(&almost).await.is_err() {
            refused += 1;
            continue;
        }
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for mut stream in held {
        let mut answer = [0u8; 64];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(50), stream.read(&mut answer)).await
        {
            if String::from_utf8_lossy(&answer[..n]).contains(" 503 ") {
                refused += 1;
            }
        }
    }
    assert!(refused >= 5, "only {refused} of 70 refused");
}
