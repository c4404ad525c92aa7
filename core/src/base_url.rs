//! The API's base URL, refusing plain HTTP except to this machine.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// FinBox's documented production base URL.
pub const PRODUCTION_BASE_URL: &str = "https://apis.bankconnect.finbox.in/bank-connect/v1";

/// Why a base URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BaseUrlError {
    /// Not an absolute `scheme://host/path` URL.
    #[error("not an absolute URL: {0}")]
    Malformed(String),
    /// A scheme other than `https` (or `http` to a loopback host).
    #[error("unsupported scheme {0:?}: use https")]
    UnsupportedScheme(String),
    /// `http://` to a host that is not loopback; FinBox refuses plain HTTP and so do we.
    #[error("plain http:// is only allowed for loopback hosts (localhost, 127.0.0.0/8, ::1); use https:// for {host}")]
    InsecureRemote {
        /// The refused host.
        host: String,
    },
    /// User info (`user:password@`) in the URL, which would leak into logs.
    #[error("credentials in the URL are not allowed; pass them as the API key and server hash")]
    UserInfo,
    /// A query string or fragment, which the endpoints' paths cannot carry.
    #[error("the base URL must not have a query or fragment")]
    QueryOrFragment,
}

/// A validated API base URL such as `https://apis.bankconnect.finbox.in/bank-connect/v1`,
/// stored without a trailing slash.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BaseUrl(Box<str>);

impl BaseUrl {
    /// Parses and validates a base URL: `https://…`, or `http://` to `localhost`, `127.0.0.0/8` or `::1`.
    pub fn parse(text: &str) -> Result<Self, BaseUrlError> {
        let text = text.trim();
        if text.contains('#') || text.contains('?') {
            return Err(BaseUrlError::QueryOrFragment);
        }
        let uri: http::Uri = text
            .parse()
            .map_err(|err: http::uri::InvalidUri| BaseUrlError::Malformed(err.to_string()))?;
        let scheme = uri
            .scheme_str()
            .ok_or_else(|| BaseUrlError::Malformed("missing scheme (https://…)".into()))?
            .to_ascii_lowercase();
        let authority = uri
            .authority()
            .ok_or_else(|| BaseUrlError::Malformed("missing host".into()))?;
        if authority.as_str().contains('@') {
            return Err(BaseUrlError::UserInfo);
        }
        let host = authority.host();
        if host.is_empty() {
            return Err(BaseUrlError::Malformed("missing host".into()));
        }
        check_port(authority).map_err(BaseUrlError::Malformed)?;
        match scheme.as_str() {
            "https" => {}
            "http" if is_loopback_host(host) => {}
            "http" => {
                return Err(BaseUrlError::InsecureRemote {
                    host: host.to_owned(),
                })
            }
            other => return Err(BaseUrlError::UnsupportedScheme(other.to_owned())),
        }
        let path = uri.path().trim_end_matches('/');
        Ok(Self(
            format!(
                "{scheme}://{}{path}",
                authority.as_str().to_ascii_lowercase()
            )
            .into(),
        ))
    }

    /// FinBox's production base URL.
    pub fn production() -> Self {
        Self(PRODUCTION_BASE_URL.into())
    }

    /// The URL as text, without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `{base}/{path}`; `path` must not start with a slash.
    pub(crate) fn join(&self, path: &str) -> String {
        format!("{}/{path}", self.0)
    }
}

/// Whether a URL host (as `http::Uri` gives it, IPv6 in brackets) is this machine: exactly
/// `localhost` or a loopback address. `localhost.` and `*.localhost` are names like any other
/// (a resolver may send them anywhere), so plain HTTP to them is refused.
pub fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Refuses a port outside 1–65535 (which `http::Uri` accepts, and some clients then replace
/// with the scheme's default, sending the request somewhere else).
pub fn check_port(authority: &http::uri::Authority) -> Result<(), String> {
    match authority.as_str().rsplit_once(':') {
        // An IPv6 address without a port ends with ']'.
        Some((_, port)) if !port.ends_with(']') => match port.parse::<u16>() {
            Ok(port) if port > 0 => Ok(()),
            _ => Err(format!(
                "port {:?} is not between 1 and 65535",
                port.chars().take(16).collect::<String>()
            )),
        },
        _ => Ok(()),
    }
}

impl Default for BaseUrl {
    fn default() -> Self {
        Self::production()
    }
}

impl fmt::Debug for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BaseUrl({:?})", &*self.0)
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for BaseUrl {
    type Err = BaseUrlError;
    fn from_str(text: &str) -> Result<Self, BaseUrlError> {
        Self::parse(text)
    }
}

impl Serialize for BaseUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for BaseUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_http_only_on_loopback() {
        assert_eq!(
            BaseUrl::parse("https://apis.bankconnect.finbox.in/bank-connect/v1/")
                .unwrap()
                .as_str(),
            PRODUCTION_BASE_URL
        );
        for ok in [
            "http://127.0.0.1:8080/bank-connect/v1",
            "http://localhost/bank-connect/v1",
            "http://[::1]:9000/x",
            "http://127.8.9.10/",
        ] {
            assert!(BaseUrl::parse(ok).is_ok(), "{ok} refused");
        }
        assert!(matches!(
            BaseUrl::parse("http://example.com/bank-connect/v1"),
            Err(BaseUrlError::InsecureRemote { .. })
        ));
        assert!(matches!(
            BaseUrl::parse("http://10.0.0.1/"),
            Err(BaseUrlError::InsecureRemote { .. })
        ));
        assert!(matches!(
            BaseUrl::parse("ftp://example.com/"),
            Err(BaseUrlError::UnsupportedScheme(_))
        ));
        assert!(matches!(
            BaseUrl::parse("https://u:p@example.com/"),
            Err(BaseUrlError::UserInfo)
        ));
        assert!(BaseUrl::parse("example.com/bank-connect").is_err());
        for bad_port in [
            "http://127.0.0.1:99999/x",
            "http://127.0.0.1:0/x",
            "https://example.com:65536/",
            "http://127.0.0.1:/x",
            "http://[::1]:70000/x",
        ] {
            assert!(
                matches!(BaseUrl::parse(bad_port), Err(BaseUrlError::Malformed(_))),
                "{bad_port} accepted"
            );
        }
        assert!(BaseUrl::parse("http://127.0.0.1:65535/x").is_ok());
        for named in [
            "http://localhost./x",
            "http://evil.localhost/x",
            "http://localhost.example.com/",
        ] {
            assert!(
                matches!(
                    BaseUrl::parse(named),
                    Err(BaseUrlError::InsecureRemote { .. })
                ),
                "{named} treated as loopback"
            );
        }
        assert!(BaseUrl::parse("https://example.com/?a=b").is_err());
        assert!(BaseUrl::parse("").is_err());
    }

    #[test]
    fn join_builds_paths() {
        let base = BaseUrl::parse("http://127.0.0.1:1/bank-connect/v1").unwrap();
        assert_eq!(
            base.join("session_data/x/progress/"),
            "http://127.0.0.1:1/bank-connect/v1/session_data/x/progress/"
        );
    }
}
