//! The session mix the soak and the chaos run share: what each session does at the simulator,
//! and the outcome it must end with.

use std::time::Duration;

use bankconnect_core::{AccountErrorCode, Outcome, OutcomeKind};
use bankconnect_sim::{FaultKind, SessionScript, Stage};

/// The outcome a planned session must end with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Expect {
    Completed,
    AccountFailure,
    StageFailure,
    Deleted,
    NotFound,
}

/// Session `i` of the mix: its id, its script (`None`: unknown to the simulator, so 404) and
/// the outcome it must end with. Kinds: clean with a webhook, INCOMPLETE_MONTHS, a failed
/// statement stage, deleted (410), duplicate and delayed webhooks, never webhooked, a
/// transient fault on the first request, unknown.
pub fn plan(prefix: &str, i: usize) -> (String, Option<SessionScript>, Expect) {
    let id = format!("{prefix}-{i}");
    let (script, expect) = match i % 8 {
        0 => (
            Some(SessionScript::new(&id).complete_after_polls(3)),
            Expect::Completed,
        ),
        1 => (
            Some(
                SessionScript::new(&id)
                    .account_failure(
                        "INCOMPLETE_MONTHS",
                        "Insufficient data to generate report. There are no transactions for Nov 2023, Dec 2023",
                    )
                    .complete_after_polls(2),
            ),
            Expect::AccountFailure,
        ),
        2 => (
            Some(
                SessionScript::new(&id)
                    .fail_statement_stage(0, Stage::Processing, "Statement is password protected")
                    .complete_after_polls(2),
            ),
            Expect::StageFailure,
        ),
        3 => (Some(SessionScript::new(&id).deleted()), Expect::Deleted),
        4 => (
            Some(
                SessionScript::new(&id)
                    .complete_after(Duration::from_millis(400))
                    .duplicate_webhook()
                    .webhook_delay(Duration::from_millis(150)),
            ),
            Expect::Completed,
        ),
        5 => (
            Some(
                SessionScript::new(&id)
                    .complete_after_polls(2)
                    .without_webhook(),
            ),
            Expect::Completed,
        ),
        6 => (
            Some(
                SessionScript::new(&id)
                    .complete_after(Duration::from_millis(300))
                    .fault_on(1, FaultKind::ServerError),
            ),
            Expect::Completed,
        ),
        _ => (None, Expect::NotFound),
    };
    (id, script, expect)
}

/// Whether `outcome` is what `expect` says.
pub fn correct(outcome: &Outcome, expect: Expect) -> bool {
    let api_error = |code: &str| {
        outcome.outcome == OutcomeKind::ApiError
            && outcome.error.as_ref().is_some_and(|e| e.code == code)
    };
    match expect {
        Expect::Completed => outcome.outcome == OutcomeKind::Completed,
        Expect::StageFailure => {
            outcome.outcome == OutcomeKind::CompletedWithFailures
                && outcome.failed_statements().count() == 1
        }
        Expect::AccountFailure => {
            outcome.outcome == OutcomeKind::CompletedWithFailures
                && outcome.accounts.first().and_then(|a| a.error_code.as_ref())
                    == Some(&AccountErrorCode::IncompleteMonths)
        }
        Expect::Deleted => api_error("SESSION_DELETED"),
        Expect::NotFound => api_error("SESSION_NOT_FOUND"),
    }
}
