//! Identifiers: session, statement and account IDs.
//!
//! FinBox's IDs are UUIDs, but the docs do not promise it, so an ID is any 1–128 characters of
//! `A–Z a–z 0–9 - _ . ~` (the URL-unreserved set) other than `.` and `..`. That keeps every ID safe
//! to place in a URL path segment without escaping, and refuses anything that could change the path.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest accepted identifier, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Why a string is not a valid identifier. Never includes the string itself beyond its length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The ID is empty.
    #[error("{kind} is empty")]
    Empty {
        /// Which kind of ID.
        kind: &'static str,
    },
    /// The ID is longer than [`MAX_ID_LEN`].
    #[error("{kind} is {len} bytes long; at most {MAX_ID_LEN} are accepted")]
    TooLong {
        /// Which kind of ID.
        kind: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// The ID holds a character outside `A-Z a-z 0-9 - _ . ~`, or is `.` or `..`.
    #[error("{kind} may only contain letters, digits, '-', '_', '.' and '~' (found {found:?} at byte {at})")]
    InvalidChar {
        /// Which kind of ID.
        kind: &'static str,
        /// The offending character.
        found: char,
        /// Its byte offset.
        at: usize,
    },
}

fn validate(kind: &'static str, text: &str) -> Result<(), IdError> {
    if text.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if text.len() > MAX_ID_LEN {
        return Err(IdError::TooLong {
            kind,
            len: text.len(),
        });
    }
    if let Some((at, found)) = text
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~')))
    {
        return Err(IdError::InvalidChar { kind, found, at });
    }
    if text == "." || text == ".." {
        return Err(IdError::InvalidChar {
            kind,
            found: '.',
            at: 0,
        });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $kind:literal) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates and wraps an identifier.
            pub fn new(text: impl AsRef<str>) -> Result<Self, IdError> {
                let text = text.as_ref();
                validate($kind, text)?;
                Ok(Self(text.into()))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:?})"), &*self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(text: &str) -> Result<Self, IdError> {
                Self::new(text)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(text: &str) -> Result<Self, IdError> {
                Self::new(text)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(text: String) -> Result<Self, IdError> {
                validate($kind, &text)?;
                Ok(Self(text.into()))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::try_from(text).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// A BankConnect session ID (the unit that is processed and tracked).
    SessionId,
    "session id"
);
id_type!(
    /// A statement ID within a session.
    StatementId,
    "statement id"
);
id_type!(
    /// An account ID within a session.
    AccountId,
    "account id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_uuids_and_refuses_path_tricks() {
        assert!(SessionId::new("bfb98ac5-7224-401b-a643-175235856187").is_ok());
        for bad in ["", ".", "..", "a/b", "a?b", "a b", "a%2F", "é", "a\nb"] {
            assert!(SessionId::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(matches!(
            SessionId::new("x".repeat(129)),
            Err(IdError::TooLong { len: 129, .. })
        ));
    }

    #[test]
    fn serde_validates() {
        let id: SessionId = serde_json::from_str("\"abc-1\"").unwrap();
        assert_eq!(id.as_str(), "abc-1");
        assert!(serde_json::from_str::<SessionId>("\"../x\"").is_err());
    }
}
