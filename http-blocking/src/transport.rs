//! The transport trait and its ureq implementation.

use std::io::Read;
use std::time::Duration;

use bankconnect_core::MAX_RESPONSE_BODY;
use bankconnect_core::{HttpResult, TransportError, TransportErrorKind};

/// Sends one request and reads the whole response (or fails with a kind). Implement it over any
/// blocking HTTP client; a closure `Fn(http::Request<Vec<u8>>) -> HttpResult` already is one.
pub trait BlockingTransport: Send + Sync {
    /// Sends `request`, reading at most [`MAX_RESPONSE_BODY`] + 1 bytes of the body.
    fn send(&self, request: http::Request<Vec<u8>>) -> HttpResult;
}

impl std::fmt::Debug for dyn BlockingTransport {
    // Opaque: a user's transport may capture anything, credentials included.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn BlockingTransport")
    }
}

impl<F> BlockingTransport for F
where
    F: Fn(http::Request<Vec<u8>>) -> HttpResult + Send + Sync,
{
    fn send(&self, request: http::Request<Vec<u8>>) -> HttpResult {
        self(request)
    }
}

/// What one pooled connection buffers each way, and the largest response head it takes.
pub const CONNECTION_BUFFER: usize = 16 * 1024;

/// The default transport: a ureq agent (rustls, connection pooling, a per-request timeout).
#[derive(Debug, Clone)]
pub struct UreqTransport {
    agent: ureq::Agent,
}

impl UreqTransport {
    /// An agent whose requests time out after `timeout` in each phase (connect, send, wait for
    /// the answer, read the body). Phase timeouts rather than ureq's global one: the global
    /// timeout re-arms the socket timeout on every read, which measured at twice the CPU time.
    pub fn new(timeout: Duration) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(timeout))
            .timeout_send_request(Some(timeout))
            .timeout_recv_response(Some(timeout))
            .timeout_recv_body(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            // Keep a connection per request in flight (the default keeps 3 per host, so a
            // tracker with 32 in flight would reconnect for most requests).
            .max_idle_connections_per_host(64)
            .max_idle_connections(256)
            // ureq's 128 KiB buffers each way are filled in when a connection is made: 256 KiB
            // per connection, 4 MB for 16 threads, for answers of a few hundred bytes. A
            // connection here holds 16 KiB each way; bodies stream through the buffer, so
            // only a response head is bounded by it (and refused over it, as ureq's own
            // 64 KiB header limit would).
            .input_buffer_size(CONNECTION_BUFFER)
            .output_buffer_size(CONNECTION_BUFFER)
            .max_response_header_size(CONNECTION_BUFFER)
            .build();
        Self {
            agent: config.into(),
        }
    }
}

impl Default for UreqTransport {
    /// A 30-second request timeout.
    fn default() -> Self {
        Self::new(Duration::from_secs(30))
    }
}

impl BlockingTransport for UreqTransport {
    fn send(&self, request: http::Request<Vec<u8>>) -> HttpResult {
        let response = self.agent.run(request).map_err(|err| map_error(&err))?;
        let (parts, mut body) = response.into_parts();
        let limit = u64::try_from(MAX_RESPONSE_BODY).unwrap_or(u64::MAX);
        // Sized from Content-Length (within the limit), not grown from nothing in steps.
        let expected = body.content_length().unwrap_or(0).min(limit);
        let mut bytes = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
        let read = body
            .with_config()
            .limit(limit)
            .reader()
            .read_to_end(&mut bytes)
            .map_err(ureq::Error::from);
        let bytes = match read {
            Ok(_) => bytes,
            // Over the limit: answer with a body one byte too large, which the classifier refuses.
            Err(ureq::Error::BodyExceedsLimit(_)) => vec![b' '; MAX_RESPONSE_BODY + 1],
            Err(err) => return Err(map_error(&err)),
        };
        Ok(http::Response::from_parts(parts, bytes))
    }
}

fn io_error(err: &std::io::Error) -> TransportError {
    use std::io::ErrorKind;
    let kind = match err.kind() {
        ErrorKind::TimedOut | ErrorKind::WouldBlock => TransportErrorKind::Timeout,
        ErrorKind::ConnectionRefused | ErrorKind::AddrNotAvailable => TransportErrorKind::Connect,
        ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe
        | ErrorKind::UnexpectedEof => TransportErrorKind::Reset,
        _ => {
            // ureq wraps its own errors (timeouts, truncated bodies) in io::Error.
            let text = err.to_string().to_ascii_lowercase();
            if text.contains("timeout") || text.contains("timed out") {
                TransportErrorKind::Timeout
            } else {
                TransportErrorKind::Reset
            }
        }
    };
    TransportError::new(kind, err.to_string())
}

fn map_error(err: &ureq::Error) -> TransportError {
    let kind = match err {
        ureq::Error::Timeout(_) => TransportErrorKind::Timeout,
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => TransportErrorKind::Connect,
        ureq::Error::Io(io) => return io_error(io),
        _ => TransportErrorKind::Other,
    };
    TransportError::new(kind, err.to_string())
}
