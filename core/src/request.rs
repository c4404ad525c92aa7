//! Request builders: each endpoint's request as data (`http::Request<Vec<u8>>`), ready for any
//! transport to send.

use http::header::{ACCEPT, CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Method, Request};
use serde::{Deserialize, Serialize};

use crate::base_url::BaseUrl;
use crate::credentials::Credentials;
use crate::ids::SessionId;

/// The `user-agent` every request carries: this crate and its version.
pub const USER_AGENT_VALUE: &str = concat!(env!("CARGO_PKG_NAME"), "/", env!("CARGO_PKG_VERSION"));

/// Header carrying the API key.
pub const API_KEY_HEADER: &str = "x-api-key";
/// Header carrying the server hash.
pub const SERVER_HASH_HEADER: &str = "server-hash";

/// Longest accepted webhook URL.
pub const MAX_WEBHOOK_URL_LEN: usize = 2048;

/// Why a request could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The resulting URL is not valid.
    #[error("invalid request URL: {0}")]
    InvalidUri(String),
    /// The webhook URL is not an absolute http(s) URL.
    #[error("invalid webhook URL: {0}")]
    InvalidWebhookUrl(String),
}

/// Which sessions' completion FinBox notifies (`webhook_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum WebhookMode {
    /// `0`: net-banking sessions only (FinBox's default, and what an update without the field resets to).
    NetBankingOnly,
    /// `1`: manual uploads as well as net banking.
    #[default]
    All,
}

impl WebhookMode {
    /// The number sent as `webhook_mode`.
    pub fn as_number(self) -> u8 {
        match self {
            Self::NetBankingOnly => 0,
            Self::All => 1,
        }
    }

    /// Reads `0` or `1`.
    pub fn from_number(number: u64) -> Option<Self> {
        match number {
            0 => Some(Self::NetBankingOnly),
            1 => Some(Self::All),
            _ => None,
        }
    }
}

impl Serialize for WebhookMode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.as_number())
    }
}

impl<'de> Deserialize<'de> for WebhookMode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let number = u64::deserialize(deserializer)?;
        Self::from_number(number)
            .ok_or_else(|| serde::de::Error::custom("webhook_mode must be 0 or 1"))
    }
}

/// The body of *update webhook*: where to send notifications, and for which sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WebhookRegistration {
    /// The receiving URL (http or https; FinBox must be able to reach it).
    pub webhook_url: String,
    /// Which sessions to notify for. Always sent, since omitting it resets the mode to 0.
    pub webhook_mode: WebhookMode,
}

impl WebhookRegistration {
    /// A registration, checking that the URL is an absolute `http://` or `https://` URL with a host.
    pub fn new(webhook_url: &str, webhook_mode: WebhookMode) -> Result<Self, RequestError> {
        if webhook_url.len() > MAX_WEBHOOK_URL_LEN {
            return Err(RequestError::InvalidWebhookUrl(format!(
                "longer than {MAX_WEBHOOK_URL_LEN} bytes"
            )));
        }
        let uri: http::Uri = webhook_url.parse().map_err(|err: http::uri::InvalidUri| {
            RequestError::InvalidWebhookUrl(err.to_string())
        })?;
        match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("http" | "https") => {}
            _ => {
                return Err(RequestError::InvalidWebhookUrl(
                    "it must start with https:// (or http://)".into(),
                ))
            }
        }
        let Some(authority) = uri.authority().filter(|a| !a.host().is_empty()) else {
            return Err(RequestError::InvalidWebhookUrl("it has no host".into()));
        };
        if authority.as_str().contains('@') {
            return Err(RequestError::InvalidWebhookUrl(
                "credentials in the URL are not allowed".into(),
            ));
        }
        crate::base_url::check_port(authority).map_err(RequestError::InvalidWebhookUrl)?;
        // Account data travels in the webhook's body: never in clear beyond this machine.
        if uri
            .scheme_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("http"))
            && !crate::base_url::is_loopback_host(authority.host())
        {
            return Err(RequestError::InvalidWebhookUrl(format!(
                "plain http:// is only allowed to loopback hosts; use https:// for {}",
                authority.host().chars().take(253).collect::<String>()
            )));
        }
        Ok(Self {
            webhook_url: webhook_url.to_owned(),
            webhook_mode,
        })
    }
}

/// Where and as whom to call the API: the base URL and the credentials. Builds every request.
///
/// ```
/// use bankconnect_core::{Api, BaseUrl, Credentials, SessionId};
/// let api = Api::new(BaseUrl::production(), Credentials::new("key", "hash").unwrap());
/// let request = api.progress_request(&SessionId::new("abc-123").unwrap()).unwrap();
/// assert_eq!(
///     request.uri(),
///     "https://apis.bankconnect.finbox.in/bank-connect/v1/session_data/abc-123/progress/"
/// );
/// ```
#[derive(Debug, Clone)]
pub struct Api {
    base_url: BaseUrl,
    credentials: Credentials,
}

