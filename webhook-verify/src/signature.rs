//! Authenticity checks, all opt-in and all over the raw body: a shared token, Standard Webhooks
//! v1 signatures, and a hex HMAC header (`sha256=…`). Secrets are compared in constant time and
//! never shown.

use std::fmt;
use std::time::Duration;

/// Compares two byte strings in constant time for equal lengths (`subtle`); strings of
/// different lengths are unequal.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.ct_eq(b))
}

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName};
use sha2::Sha256;

/// Longest signature header read; longer ones are refused unread.
pub const MAX_SIGNATURE_HEADER: usize = 4096;
/// Most signature entries considered in one header.
pub const MAX_SIGNATURE_ENTRIES: usize = 32;

/// The Standard Webhooks headers.
pub const WEBHOOK_ID: &str = "webhook-id";
/// The Standard Webhooks timestamp header (Unix seconds).
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// The Standard Webhooks signature header (`v1,<base64> …`).
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// Why a secret was refused. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The secret is empty: anyone could sign with it.
    #[error("the webhook secret is empty")]
    Empty,
    /// The secret is not valid base64 after the `whsec_` prefix.
    #[error("the webhook secret is not valid base64 (expected whsec_<base64>)")]
    Malformed,
}

/// A webhook signing secret: redacted in `Debug`, never empty.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl WebhookSecret {
    /// A Standard Webhooks secret: `whsec_<base64>` (the prefix is optional).
    pub fn standard(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        let encoded = text.strip_prefix("whsec_").unwrap_or(text);
        if encoded.is_empty() {
            return Err(SecretError::Empty);
        }
        let key = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::Malformed)?;
        Self::raw(key)
    }

    /// A secret used as raw bytes (for the hex HMAC and the shared token).
    pub fn raw(bytes: impl Into<Vec<u8>>) -> Result<Self, SecretError> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Self(bytes))
    }

    /// Whether `given` is this secret, compared in constant time (for shared tokens).
    pub fn matches(&self, given: &[u8]) -> bool {
        constant_time_eq(&self.0, given)
    }

    /// HMAC-SHA256 of `parts` (concatenated) under this secret: for values a service signs
    /// and checks itself (the console's login and CSRF tokens).
    pub fn hmac(&self, parts: &[&[u8]]) -> [u8; 32] {
        self.mac(parts)
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        // HMAC accepts keys of any length; new_from_slice cannot fail for HMAC.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => return [0; 32],
        };
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// Why a request was not authenticated (answered 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A required header is missing.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// A header is malformed.
    #[error("malformed {0} header")]
    MalformedHeader(&'static str),
    /// The timestamp is older than the tolerance.
    #[error("the webhook timestamp is too old")]
    Stale,
    /// The timestamp is further ahead than the tolerance.
    #[error("the webhook timestamp is in the future")]
    Future,
    /// No signature matched any secret.
    #[error("no signature matches")]
    NoMatch,
    /// The shared token is wrong.
    #[error("wrong or missing token")]
    BadToken,
}

/// How a receiver authenticates webhooks. FinBox signs nothing, so the default is none; the others
/// are for deployments with a signing gateway or a secret URL.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum Authenticator {
    /// Accept every well-formed body (then confirm through the API before acting).
    #[default]
    None,
    /// A shared token in a header, compared in constant time.
    HeaderToken {
        /// The header carrying it.
        header: HeaderName,
        /// The token.
        token: WebhookSecret,
    },
    /// Standard Webhooks v1: any `v1` entry matching any secret, within the tolerance.
    StandardWebhooks {
        /// Current and previous secrets (rotation).
        secrets: Vec<WebhookSecret>,
        /// How far the timestamp may be from now, both ways (default 5 minutes).
        tolerance: Duration,
    },
    /// A hex HMAC-SHA256 of the body in a header, `sha256=<hex>` (GitHub style).
    HexHmac {
        /// The header carrying it.
        header: HeaderName,
        /// Current and previous secrets.
        secrets: Vec<WebhookSecret>,
    },
}

/// Default Standard Webhooks tolerance.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

