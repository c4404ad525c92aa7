//! The service's settings: plain data with documented defaults, validated once at start into
//! what the tasks use, with typed errors (no secret in any of them, nor in `Debug`).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bankconnect_core::{PollPolicy, WebhookMode, WebhookRegistration};
use bankconnect_webhook_verify::{Authenticator, Limits, ReceiverConfig, WebhookSecret};

use crate::delivery_schedule::DeliverySchedule;

/// Where finished sessions are POSTed, and the `whsec_…` keys that sign them.
#[derive(Clone)]
#[allow(clippy::exhaustive_structs)] // Plain data: the two halves of a delivery target.
pub struct DeliveryConfig {
    /// `https://…`, or `http://` to a loopback host.
    pub url: String,
    /// Standard Webhooks keys (`whsec_<base64>`); each signs every delivery, so a receiver can
    /// move from one to the next without a failed verification. At least one.
    pub secrets: Vec<String>,
}

impl fmt::Debug for DeliveryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveryConfig")
            .field("url", &self.url)
            .field(
                "secrets",
                &format_args!("[{} redacted]", self.secrets.len()),
            )
            .finish()
    }
}

/// Everything the service is told at start. Build it with `..ServiceConfig::default()`; it is
/// checked by [`ServiceConfig::validate`] (which [`crate::Service::start`] calls).
///
/// The client handed to `start` brings the API, credentials, transport, retries and request
/// concurrency; the timing of polls is the service's (below).
#[derive(Clone)]
#[allow(clippy::exhaustive_structs)] // Plain data built with `..Default::default()`.
pub struct ServiceConfig {
    /// Bearer token required on `/v1/*`: the admin's, who may do everything (none: open,
    /// which only a loopback listener allows).
    pub api_token: Option<String>,
    /// A second bearer token that may only read (`GET` under `/v1/*`); needs `api_token`.
    pub read_token: Option<String>,
    /// The path FinBox's webhooks are POSTed to, within the service's router.
    pub webhook_path: String,
    /// A shared token webhooks must carry (query `?token=` or header `x-webhook-token`).
    pub webhook_token: Option<String>,
    /// Standard Webhooks secrets (`whsec_…`) incoming webhooks must be signed with.
    pub webhook_secrets: Vec<String>,
    /// This service's public URL: at start, URL + webhook path (+ `?token=`) is registered
    /// with update_webhook, retried in the background until it works.
    pub public_url: Option<String>,
    /// Where finished sessions go (none: no deliveries, the API only).
    pub delivery: Option<DeliveryConfig>,
    /// Delivery retry delays (the first before the first attempt).
    pub delivery_schedule: DeliverySchedule,
    /// Least time between two polls of a session.
    pub interval: Duration,
    /// A session is given up this long after it was added (wall-clock: downtime counts).
    pub max_wait: Duration,
    /// PROCESSING_NOT_REQUESTED is polled like processing this long.
    pub not_requested_grace: Duration,
    /// Fetch the accounts' verdicts after a completion learnt by polling.
    pub fetch_accounts: bool,
    /// How long a replica's hold on a session lasts unless renewed (a dead replica's sessions
    /// are taken over within it).
    pub lease: Duration,
    /// Finished and cancelled sessions unchanged this long (and with nothing left to deliver)
    /// are deleted with their history; `None` keeps everything.
    pub retention: Option<Duration>,
    /// How often retention runs (and once at start).
    pub prune_interval: Duration,
}

/// The default retention: 30 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            api_token: None,
            read_token: None,
            webhook_path: "/webhooks/bankconnect".into(),
            webhook_token: None,
            webhook_secrets: Vec::new(),
            public_url: None,
            delivery: None,
            delivery_schedule: DeliverySchedule::default(),
            interval: Duration::from_secs(2),
            max_wait: Duration::from_secs(24 * 3600),
            not_requested_grace: Duration::from_secs(24 * 3600),
            fetch_accounts: true,
            lease: Duration::from_secs(30),
            retention: Some(DEFAULT_RETENTION),
            prune_interval: Duration::from_secs(600),
        }
    }
}

