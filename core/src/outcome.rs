//! How a tracked session ended, in the shape of the CLI contract.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::account::AccountResult;
use crate::classify::{ApiError, TransientFailure};
use crate::ids::SessionId;
use crate::progress::StatementProgress;
use crate::status::SessionProgress;
use crate::transport_error::TransportErrorKind;

/// The kind of ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OutcomeKind {
    /// Processing completed and nothing failed.
    Completed,
    /// Processing completed, but a statement stage or an account failed.
    CompletedWithFailures,
    /// The max wait passed before the session ended.
    TimedOut,
    /// The API refused: SESSION_NOT_FOUND, SESSION_DELETED, ACCESS_DENIED, … .
    ApiError,
    /// The API stayed unreachable or kept answering garbage past the retry budget.
    TransportError,
}

impl OutcomeKind {
    /// The outcome's name in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::CompletedWithFailures => "completed_with_failures",
            Self::TimedOut => "timed_out",
            Self::ApiError => "api_error",
            Self::TransportError => "transport_error",
        }
    }

    /// The `bankconnect` exit code for this outcome (0, 3, 4, 5, 6); with several sessions the
    /// highest wins.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Completed => 0,
            Self::CompletedWithFailures => 3,
            Self::TimedOut => 4,
            Self::ApiError => 5,
            Self::TransportError => 6,
        }
    }

    /// Whether processing finished (with or without failures).
    pub fn is_completed(self) -> bool {
        matches!(self, Self::Completed | Self::CompletedWithFailures)
    }
}

impl fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How completion was learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(clippy::exhaustive_enums)] // closed: a webhook (confirmed) or polling alone
pub enum NotifiedBy {
    /// By polling the progress endpoint.
    Poll,
    /// By a webhook, confirmed by one progress request.
    Webhook,
}

impl NotifiedBy {
    /// The name as serialized: `poll` or `webhook`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Poll => "poll",
            Self::Webhook => "webhook",
        }
    }
}

/// The error of an `api_error` or `transport_error` outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OutcomeError {
    /// The API's code (`SESSION_NOT_FOUND`, …), or for transport errors one of `CONNECT`,
    /// `TIMEOUT`, `RESET`, `TRANSPORT`, `SERVER_ERROR`, `RATE_LIMITED`, `UNPARSABLE_RESPONSE`.
    pub code: String,
    /// The HTTP status, when there was a response.
    pub http_status: Option<u16>,
    /// A description for people.
    pub message: String,
}

impl From<&ApiError> for OutcomeError {
    fn from(err: &ApiError) -> Self {
        Self {
            code: err.code.as_str().to_owned(),
            http_status: Some(err.http_status),
            message: err.message.clone(),
        }
    }
}

impl From<&TransientFailure> for OutcomeError {
    fn from(failure: &TransientFailure) -> Self {
        let (code, http_status) = match failure {
            TransientFailure::Transport(err) => (
                match err.kind {
                    TransportErrorKind::Connect => "CONNECT",
                    TransportErrorKind::Timeout => "TIMEOUT",
                    TransportErrorKind::Reset => "RESET",
                    _ => "TRANSPORT",
                },
                None,
            ),
            TransientFailure::ServerError { http_status, .. } => {
                ("SERVER_ERROR", Some(*http_status))
            }
            TransientFailure::RateLimited { .. } => ("RATE_LIMITED", Some(429)),
            TransientFailure::UnparsableBody { http_status, .. } => {
                ("UNPARSABLE_RESPONSE", Some(*http_status))
            }
        };
        Self {
            code: code.to_owned(),
            http_status,
            message: failure.to_string(),
        }
    }
}

/// How one tracked session ended, with what was last seen of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Outcome {
    /// The session.
    pub session_id: SessionId,
    /// The kind of ending.
    pub outcome: OutcomeKind,
    /// The refusal or the last transport cause, for `api_error` and `transport_error`.
    pub error: Option<OutcomeError>,
    /// The statements as last seen on the progress endpoint.
    pub statements: Vec<StatementProgress>,
    /// The accounts' verdicts: from the webhook, else from `session_status`.
    pub accounts: Vec<AccountResult>,
    /// How the ending was learnt: `webhook` when a webhook for the session came (then confirmed
    /// by a progress request), else `poll`.
    pub notified_by: NotifiedBy,
    /// Progress requests sent.
    pub polls: u32,
    /// Requests that were retries after a transient failure.
    pub retries: u32,
    /// Time from the start of tracking to the end, in milliseconds.
    pub elapsed_ms: u64,
    /// The session's progress as last seen, if any response was read.
    pub session_progress: Option<SessionProgress>,
    /// Why the accounts could not be fetched from `session_status`, when that was tried and failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounts_error: Option<String>,
}

impl Outcome {
    /// The statements with a failed stage.
    pub fn failed_statements(&self) -> impl Iterator<Item = &StatementProgress> {
        self.statements.iter().filter(|s| s.has_failed_stage())
    }

    /// The accounts that failed.
    pub fn failed_accounts(&self) -> impl Iterator<Item = &AccountResult> {
        self.accounts.iter().filter(|a| a.is_failed())
    }
}
