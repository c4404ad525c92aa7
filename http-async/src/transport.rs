//! The transport trait and its reqwest implementation.

use std::future::Future;
use std::sync::{Arc, OnceLock};
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
    /// The origin (scheme and authority) of the first request and its parsed URL: every later
    /// request to it starts from a copy instead of parsing (and IDNA-checking) the host again.
    origin: Arc<OnceLock<Origin>>,
}

#[derive(Debug)]
struct Origin {
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    url: reqwest::Url,
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
        Self::from_client(client)
    }

    /// Wraps a reqwest client you configured yourself.
    pub fn from_client(client: reqwest::Client) -> Self {
        Self {
            client,
            origin: Arc::default(),
        }
    }

    /// The request's URL, as reqwest's own conversion would give it (`Url::parse` of the URI).
    fn url(&self, uri: &http::Uri) -> Result<reqwest::Url, TransportError> {
        let full_parse = || reqwest::Url::parse(&uri.to_string()).map_err(invalid_url);
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return full_parse();
        };
        let origin = match self.origin.get() {
            Some(origin) => origin,
            None => {
                let url =
                    reqwest::Url::parse(&format!("{scheme}://{authority}")).map_err(invalid_url)?;
                self.origin.get_or_init(|| Origin {
                    scheme: scheme.clone(),
                    authority: authority.clone(),
                    url,
                })
            }
        };
        if origin.scheme != *scheme || origin.authority != *authority {
            return full_parse();
        }
        let mut url = origin.url.clone();
        url.set_path(uri.path());
        url.set_query(uri.query());
        Ok(url)
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
        let (parts, body) = request.into_parts();
        let mut request = reqwest::Request::new(parts.method, self.url(&parts.uri)?);
        *request.headers_mut() = parts.headers;
        *request.version_mut() = parts.version;
        // A GET carries no body (not even an empty one, which would add a header and a write).
        if !body.is_empty() || !matches!(*request.method(), http::Method::GET | http::Method::HEAD)
        {
            *request.body_mut() = Some(body.into());
        }
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

fn invalid_url(err: impl std::fmt::Display) -> TransportError {
    TransportError::new(TransportErrorKind::Other, format!("invalid URL: {err}"))
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
