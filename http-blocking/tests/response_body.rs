//! The ureq transport reads a response body whole up to the core's limit and no further, over a
//! raw loopback server that says what it likes about its length.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use bankconnect_core::MAX_RESPONSE_BODY;
use bankconnect_http_blocking::{BlockingTransport, UreqTransport};

/// Answers one request with `head` (status line and headers, without the blank line) and then
/// `body`, and closes; returns the URL.
fn serve_once(head: String, body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request);
        let _ = stream.write_all(format!("{head}\r\n\r\n").as_bytes());
        let _ = stream.write_all(&body);
    });
    format!("http://{addr}/")
}

fn get(url: &str) -> bankconnect_core::HttpResult {
    let transport = UreqTransport::new(Duration::from_secs(10));
    transport.send(http::Request::get(url).body(Vec::new()).unwrap())
}

#[test]
fn a_body_with_its_length_is_read_whole() {
    let body = br#"{"session_id":"s-1","session_progress":"processing"}"#.to_vec();
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close",
        body.len()
    );
    let response = get(&serve_once(head, body.clone())).unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.body(), &body);
}

#[test]
fn a_chunked_body_is_read_whole() {
    let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close".to_owned();
    let response = get(&serve_once(
        head,
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".to_vec(),
    ))
    .unwrap();
    assert_eq!(response.body(), b"hello world");
}

#[test]
fn a_body_over_the_limit_is_cut_to_one_byte_over_which_the_classifier_refuses() {
    let over = MAX_RESPONSE_BODY + 64 * 1024;
    for head in [
        format!("HTTP/1.1 200 OK\r\ncontent-length: {over}\r\nconnection: close"),
        // No length at all: read until close.
        "HTTP/1.1 200 OK\r\nconnection: close".to_owned(),
    ] {
        let response = get(&serve_once(head.clone(), vec![b' '; over])).unwrap();
        assert_eq!(response.body().len(), MAX_RESPONSE_BODY + 1, "{head}");
        let classified = bankconnect_core::classify_progress(Ok(response));
        assert!(
            matches!(classified, bankconnect_core::Classified::Transient(_)),
            "{head}: {classified:?}"
        );
    }
}

#[test]
fn a_length_that_lies_upward_costs_at_most_the_limit_and_fails_as_a_transport_error() {
    // Claims 10 GB, sends 10 bytes and closes: a truncated body, not a 10 GB allocation.
    let head = "HTTP/1.1 200 OK\r\ncontent-length: 10000000000\r\nconnection: close".to_owned();
    let result = get(&serve_once(head, b"{\"a\":1}   ".to_vec()));
    assert!(result.is_err(), "{result:?}");
}

#[test]
fn a_response_head_within_the_connection_buffer_is_read_and_a_larger_one_is_refused() {
    use bankconnect_http_blocking::CONNECTION_BUFFER;
    let body = br#"{"session_id":"s-1","session_progress":"completed"}"#.to_vec();
    let with_header = |bytes: usize| {
        format!(
            "HTTP/1.1 200 OK\r\nx-padding: {}\r\ncontent-length: {}\r\nconnection: close",
            "p".repeat(bytes),
            body.len()
        )
    };
    // A head of 3/4 of the buffer (proxies' and load balancers' heads are far smaller).
    let response = get(&serve_once(
        with_header(CONNECTION_BUFFER * 3 / 4),
        body.clone(),
    ))
    .unwrap();
    assert_eq!(response.body(), &body);
    // Over it: a transport error, not a hang or a partial answer.
    let result = get(&serve_once(
        with_header(CONNECTION_BUFFER + 1024),
        body.clone(),
    ));
    assert!(result.is_err(), "{result:?}");
}

#[test]
fn a_body_many_times_the_connection_buffer_streams_through_it_whole() {
    use bankconnect_http_blocking::CONNECTION_BUFFER;
    let body: Vec<u8> = (0..CONNECTION_BUFFER * 20)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close",
        body.len()
    );
    let response = get(&serve_once(head, body.clone())).unwrap();
    assert_eq!(response.body(), &body);
    let chunked = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close".to_owned();
    let mut framed = format!("{:x}\r\n", body.len()).into_bytes();
    framed.extend_from_slice(&body);
    framed.extend_from_slice(b"\r\n0\r\n\r\n");
    let response = get(&serve_once(chunked, framed)).unwrap();
    assert_eq!(response.body(), &body);
}
