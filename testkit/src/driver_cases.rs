//! The scenario list both drivers are tested on, against the simulator over loopback HTTP.
//! Used by `http-async/tests/simulator.rs` and `http-blocking/tests/simulator.rs`, so the two
//! drivers are held to exactly the same expectations.

use std::time::Duration;

use bankconnect_core::{
    AccountErrorCode, ErrorDetail, NotifiedBy, Outcome, OutcomeKind, PollPolicy,
};
use bankconnect_sim::{FaultKind, LoggedRequest, SessionScript, Stage};

/// A fast policy for tests: 100 ms interval, short backoff.
pub fn fast_policy() -> PollPolicy {
    PollPolicy {
        interval: Duration::from_millis(100),
        interval_jitter: 0.0,
        max_wait: Duration::from_secs(20),
        backoff: bankconnect_core::Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
            multiplier: 2.0,
        },
        retry_after_cap: Duration::from_millis(1500),
        ..PollPolicy::default()
    }
}

/// One case: a scripted session, the policy, and what must come out.
pub struct Case {
    pub name: &'static str,
    /// The session's script (`None`: the session does not exist on the simulator).
    pub script: Option<SessionScript>,
    pub session_id: &'static str,
    pub policy: PollPolicy,
    /// Call with wrong credentials.
    pub wrong_credentials: bool,
    pub check: fn(&Outcome, &[LoggedRequest]),
}

fn progress_requests(log: &[LoggedRequest]) -> Vec<&LoggedRequest> {
    log.iter()
        .filter(|r| r.path.ends_with("/progress/"))
        .collect()
}