impl Authenticator {
    /// Standard Webhooks v1 with these `whsec_…` secrets and the default tolerance.
    pub fn standard_webhooks(secrets: &[&str]) -> Result<Self, SecretError> {
        let secrets = secrets
            .iter()
            .map(|s| WebhookSecret::standard(s))
            .collect::<Result<Vec<_>, _>>()?;
        if secrets.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Self::StandardWebhooks {
            secrets,
            tolerance: DEFAULT_TOLERANCE,
        })
    }

    /// Whether any check is configured.
    pub fn is_enabled(&self) -> bool {
        !matches!(self, Self::None)
    }

    /// Checks a request, given its headers and raw body and the current Unix time. Returns the
    /// `webhook-id` when the request is signed with Standard Webhooks (the dedupe key).
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<Option<String>, AuthError> {
        match self {
            Self::None => Ok(None),
            Self::HeaderToken { header, token } => {
                let given = headers
                    .get(header)
                    .map(|v| v.as_bytes())
                    .unwrap_or_default();
                if constant_time_eq(&token.0, given) {
                    Ok(None)
                } else {
                    Err(AuthError::BadToken)
                }
            }
            Self::StandardWebhooks { secrets, tolerance } => {
                verify_standard(secrets, *tolerance, headers, body, now_unix).map(Some)
            }
            Self::HexHmac { header, secrets } => {
                let value = headers
                    .get(header)
                    .ok_or(AuthError::MissingHeader("signature"))?;
                let text = value
                    .to_str()
                    .map_err(|_| AuthError::MalformedHeader("signature"))?;
                let hex = text
                    .trim()
                    .strip_prefix("sha256=")
                    .ok_or(AuthError::MalformedHeader("signature"))?;
                let given = decode_hex(hex).ok_or(AuthError::MalformedHeader("signature"))?;
                let mut matched = false;
                for secret in secrets {
                    matched |= constant_time_eq(&secret.mac(&[body]), &given);
                }
                if matched {
                    Ok(None)
                } else {
                    Err(AuthError::NoMatch)
                }
            }
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, AuthError> {
    let value = headers.get(name).ok_or(AuthError::MissingHeader(name))?;
    if value.len() > MAX_SIGNATURE_HEADER {
        return Err(AuthError::MalformedHeader(name));
    }
    value.to_str().map_err(|_| AuthError::MalformedHeader(name))
}

fn verify_standard(
    secrets: &[WebhookSecret],
    tolerance: Duration,
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
) -> Result<String, AuthError> {
    let id = header(headers, WEBHOOK_ID)?;
    let timestamp_text = header(headers, WEBHOOK_TIMESTAMP)?.trim();
    // Digits only: no sign, no overflow (i64::MIN and friends are refused here, before any math).
    if timestamp_text.is_empty()
        || timestamp_text.len() > 18
        || !timestamp_text.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(AuthError::MalformedHeader(WEBHOOK_TIMESTAMP));
    }
    let timestamp: i64 = timestamp_text
        .parse()
        .map_err(|_| AuthError::MalformedHeader(WEBHOOK_TIMESTAMP))?;
    let tolerance = i128::from(i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX));
    let skew = i128::from(now_unix) - i128::from(timestamp);
    if skew > tolerance {
        return Err(AuthError::Stale);
    }
    if -skew > tolerance {
        return Err(AuthError::Future);
    }
    let signatures = header(headers, WEBHOOK_SIGNATURE)?;
    let expected: Vec<[u8; 32]> = secrets
        .iter()
        .map(|secret| secret.mac(&[id.as_bytes(), b".", timestamp_text.as_bytes(), b".", body]))
        .collect();
    let mut matched = false;
    for entry in signatures
        .split_ascii_whitespace()
        .take(MAX_SIGNATURE_ENTRIES)
    {
        let Some((version, encoded)) = entry.split_once(',') else {
            continue;
        };
        if version != "v1" {
            continue;
        }
        // A wrong-length or undecodable entry never matches (no comparison on a prefix).
        let Ok(given) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
            continue;
        };
        for mac in &expected {
            matched |= constant_time_eq(mac, &given);
        }
    }
    if matched {
        Ok(id.to_owned())
    } else {
        Err(AuthError::NoMatch)
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    text.as_bytes()
        .chunks_exact(2)
        .map(|pair| match pair {
            [high, low] => Some(digit(*high)? << 4 | digit(*low)?),
            _ => None,
        })
        .collect()
}

/// Signs a body the Standard Webhooks way, for tests and signing gateways: the
/// `webhook-signature` value `v1,<base64>`.
pub fn sign_standard(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let timestamp = timestamp.to_string();
    let mac = secret.mac(&[id.as_bytes(), b".", timestamp.as_bytes(), b".", body]);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac)
    )
}

/// Signs a body the hex-HMAC way: the header value `sha256=<hex>`.
pub fn sign_hex(secret: &WebhookSecret, body: &[u8]) -> String {
    let mac = secret.mac(&[body]);
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}