impl fmt::Debug for ServiceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |value: &Option<String>| if value.is_some() { "set" } else { "none" };
        f.debug_struct("ServiceConfig")
            .field("api_token", &set(&self.api_token))
            .field("read_token", &set(&self.read_token))
            .field("webhook_path", &self.webhook_path)
            .field("webhook_token", &set(&self.webhook_token))
            .field("webhook_secrets", &self.webhook_secrets.len())
            .field("public_url", &self.public_url)
            .field("delivery", &self.delivery)
            .field("delivery_schedule", &self.delivery_schedule)
            .field("interval", &self.interval)
            .field("max_wait", &self.max_wait)
            .field("not_requested_grace", &self.not_requested_grace)
            .field("fetch_accounts", &self.fetch_accounts)
            .field("lease", &self.lease)
            .field("retention", &self.retention)
            .field("prune_interval", &self.prune_interval)
            .finish()
    }
}

/// Why a [`ServiceConfig`] is unusable. Messages say what to change; none holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The API token is empty or too long.
    #[error("bad API token: {0}")]
    ApiToken(String),
    /// The read-only token is empty, too long, the admin's, or set without an admin token.
    #[error("bad read-only token: {0}")]
    ReadToken(String),
    /// A non-loopback listener without an API token.
    #[error(
        "refusing to listen on {0} without an API token: the API would be open to the network"
    )]
    OpenToNetwork(SocketAddr),
    /// The webhook path is not a plain absolute path.
    #[error("bad webhook path: {0}")]
    WebhookPath(String),
    /// The webhook token is empty or too long.
    #[error("bad webhook token: {0}")]
    WebhookToken(String),
    /// A webhook secret is not `whsec_<base64>`.
    #[error("bad webhook secret: {0}; use whsec_<base64>")]
    WebhookSecret(String),
    /// The public URL cannot be registered.
    #[error("bad public URL: {0}")]
    PublicUrl(String),
    /// The delivery target is not usable.
    #[error("bad delivery URL: {0}")]
    DeliveryUrl(String),
    /// A delivery secret is missing or not `whsec_<base64>`.
    #[error("bad delivery secret: {0}")]
    DeliverySecret(String),
    /// The delivery schedule is out of bounds.
    #[error("bad delivery schedule: {0}")]
    DeliverySchedule(String),
    /// A timing setting is out of bounds.
    #[error("bad timing: {0}")]
    Timing(String),
}

/// The settings as the service's tasks use them.
pub(crate) struct Checked {
    pub(crate) api_token: Option<Arc<WebhookSecret>>,
    pub(crate) read_token: Option<Arc<WebhookSecret>>,
    pub(crate) webhook_path: String,
    pub(crate) receiver: ReceiverConfig,
    pub(crate) registration: Option<WebhookRegistration>,
    pub(crate) delivery: Option<(http::Uri, Vec<WebhookSecret>)>,
    pub(crate) schedule: DeliverySchedule,
    pub(crate) lease: Duration,
    pub(crate) interval: Duration,
    pub(crate) max_wait: Duration,
    pub(crate) retention: Option<Duration>,
    pub(crate) prune_interval: Duration,
}

/// Shortest retention: an hour (a shorter one would prune what an operator is looking at).
const MIN_RETENTION: Duration = Duration::from_secs(3600);
/// Shortest time between two rounds of retention.
const MIN_PRUNE_INTERVAL: Duration = Duration::from_secs(1);

/// Longest lease: a dead replica's sessions must come back within a reasonable time.
const MAX_LEASE: Duration = Duration::from_secs(3600);
/// Shortest lease: renewed every third of it, each renewal a store round trip.
const MIN_LEASE: Duration = Duration::from_millis(300);

