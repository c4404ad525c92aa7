//! Plugging your own HTTP client into the async driver: a minimal HTTP/1.1 client over
//! `tokio::net::TcpStream` (plain HTTP, so loopback only), used to `wait` for a session on the
//! simulator. Run: `cargo run -p bankconnect-http-async --example tokio_tcp_transport`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::{Duration, SystemTime};

use bankconnect_core::{
    Api, BaseUrl, Credentials, HttpResult, PollPolicy, SessionId, TransportError,
    TransportErrorKind,
};
use bankconnect_http_async::{AsyncTransport, Client, ClientSettings};
use bankconnect_sim::{Scenario, SessionScript, SimConfig, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One connection per request, `connection: close`, read until the server closes.
struct TcpTransport;

#[async_trait::async_trait]
impl AsyncTransport for TcpTransport {
    async fn send(&self, request: http::Request<Vec<u8>>) -> HttpResult {
        let fail = |kind, err: std::io::Error| TransportError::new(kind, err.to_string());
        let authority = request
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let mut stream = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|e| fail(TransportErrorKind::Connect, e))?;
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
            .await
            .map_err(|e| fail(TransportErrorKind::Reset, e))?;
        stream
            .write_all(request.body())
            .await
            .map_err(|e| fail(TransportErrorKind::Reset, e))?;
        let mut raw = Vec::new();
        let read = tokio::time::timeout(
            Duration::from_secs(10),
            stream.take(8 * 1024 * 1024).read_to_end(&mut raw),
        )
        .await;
        match read {
            Err(_) => {
                return Err(TransportError::new(
                    TransportErrorKind::Timeout,
                    "no answer in 10 s",
                ))
            }
            Ok(Err(e)) => return Err(fail(TransportErrorKind::Reset, e)),
            Ok(Ok(_)) => {}
        }
        parse_response(&raw).ok_or_else(|| {
            TransportError::new(TransportErrorKind::Reset, "malformed or truncated response")
        })
    }
}

fn parse_response(raw: &[u8]) -> Option<http::Response<Vec<u8>>> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let mut response = http::Response::builder().status(status);
    for line in lines {
        let (name, value) = line.split_once(':')?;
        if name.eq_ignore_ascii_case("content-length")
            && value.trim().parse::<usize>().ok()? != body.len()
        {
            return None; // Truncated.
        }
        response = response.header(name.trim(), value.trim());
    }
    response.body(body).ok()
}

#[tokio::main]
async fn main() {
    let scenario = Scenario {
        sessions: vec![SessionScript::new("own-client").complete_after_polls(2)],
        ..Scenario::default()
    };
    let sim = Simulator::start(SimConfig {
        scenario,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let api = Api::new(
        BaseUrl::parse(&sim.base_url()).unwrap(),
        Credentials::new("sim-api-key", "sim-server-hash").unwrap(),
    );
    let policy = PollPolicy {
        interval: Duration::from_millis(200),
        ..PollPolicy::default()
    };
    let client = Client::with_settings(
        ClientSettings::new(api, ClientSettings::seed_from(SystemTime::now())).with_policy(policy),
        TcpTransport,
    );
    let outcome = client
        .wait(&SessionId::new("own-client").unwrap())
        .await
        .unwrap();
    println!("{}", serde_json::to_string_pretty(&outcome).unwrap());
    assert_eq!(outcome.outcome.as_str(), "completed");
}