impl Api {
    /// An API at `base_url`, called with `credentials`.
    pub fn new(base_url: BaseUrl, credentials: Credentials) -> Self {
        Self {
            base_url,
            credentials,
        }
    }

    /// The base URL.
    pub fn base_url(&self) -> &BaseUrl {
        &self.base_url
    }

    /// The credentials.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// `GET {base}/session_data/<id>/progress/`.
    pub fn progress_request(&self, session: &SessionId) -> Result<Request<Vec<u8>>, RequestError> {
        self.build(
            Method::GET,
            &format!("session_data/{session}/progress/"),
            None,
        )
    }

    /// `GET {base}/session_data/<id>/session_status/`: the account-level results.
    pub fn session_status_request(
        &self,
        session: &SessionId,
    ) -> Result<Request<Vec<u8>>, RequestError> {
        self.build(
            Method::GET,
            &format!("session_data/{session}/session_status/"),
            None,
        )
    }

    /// `POST {base}/session_data/update_webhook/` with `{"webhook_url", "webhook_mode"}`.
    pub fn update_webhook_request(
        &self,
        registration: &WebhookRegistration,
    ) -> Result<Request<Vec<u8>>, RequestError> {
        let body = serde_json::to_vec(registration)
            .map_err(|err| RequestError::InvalidWebhookUrl(err.to_string()))?;
        self.build(Method::POST, "session_data/update_webhook/", Some(body))
    }

    fn build(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Request<Vec<u8>>, RequestError> {
        let uri: http::Uri = self
            .base_url
            .join(path)
            .parse()
            .map_err(|err: http::uri::InvalidUri| RequestError::InvalidUri(err.to_string()))?;
        let has_body = body.is_some();
        let mut request = Request::new(body.unwrap_or_default());
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        headers.insert(API_KEY_HEADER, self.credentials.api_key().header_value());
        headers.insert(
            SERVER_HASH_HEADER,
            self.credentials.server_hash().header_value(),
        );
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        if has_body {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api() -> Api {
        Api::new(
            BaseUrl::parse("http://127.0.0.1:8080/bank-connect/v1/").unwrap(),
            Credentials::new("key-1", "hash-1").unwrap(),
        )
    }

    #[test]
    fn progress_request_exactly() {
        let request = api()
            .progress_request(&SessionId::new("s-1").unwrap())
            .unwrap();
        assert_eq!(request.method(), Method::GET);
        assert_eq!(
            request.uri(),
            "http://127.0.0.1:8080/bank-connect/v1/session_data/s-1/progress/"
        );
        let headers = request.headers();
        assert_eq!(headers["x-api-key"], "key-1");
        assert_eq!(headers["server-hash"], "hash-1");
        assert_eq!(headers["accept"], "application/json");
        assert_eq!(headers["user-agent"], "bankconnect-core/0.1.0");
        assert!(headers.get("content-type").is_none());
        assert!(request.body().is_empty());
        assert!(!format!("{request:?}").contains("key-1"));
    }

    #[test]
    fn update_webhook_request_exactly() {
        let registration =
            WebhookRegistration::new("https://example.com/hook", WebhookMode::All).unwrap();
        let request = api().update_webhook_request(&registration).unwrap();
        assert_eq!(request.method(), Method::POST);
        assert_eq!(
            request.uri(),
            "http://127.0.0.1:8080/bank-connect/v1/session_data/update_webhook/"
        );
        assert_eq!(request.headers()["content-type"], "application/json");
        assert_eq!(
            request.body().as_slice(),
            br#"{"webhook_url":"https://example.com/hook","webhook_mode":1}"#
        );
        let zero =
            WebhookRegistration::new("http://127.0.0.1:9/x", WebhookMode::NetBankingOnly).unwrap();
        let body = api().update_webhook_request(&zero).unwrap().into_body();
        assert!(body.ends_with(br#""webhook_mode":0}"#));
    }

    #[test]
    fn webhook_url_checked() {
        for bad in [
            "",
            "ftp://x/",
            "/relative",
            "https://",
            "not a url",
            "http://10.0.0.1/x",
            "http://hooks.example.com/x",
            "http://localhost./x",
            "https://example.com:99999/x",
            "https://example.com:0/x",
            "https://user:pw@example.com/x",
        ] {
            assert!(
                WebhookRegistration::new(bad, WebhookMode::All).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn session_status_request_path() {
        let request = api()
            .session_status_request(&SessionId::new("s-1").unwrap())
            .unwrap();
        assert!(request
            .uri()
            .path()
            .ends_with("/session_data/s-1/session_status/"));
    }
}