impl ServiceConfig {
    /// Checks every setting; the first problem found is the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map(|_| ())
    }

    /// Refuses a listener on a non-loopback address when no API token is set.
    pub fn check_listener(&self, addr: SocketAddr) -> Result<(), ConfigError> {
        if !addr.ip().is_loopback() && self.api_token.is_none() {
            return Err(ConfigError::OpenToNetwork(addr));
        }
        Ok(())
    }

    /// The poll policy the service's tracker runs with, over `base` (the client's retries).
    pub(crate) fn policy(&self, base: &PollPolicy) -> PollPolicy {
        PollPolicy {
            interval: self.interval,
            max_wait: self.max_wait,
            not_requested_grace: self.not_requested_grace,
            fetch_accounts: self.fetch_accounts,
            ..base.clone()
        }
    }

    pub(crate) fn check(&self) -> Result<Checked, ConfigError> {
        let api_token = self
            .api_token
            .as_deref()
            .map(|token| {
                WebhookSecret::raw(token.as_bytes().to_vec())
                    .map(Arc::new)
                    .map_err(|err| ConfigError::ApiToken(err.to_string()))
            })
            .transpose()?;
        let read_token = match (&self.read_token, &self.api_token) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(ConfigError::ReadToken(
                    "a read-only token needs an admin token (--api-token) beside it".into(),
                ))
            }
            (Some(read), Some(admin)) if read == admin => {
                return Err(ConfigError::ReadToken(
                    "it must differ from the admin token".into(),
                ))
            }
            (Some(read), Some(_)) => Some(
                WebhookSecret::raw(read.as_bytes().to_vec())
                    .map(Arc::new)
                    .map_err(|err| ConfigError::ReadToken(err.to_string()))?,
            ),
        };
        if self.retention.is_some_and(|r| r < MIN_RETENTION) {
            return Err(ConfigError::Timing(
                "the retention must be at least 1h (or off)".into(),
            ));
        }
        if self.prune_interval < MIN_PRUNE_INTERVAL {
            return Err(ConfigError::Timing(
                "the prune interval must be at least 1s".into(),
            ));
        }
        let webhook_path = crate::duration::parse_http_path(&self.webhook_path)
            .map_err(ConfigError::WebhookPath)?;
        let token = self
            .webhook_token
            .as_deref()
            .map(|token| {
                WebhookSecret::raw(token.as_bytes().to_vec())
                    .map_err(|err| ConfigError::WebhookToken(err.to_string()))
            })
            .transpose()?;
        let auth = if self.webhook_secrets.is_empty() {
            Authenticator::None
        } else {
            let secrets: Vec<&str> = self.webhook_secrets.iter().map(String::as_str).collect();
            Authenticator::standard_webhooks(&secrets)
                .map_err(|err| ConfigError::WebhookSecret(err.to_string()))?
        };
        let receiver = ReceiverConfig {
            path: webhook_path.clone(),
            limits: Limits::default(),
            auth,
            token,
        };
        let registration = self
            .public_url
            .as_deref()
            .map(|url| self.registration(url, &webhook_path))
            .transpose()?;
        let delivery = self
            .delivery
            .as_ref()
            .map(|delivery| {
                let url = delivery_target(&delivery.url).map_err(ConfigError::DeliveryUrl)?;
                if delivery.secrets.is_empty() {
                    return Err(ConfigError::DeliverySecret(
                        "a delivery needs a whsec_… secret".into(),
                    ));
                }
                let secrets = delivery
                    .secrets
                    .iter()
                    .map(|secret| {
                        WebhookSecret::standard(secret).map_err(|err| {
                            ConfigError::DeliverySecret(format!("{err}; use whsec_<base64>"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((url, secrets))
            })
            .transpose()?;
        self.delivery_schedule
            .validate()
            .map_err(|err| ConfigError::DeliverySchedule(err.to_string()))?;
        self.policy(&PollPolicy::default())
            .validate()
            .map_err(|err| ConfigError::Timing(err.to_string()))?;
        if !(MIN_LEASE..=MAX_LEASE).contains(&self.lease) {
            return Err(ConfigError::Timing(format!(
                "the lease must be between {} ms and {} s",
                MIN_LEASE.as_millis(),
                MAX_LEASE.as_secs()
            )));
        }
        Ok(Checked {
            api_token,
            read_token,
            webhook_path,
            receiver,
            registration,
            delivery,
            schedule: self.delivery_schedule.clone(),
            lease: self.lease,
            interval: self.interval,
            max_wait: self.max_wait,
            retention: self.retention,
            prune_interval: self.prune_interval,
        })
    }

    fn registration(&self, url: &str, path: &str) -> Result<WebhookRegistration, ConfigError> {
        let mut webhook_url = format!("{}{}", url.trim_end_matches('/'), path);
        if let Some(token) = &self.webhook_token {
            webhook_url.push_str("?token=");
            webhook_url.push_str(&percent_encode(token));
        }
        WebhookRegistration::new(&webhook_url, WebhookMode::All)
            .map_err(|err| ConfigError::PublicUrl(err.to_string()))
    }
}

/// Checks a delivery target: an absolute http(s) URL, `http://` only to loopback, a valid port,
/// no credentials. Returns it parsed, once, for every attempt to send to.
fn delivery_target(url: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = url.parse().map_err(|_| "not an absolute URL".to_owned())?;
    let scheme = uri.scheme_str().map(str::to_ascii_lowercase);
    let authority = uri
        .authority()
        .filter(|a| !a.host().is_empty())
        .ok_or_else(|| "it has no host".to_owned())?;
    if authority.as_str().contains('@') {
        return Err("credentials in the URL are not allowed".into());
    }
    bankconnect_core::check_port(authority)?;
    match scheme.as_deref() {
        Some("https") => {}
        Some("http") if bankconnect_core::is_loopback_host(authority.host()) => {}
        Some("http") => {
            return Err("refusing plain http:// for a non-loopback host: use https://".into())
        }
        _ => return Err("use https://".into()),
    }
    Ok(uri)
}

/// A delivery target as shown to operators: `scheme://host[:port]/path`, never its query
/// (which may carry a token of the lender's).
pub(crate) fn shown_target(uri: &http::Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("https"),
        uri.authority().map_or("", |a| a.as_str()),
        uri.path()
    )
}

/// Percent-encodes a token for a query string.
fn percent_encode(text: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn with(change: impl FnOnce(&mut ServiceConfig)) -> Result<(), ConfigError> {
        let mut config = ServiceConfig::default();
        change(&mut config);
        config.validate()
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(ServiceConfig::default().validate(), Ok(()));
    }

    #[test]
    fn each_bad_setting_has_its_own_error() {
        let delivery = |url: &str, secrets: Vec<String>| DeliveryConfig {
            url: url.into(),
            secrets,
        };
        let key = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned();
        assert!(matches!(
            with(|c| c.webhook_path = "no-slash".into()),
            Err(ConfigError::WebhookPath(_))
        ));
        assert!(matches!(
            with(|c| c.webhook_secrets = vec!["whsec_not base64!".into()]),
            Err(ConfigError::WebhookSecret(_))
        ));
        assert!(matches!(
            with(|c| c.delivery = Some(delivery("http://example.com/x", vec![key.clone()]))),
            Err(ConfigError::DeliveryUrl(_))
        ));
        assert!(matches!(
            with(|c| c.delivery = Some(delivery("https://user:pw@example.com/", vec![key.clone()]))),
            Err(ConfigError::DeliveryUrl(_))
        ));
        assert!(matches!(
            with(|c| c.delivery = Some(delivery("http://127.0.0.1:9/x", vec![]))),
            Err(ConfigError::DeliverySecret(_))
        ));
        assert_eq!(
            with(|c| c.delivery = Some(delivery("http://127.0.0.1:9/x", vec![key.clone()]))),
            Ok(())
        );
        assert!(matches!(
            with(|c| c.interval = Duration::ZERO),
            Err(ConfigError::Timing(_))
        ));
        assert!(matches!(
            with(|c| c.lease = Duration::from_millis(1)),
            Err(ConfigError::Timing(_))
        ));
        assert!(matches!(
            with(|c| c.api_token = Some(String::new())),
            Err(ConfigError::ApiToken(_))
        ));
    }

    #[test]
    fn an_open_api_listens_on_loopback_only() {
        let open = ServiceConfig::default();
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(
            open.check_listener(any),
            Err(ConfigError::OpenToNetwork(any))
        );
        assert_eq!(open.check_listener("127.0.0.1:0".parse().unwrap()), Ok(()));
        let closed = ServiceConfig {
            api_token: Some("t0ken".into()),
            ..ServiceConfig::default()
        };
        assert_eq!(closed.check_listener(any), Ok(()));
    }

    #[test]
    fn debug_shows_no_secret() {
        let config = ServiceConfig {
            api_token: Some("api-token-secret".into()),
            webhook_token: Some("hook-token-secret".into()),
            delivery: Some(DeliveryConfig {
                url: "http://127.0.0.1:9/x".into(),
                secrets: vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()],
            }),
            ..ServiceConfig::default()
        };
        let shown = format!("{config:?}");
        for secret in ["api-token-secret", "hook-token-secret", "MfKQ9r8"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn the_registered_url_carries_the_token_encoded() {
        let config = ServiceConfig {
            public_url: Some("https://lender.example/".into()),
            webhook_token: Some("a b&c".into()),
            ..ServiceConfig::default()
        };
        let checked = config.check().unwrap();
        let registration = checked.registration.unwrap();
        assert_eq!(
            registration.webhook_url,
            "https://lender.example/webhooks/bankconnect?token=a%20b%26c"
        );
    }
}
