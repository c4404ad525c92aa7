//! The HTTP client deliveries go out on: hyper's pooled HTTP/1 client, over rustls with the
//! bundled Mozilla roots for `https://`. Nothing between the worker and the socket but what a
//! delivery needs: no proxy, no redirects, no retries (the worker retries on its schedule), no
//! cookies. Each request is built from parts prepared once (the target, the header names):
//! a general-purpose client's layers measured at a seventh of the service's CPU per delivery.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// How long an idle pooled connection is kept (as a browser would, well under the usual
/// server keep-alive).
const IDLE_FOR: Duration = Duration::from_secs(60);

/// POSTs signed deliveries to one target.
#[derive(Clone)]
pub(crate) struct DeliveryClient {
    client: hyper_util::client::legacy::Client<Connector, Full<Bytes>>,
    target: http::Uri,
    timeout: Duration,
}

/// What an attempt's POST came to.
pub(crate) enum Posted {
    /// The target answered: its status and the start of its body (at most `excerpt` bytes,
    /// read for at most half a second; `None` for an empty body).
    Answered {
        status: u16,
        excerpt: Option<Vec<u8>>,
    },
    /// No answer within the timeout.
    TimedOut,
    /// No connection could be made.
    CannotConnect,
    /// The request failed otherwise (reset, a malformed answer, TLS).
    Failed,
}

impl DeliveryClient {
    /// A client for `target` keeping up to `idle` connections open, each request bounded by
    /// `timeout` (to the answer's head; the excerpt has its own bound). `Err` if TLS cannot be
    /// set up.
    pub(crate) fn new(target: http::Uri, idle: usize, timeout: Duration) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| format!("cannot set up TLS: {err}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        // The scheme is the TLS layer's to check (http:// only reaches here for loopback).
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(idle)
            .pool_idle_timeout(IDLE_FOR)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(Self {
            client,
            target,
            timeout,
        })
    }

    /// One POST of `body` with the Standard Webhooks headers.
    pub(crate) async fn post(
        &self,
        webhook_id: &str,
        timestamp: i64,
        signature: String,
        body: Vec<u8>,
        excerpt: usize,
    ) -> Posted {
        let mut request = http::Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = self.target.clone();
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, JSON);
        // Ids are checked where they are made; one that is not a header value is refused here.
        let Ok(id) = HeaderValue::from_str(webhook_id) else {
            return Posted::Failed;
        };
        headers.insert(WEBHOOK_ID, id);
        headers.insert(WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp));
        let Ok(signature) = HeaderValue::from_maybe_shared(Bytes::from(signature)) else {
            return Posted::Failed;
        };
        headers.insert(WEBHOOK_SIGNATURE, signature);
        let response = match tokio::time::timeout(self.timeout, self.client.request(request)).await
        {
            Err(_) => return Posted::TimedOut,
            Ok(Err(err)) if err.is_connect() => return Posted::CannotConnect,
            Ok(Err(_)) => return Posted::Failed,
            Ok(Ok(response)) => response,
        };
        let status = response.status().as_u16();
        let mut body = response.into_body();
        // The start of the answer only, bounded in bytes and time: it is for people. (An
        // empty answer, the common one, is at its end already: nothing to wait for.)
        let excerpt = if hyper::body::Body::is_end_stream(&body) {
            None
        } else {
            tokio::time::timeout(Duration::from_millis(500), body.frame())
                .await
                .ok()
                .flatten()
                .and_then(Result::ok)
                .and_then(|frame| frame.into_data().ok())
                .map(|chunk| {
                    chunk
                        .get(..excerpt.min(chunk.len()))
                        .unwrap_or_default()
                        .to_vec()
                })
        };
        Posted::Answered { status, excerpt }
    }
}
