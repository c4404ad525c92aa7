//! The transport trait and its reqwest implementation.

use std::future::Future;
use std::time::Duration;

use bankconnect_core::MAX_RESPONSE_BODY;
use bankconnect_core::{HttpResult, TransportError, TransportErrorKind};

/// Sends one request and reads the whole response (or fails with a kind). Object-safe; implement
/// it over any async HTTP client. An async closure `Fn(http::Request<Vec<u8>>) -> impl Future<Output = HttpResult>`
/// already is one.
#[async_trait::async_trait]
pub trait AsyncTransport: Send + Sync {
    /// Sends `request`, reading at most [`MAX_RESPONSE_BODY`] + 1 bytes of the body.
    async fn send(&self, request: http::Request<Vec<u8>>) -> HttpResult;
}

// A client's `Debug` names its transport without looking into it (it may hold anything).
impl std::fmt::Debug for dyn AsyncTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn AsyncTransport")
    }
}

#[async_trait::async_trait]
impl<F, Fut> AsyncTransport for F
where
    F: Fn(http::Request<Vec<u8>>) -> Fut + Send + Sync,
    Fut: Future<Output = HttpResult> + Send,
{
    async fn send(&self, request: http::Request<Vec<u8>>) -> HttpResult {
        self(request).await
    }
}

/// The default transport: a reqwest client (rustls, connection pooling, a per-request timeout,
/// no redirects).
#[derive(Debug, Clone)]
pub struct ReqwestTransport {
    client: reqwest::Client,
}

impl ReqwestTransport {
    /// A client whose every request must finish within `timeout`.
    pub fn new(timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self { client }
    }

    /// Wraps a reqwest client you configured yourself.
    pub fn from_client(client: reqwest::Client) -> Self {
        Self { client }
    }
}

impl Default for ReqwestTransport {
    /// A 30-second request timeout.
    fn default() -> Self {
        Self::new(Duration::from_secs(30))
    }
}

#[async_trait::async_trait]
impl AsyncTransport for ReqwestTransport {
    async fn send(&self, request: http::Request<Vec<u8>>) -> HttpResult {
        let request = reqwest::Request::try_from(request)
            .map_err(|err| TransportError::new(TransportErrorKind::Other, err.to_string()))?;
        let mut response = self
            .client
            .execute(request)
            .await
            .map_err(|err| map_error(&err))?;
        let mut head = http::Response::new(Vec::new());
        *head.status_mut() = response.status();
        *head.headers_mut() = std::mem::take(response.headers_mut());
        // Sized from Content-Length (within the limit), not grown from nothing in steps.
        let expected = response.content_length().unwrap_or(0);
        let mut body = Vec::with_capacity(
            usize::try_from(expected)
                .unwrap_or(0)
                .min(MAX_RESPONSE_BODY + 1),
        );
        while let Some(chunk) = response.chunk().await.map_err(|err| map_error(&err))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_RESPONSE_BODY {
                // Enough to know it is too large; the classifier says so.
                break;
            }
        }
        *head.body_mut() = body;
        Ok(head)
    }
}

fn map_error(err: &reqwest::Error) -> TransportError {
    let kind = if err.is_timeout() {
        TransportErrorKind::Timeout
    } else if err.is_connect() {
        TransportErrorKind::Connect
    } else if err.is_body() || err.is_decode() || err.is_request() {
        // Connections closed mid-exchange surface as request or body errors.
        TransportErrorKind::Reset
    } else {
        TransportErrorKind::Other
    };
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    TransportError::new(kind, message)
}
