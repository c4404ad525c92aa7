//! A failure to get any HTTP response at all, as reported by a transport.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What kind of transport failure happened. All kinds are transient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// The connection could not be established (refused, DNS, TLS handshake).
    Connect,
    /// The request or response did not complete in time.
    Timeout,
    /// The connection was reset or closed mid-exchange (including truncated bodies).
    Reset,
    /// Anything else the transport reports.
    Other,
}

impl TransportErrorKind {
    /// The kind's name as it appears in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Reset => "reset",
            Self::Other => "other",
        }
    }
}

/// A transport failure: its kind and a human-readable description (which must hold no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TransportError {
    /// What went wrong.
    pub kind: TransportErrorKind,
    /// A description for people.
    pub message: String,
}

impl TransportError {
    /// A failure of the given kind.
    pub fn new(kind: TransportErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error: {}", self.kind.as_str(), self.message)
    }
}

impl std::error::Error for TransportError {}