/// Progress requests are never closer than the interval, and every request carries the headers.
fn assert_polite(log: &[LoggedRequest], interval: Duration) {
    let polls = progress_requests(log);
    for pair in polls.windows(2) {
        let gap = pair[1].at_ms.saturating_sub(pair[0].at_ms);
        // The simulator stamps arrival, which lags the send by a varying amount on a busy
        // machine (the exact spacing is proven in the core's virtual-time properties): here,
        // only that polling is nowhere near faster than the interval.
        assert!(
            gap * 2 >= interval.as_millis() as u64,
            "polls {gap} ms apart"
        );
    }
    for request in log {
        assert_eq!(
            request.header("x-api-key"),
            Some("<redacted>"),
            "x-api-key missing"
        );
        assert_eq!(
            request.header("server-hash"),
            Some("<redacted>"),
            "server-hash missing"
        );
        assert_eq!(request.header("accept"), Some("application/json"));
        assert!(request
            .header("user-agent")
            .is_some_and(|ua| ua.starts_with("bankconnect-core/")));
    }
}

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "completes after several polls",
            script: Some(SessionScript::new("c-complete").complete_after_polls(3)),
            session_id: "c-complete",
            policy: fast_policy(),
            wrong_credentials: false,
            check: |outcome, log| {
                assert_eq!(outcome.outcome, OutcomeKind::Completed);
                assert_eq!(outcome.polls, 3);
                assert_eq!(outcome.notified_by, NotifiedBy::Poll);
                assert_eq!(outcome.accounts.len(), 1, "accounts from session_status");
                assert_eq!(log.len(), 4);
                assert!(log[3].path.ends_with("/session_status/"));
                assert_polite(log, fast_policy().interval);
            },
        },
        Case {
            name: "failed statement stage",
            script: Some(
                SessionScript::new("c-stage")
                    .fail_statement_stage(0, Stage::Transaction, "Statement is password protected")
                    .complete_after_polls(1),
            ),
            session_id: "c-stage",
            policy: fast_policy(),
            wrong_credentials: false,
            check: |outcome, _| {
                assert_eq!(outcome.outcome, OutcomeKind::CompletedWithFailures);
                assert_eq!(outcome.statements[0].message.as_deref(), Some("Statement is password protected"));
            },
        },
        Case {
            name: "account failure learnt by polling alone",
            script: Some(
                SessionScript::new("c-months")
                    .account_failure(
                        "INCOMPLETE_MONTHS",
                        "Insufficient data to generate report. There are no transactions for Nov 2023, Dec 2023",
                    )
                    .complete_after_polls(2)
                    .without_webhook(),
            ),
            session_id: "c-months",
            policy: fast_policy(),
            wrong_credentials: false,
            check: |outcome, _| {
                assert_eq!(outcome.outcome, OutcomeKind::CompletedWithFailures);
                let account = &outcome.accounts[0];
                assert_eq!(account.error_code, Some(AccountErrorCode::IncompleteMonths));
                assert!(matches!(&account.error_detail, Some(ErrorDetail::Months(m)) if m.len() == 2));
                assert_eq!(account.account_number.as_deref(), Some("XXXXXXXX1234"));
            },
        },
        Case {
            name: "session_status failing (5xx then 404) keeps the progress verdict",
            script: Some(
                SessionScript::new("c-status-fails")
                    .fail_statement_stage(0, Stage::Fraud, "Fraud check failed")
                    .complete_after_polls(1)
                    .fault_on(2, FaultKind::ServerError)
                    .fault_on(3, FaultKind::NotFound),
            ),
            session_id: "c-status-fails",
            policy: fast_policy(),
            wrong_credentials: false,
            check: |outcome, log| {
                assert_eq!(outcome.outcome, OutcomeKind::CompletedWithFailures);
                assert!(outcome.accounts.is_empty());
                let reason = outcome.accounts_error.as_deref().unwrap();
                assert!(reason.contains("SESSION_NOT_FOUND"), "{reason}");
                assert_eq!(log.len(), 3);
            },
        },
        Case {
            name: "SESSION_NOT_FOUND",
            script: None,
            session_id: "c-nobody",
            policy: fast_policy(),
            wrong_credentials: false,
            check: |outcome, log| {
                assert_eq!(outcome.outcome, OutcomeKind::ApiError);
                let error = outcome.error.as_ref().unwrap();
                assert_eq!((error.code.as_str(), error.http_status), ("SESSION_NOT_FOUND", Some(404)));
                assert_eq!(log.len(), 1, "terminal at once");
            },
        },
        Case {
            name: "SESSION_DELETED",
            script: Some(SessionScript::new("c-deleted").deleted()),
            session_id: "c-deleted",
            policy: fast_policy(),
            wrong_credentials: false,
            check: |outcome, log| {
                assert_eq!(outcome.error.as_ref().unwrap().code, "SESSION_DELETED");
                assert_eq!(log.len(), 1);
            },
        },
        Case {
            name: "ACCESS_DENIED",
            script: Some(SessionScript::new("c-denied")),
            session_id: "c-denied",
            policy: fast_policy(),
            wrong_credentials: true,
            check: |outcome, log| {
                assert_eq!(outcome.outcome, OutcomeKind::ApiError);
                assert_eq!(outcome.error.as_ref().unwrap().code, "ACCESS_DENIED");
                assert_eq!(outcome.error.as_ref().unwrap().http_status, Some(403));
                assert_eq!(log.len(), 1);
                assert!(!log[0].credentials_ok);
            },
        },
        Case {
            name: "PROCESSING_NOT_REQUESTED without grace",
            script: Some(SessionScript::new("c-nr").not_requested(None)),
            session_id: "c-nr",
            policy: fast_policy(),
            wrong_credentials: false,
            check: |outcome, log| {
                assert_eq!(outcome.error.as_ref().unwrap().code, "PROCESSING_NOT_REQUESTED");
                assert_eq!(log.len(), 1);
            },
        },
        Case {
            name: "PROCESSING_NOT_REQUESTED within grace",
            script: Some(SessionScript::new("c-nr-grace").not_requested(Some(2)).complete_after_polls(1)),
            session_id: "c-nr-grace",
            policy: PollPolicy {
                not_requested_grace: Duration::from_secs(5),
                ..fast_policy()
            },
            wrong_credentials: false,
            check: |outcome, log| {
                assert_eq!(outcome.outcome, OutcomeKind::Completed);
                assert_eq!(progress_requests(log).len(), 3);
                assert_polite(log, fast_policy().interval);
            },
        },
        Case {
            name: "transient faults recovered",
            script: Some(
                SessionScript::new("c-faults")
                    .fault_on(1, FaultKind::ServerError)
                    .fault_on(2, FaultKind::RateLimited)
                    .fault_on(3, FaultKind::Truncated)
                    .fault_on(4, FaultKind::Reset)
                    .fault_on(5, FaultKind::Html)
                    .fault_on(6, FaultKind::Garbage)
                    .complete_after_polls(2),
            ),
            session_id: "c-faults",
            policy: fast_policy(),
            wrong_credentials: false,
            check: |outcome, log| {
                assert_eq!(outcome.outcome, OutcomeKind::Completed, "{outcome:?}");
                assert_eq!(outcome.retries, 6);
                assert_eq!(outcome.polls, 8);
                // The 429 asked for 1 s: the next request waited for it.
                let after_429 = log[2].at_ms - log[1].at_ms;
                assert!(after_429 >= 990, "retried {after_429} ms after a 429 with Retry-After: 1");
                assert_polite(log, fast_policy().interval);
            },
        },
        Case {
            name: "max wait",
            script: Some(SessionScript::new("c-slow").complete_after(Duration::from_secs(60))),
            session_id: "c-slow",
            policy: PollPolicy {
                max_wait: Duration::from_millis(700),
                ..fast_policy()
            },
            wrong_credentials: false,
            check: |outcome, log| {
                assert_eq!(outcome.outcome, OutcomeKind::TimedOut);
                assert!(outcome.elapsed_ms >= 700 && outcome.elapsed_ms < 2_000, "{}", outcome.elapsed_ms);
                assert!(!outcome.statements.is_empty(), "what was last seen");
                assert!(log.len() >= 5);
            },
        },
        Case {
            name: "retry budget",
            script: Some(
                (1..=4).fold(SessionScript::new("c-budget"), |s, n| s.fault_on(n, FaultKind::ServerError)),
            ),
            session_id: "c-budget",
            policy: PollPolicy {
                retry_budget: 3,
                ..fast_policy()
            },
            wrong_credentials: false,
            check: |outcome, log| {
                assert_eq!(outcome.outcome, OutcomeKind::TransportError);
                let error = outcome.error.as_ref().unwrap();
                assert_eq!((error.code.as_str(), error.http_status), ("SERVER_ERROR", Some(503)));
                assert_eq!(log.len(), 4);
            },
        },
    ]
}
