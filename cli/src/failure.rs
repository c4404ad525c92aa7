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
    /// The exit code.
    pub(crate) code: u8,
    /// The API's error code (SESSION_NOT_FOUND…), when the API refused.
    pub(crate) api_code: Option<String>,
    /// The HTTP status of the API's answer, when there was one.
    pub(crate) http_status: Option<u16>,
}

impl Failure {
    /// A usage or configuration error (exit 2): one sentence saying what to do.
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self {
            kind: "usage",
            message: message.into(),
            code: exit::USAGE,
            api_code: None,
            http_status: None,
        }
    }

    /// Invalid input to `webhook verify` (exit 1).
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self {
            kind: "invalid_input",
            message: message.into(),
            code: exit::INVALID_INPUT,
            api_code: None,
            http_status: None,
        }
    }

    /// An unexpected internal error (exit 1).
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self {
            kind: "internal",
            message: message.into(),
            code: exit::INVALID_INPUT,
            api_code: None,
            http_status: None,
        }
    }

    /// A failed API call: refused (5) or unreachable (6).
    pub(crate) fn call(err: &bankconnect_core::CallError) -> Self {
        match err {
            bankconnect_core::CallError::Api(api) => Self {
                kind: "api_error",
                message: api.to_string(),
                code: exit::API,
                api_code: Some(api.code.as_str().to_owned()),
                http_status: Some(api.http_status),
            },
            bankconnect_core::CallError::Transient { last, .. } => Self {
                kind: "transport_error",
                message: err.to_string(),
                code: exit::TRANSPORT,
                api_code: None,
                http_status: last.http_status(),
            },
            other => Self {
                kind: "transport_error",
                message: other.to_string(),
                code: exit::TRANSPORT,
                api_code: None,
                http_status: None,
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
