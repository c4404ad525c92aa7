//! Errors the command reports, each with its exit code and JSON kind. Messages never hold secrets.

use std::fmt;

/// Exit codes of the contract.
pub(crate) mod exit {
    pub(crate) const OK: u8 = 0;
    pub(crate) const INVALID_INPUT: u8 = 1;
    pub(crate) const USAGE: u8 = 2;
    pub(crate) const API: u8 = 5;
    pub(crate) const TRANSPORT: u8 = 6;
}

/// A failure of the command as a whole.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) kind: &'static str,
    pub(crate) message: String,
    pub(crate) code: u8,
}

impl Failure {
    /// A usage or configuration error (exit 2): one sentence saying what to do.
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self {
            kind: "usage",
            message: message.into(),
            code: exit::USAGE,
        }
    }

    /// Invalid input to `webhook verify` (exit 1).
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self {
            kind: "invalid_input",
            message: message.into(),
            code: exit::INVALID_INPUT,
        }
    }

    /// An unexpected internal error (exit 1).
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self {
            kind: "internal",
            message: message.into(),
            code: exit::INVALID_INPUT,
        }
    }

    /// A failed API call: refused (5) or unreachable (6).
    pub(crate) fn call(err: &bankconnect_core::CallError) -> Self {
        match err {
            bankconnect_core::CallError::Api(api) => Self {
                kind: "api_error",
                message: api.to_string(),
                code: exit::API,
            },
            other => Self {
                kind: "transport_error",
                message: other.to_string(),
                code: exit::TRANSPORT,
            },
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<bankconnect_core::ClientError> for Failure {
    fn from(err: bankconnect_core::ClientError) -> Self {
        match err {
            bankconnect_core::ClientError::Call(call) => Self::call(&call),
            other => Self::usage(other.to_string()),
        }
    }
}
