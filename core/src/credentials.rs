//! The API key and server hash. Neither is ever shown by `Debug`, `Display`, errors or serde.

use std::fmt;

use http::HeaderValue;

/// Longest accepted secret, in bytes.
pub const MAX_SECRET_LEN: usize = 1024;

/// Why a secret was refused. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// The named secret is empty (or only whitespace).
    #[error("the {0} is empty")]
    Empty(&'static str),
    /// The named secret holds a character that cannot be sent in an HTTP header.
    #[error("the {0} contains a character that cannot be sent in an HTTP header (only visible ASCII is allowed)")]
    InvalidChar(&'static str),
    /// The named secret is longer than [`MAX_SECRET_LEN`].
    #[error("the {0} is longer than {MAX_SECRET_LEN} bytes")]
    TooLong(&'static str),
}

/// A secret string: redacted in `Debug` and `Display`, compared in constant time.
#[derive(Clone)]
pub struct Secret(HeaderValue);

impl Secret {
    /// Validates a secret: 1..=1024 bytes of visible ASCII (it is sent as an HTTP header).
    /// `what` names it in errors ("API key").
    pub fn new(what: &'static str, value: &str) -> Result<Self, CredentialsError> {
        let value = value.trim();
        if value.is_empty() {
            return Err(CredentialsError::Empty(what));
        }
        if value.len() > MAX_SECRET_LEN {
            return Err(CredentialsError::TooLong(what));
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(CredentialsError::InvalidChar(what));
        }
        let mut header =
            HeaderValue::from_str(value).map_err(|_| CredentialsError::InvalidChar(what))?;
        header.set_sensitive(true);
        Ok(Self(header))
    }

    /// The secret, for sending it. Keep the result out of logs.
    pub fn expose(&self) -> &str {
        // Validated as visible ASCII, so this never falls back.
        self.0.to_str().unwrap_or_default()
    }

    /// The secret as a header value marked sensitive (so `http`'s own `Debug` hides it too).
    pub fn header_value(&self) -> HeaderValue {
        self.0.clone()
    }

    /// Compares `candidate` with the secret in time that depends only on their lengths.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        constant_time_eq(self.0.as_bytes(), candidate)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Compares two byte strings in constant time for equal lengths (the `subtle` crate); strings
/// of different lengths are unequal. Used for every secret comparison in the project.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.ct_eq(b))
}

/// The two secrets every BankConnect call carries: `x-api-key` and `server-hash`.
///
/// ```
/// use bankconnect_core::Credentials;
/// let creds = Credentials::new("my-api-key", "my-server-hash").unwrap();
/// assert!(!format!("{creds:?}").contains("my-api-key"));
/// ```
#[derive(Clone)]
pub struct Credentials {
    api_key: Secret,
    server_hash: Secret,
}

impl Credentials {
    /// Validates both secrets.
    pub fn new(api_key: &str, server_hash: &str) -> Result<Self, CredentialsError> {
        Ok(Self {
            api_key: Secret::new("API key", api_key)?,
            server_hash: Secret::new("server hash", server_hash)?,
        })
    }

    /// The API key (`x-api-key`).
    pub fn api_key(&self) -> &Secret {
        &self.api_key
    }

    /// The server hash (`server-hash`).
    pub fn server_hash(&self) -> &Secret {
        &self.server_hash
    }

    /// Checks a request's two headers against these credentials, in constant time.
    pub fn matches(&self, api_key: &[u8], server_hash: &[u8]) -> bool {
        // Evaluate both before combining, so timing does not reveal which one failed.
        let key_ok = self.api_key.matches(api_key);
        let hash_ok = self.server_hash.matches(server_hash);
        key_ok & hash_ok
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("api_key", &self.api_key)
            .field("server_hash", &self.server_hash)
            .finish()
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shown() {
        let creds = Credentials::new("KEY-canary-123", "HASH-canary-456").unwrap();
        for text in [
            format!("{creds:?}"),
            format!("{creds}"),
            format!("{creds:#?}"),
            format!("{:?}", creds.api_key().header_value()),
        ] {
            assert!(!text.contains("canary"), "{text}");
        }
        assert_eq!(creds.api_key().expose(), "KEY-canary-123");
    }

    #[test]
    fn validation_errors_do_not_echo() {
        let err = Credentials::new("bad\nkey-secretpart", "h").unwrap_err();
        assert_eq!(err, CredentialsError::InvalidChar("API key"));
        assert!(!err.to_string().contains("secretpart"));
        assert_eq!(
            Credentials::new("k", " ").unwrap_err(),
            CredentialsError::Empty("server hash")
        );
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
        let creds = Credentials::new("k1", "h1").unwrap();
        assert!(creds.matches(b"k1", b"h1"));
        assert!(!creds.matches(b"k1", b"h2"));
        assert!(!creds.matches(b"", b""));
    }
}
