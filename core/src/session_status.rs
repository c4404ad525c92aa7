//! The session-status report: `GET …/session_data/<id>/session_status/`, the account-level
//! verdicts a missed webhook would have carried.

use serde::{Deserialize, Serialize};

use crate::account::AccountResult;
use crate::classify::{classify_with, parse_json, ApiError, Classified, HttpResult};
use crate::error_codes::ApiErrorCode;
use crate::ids::SessionId;

/// The accounts of a session and their statements, as `session_status` reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionStatus {
    /// The session.
    pub session_id: SessionId,
    /// Its accounts, each with its statements.
    #[serde(default, deserialize_with = "crate::progress::null_as_empty")]
    pub accounts: Vec<AccountResult>,
}

/// What a session-status exchange said.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::exhaustive_enums)] // closed: the accounts, or not yet
pub enum SessionStatusReply {
    /// The accounts.
    Ready(SessionStatus),
    /// PROCESSING_NOT_COMPLETED: processing has not finished, ask again later.
    NotYet(ApiError),
}

/// Classifies a session-status exchange; PROCESSING_NOT_COMPLETED becomes [`SessionStatusReply::NotYet`].
pub fn classify_session_status(result: HttpResult) -> Classified<SessionStatusReply> {
    match classify_with(result, parse_json::<SessionStatus>) {
        Classified::Ok(status) => Classified::Ok(SessionStatusReply::Ready(status)),
        Classified::Api(err) if err.code == ApiErrorCode::ProcessingNotCompleted => {
            Classified::Ok(SessionStatusReply::NotYet(err))
        }
        Classified::Api(err) => Classified::Api(err),
        Classified::Transient(failure) => Classified::Transient(failure),
    }
}
