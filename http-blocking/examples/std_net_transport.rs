//! Plugging your own HTTP client into the blocking driver: a minimal HTTP/1.1 client over
//! `std::net::TcpStream` (plain HTTP, so loopback only), used to `wait` for a session on the
//! simulator. Run: `cargo run -p bankconnect-http-blocking --example std_net_transport`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime};

use bankconnect_core::{
    Api, BaseUrl, Credentials, HttpResult, PollPolicy, SessionId, TransportError,
    TransportErrorKind,
};
use bankconnect_http_blocking::{Client, ClientSettings};
use bankconnect_sim::{Scenario, SessionScript, SimConfig, Simulator};

/// Sends one request over a fresh connection and reads the answer until the server closes.
fn send(request: http::Request<Vec<u8>>) -> HttpResult {
    let fail = |kind, err: std::io::Error| TransportError::new(kind, err.to_string());
    let authority = request
        .uri()
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut stream =
        TcpStream::connect(&authority).map_err(|e| fail(TransportErrorKind::Connect, e))?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\ncontent-length: {}\r\n",
        request.method(),
        request.uri().path(),
        request.body().len()
    );
    for (name, value) in request.headers() {
        head.push_str(&format!(
            "{name}: {}\r\n",
            value.to_str().unwrap_or_default()
        ));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .map_err(|e| fail(TransportErrorKind::Reset, e))?;
    stream
        .write_all(request.body())
        .map_err(|e| fail(TransportErrorKind::Reset, e))?;
    let mut raw = Vec::new();
    stream
        .take(8 * 1024 * 1024)
        .read_to_end(&mut raw)
        .map_err(|e| fail(TransportErrorKind::Reset, e))?;
    parse_response(&raw).ok_or_else(|| {
        TransportError::new(TransportErrorKind::Reset, "malformed or truncated response")
    })
}

fn parse_response(raw: &[u8]) -> Option<http::Response<Vec<u8>>> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let mut response = http::Response::builder().status(status);
    let mut declared = None;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        if name.eq_ignore_ascii_case("content-length") {
            declared = value.trim().parse::<usize>().ok();
        }
        response = response.header(name.trim(), value.trim());
    }
    if declared.is_some_and(|len| len != body.len()) {
        return None; // Truncated.
    }
    response.body(body).ok()
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let scenario = Scenario {
        sessions: vec![SessionScript::new("own-client").complete_after_polls(2)],
        ..Scenario::default()
    };
    let sim = runtime
        .block_on(Simulator::start(SimConfig {
            scenario,
            ..SimConfig::default()
        }))
        .unwrap();

    let api = Api::new(
        BaseUrl::parse(&sim.base_url()).unwrap(),
        Credentials::new("sim-api-key", "sim-server-hash").unwrap(),
    );
    let policy = PollPolicy {
        interval: Duration::from_millis(200),
        ..PollPolicy::default()
    };
    // A plain function is a BlockingTransport.
    let client = Client::with_settings(
        ClientSettings::new(api, ClientSettings::seed_from(SystemTime::now())).with_policy(policy),
        send,
    );
    let outcome = client.wait(&SessionId::new("own-client").unwrap()).unwrap();
    println!("{}", serde_json::to_string_pretty(&outcome).unwrap());
    assert_eq!(outcome.outcome.as_str(), "completed");
}
