//! The session state machine, rule by rule, in virtual time (no sleeps).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, Instant};

use bankconnect_core::{
    AccountErrorCode, Action, ErrorDetail, Input, NotifiedBy, Outcome, OutcomeKind, PollPolicy,
    SessionSnapshot, TrackedSession, WebhookHint,
};
use common::*;

fn no_jitter() -> PollPolicy {
    PollPolicy {
        interval_jitter: 0.0,
        ..PollPolicy::default()
    }
}

fn assert_spacing(sent: &[Sent], min: Duration) {
    let polls: Vec<_> = sent.iter().filter(|s| s.is_progress()).collect();
    for pair in polls.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= min,
            "polls too close: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
}

#[test]
fn completes_after_several_polls_then_fetches_accounts() {
    let t0 = Instant::now();
    let (outcome, sent) = drive(
        track(no_jitter(), "s1", t0, 1),
        t0,
        |i, path| {
            let result = match (i, path.ends_with("/session_status/")) {
                (_, true) => session_status("s1", "completed", "", ""),
                (0 | 1, false) => processing("s1"),
                _ => completed("s1"),
            };
            (result, LATENCY)
        },
        None,
    );
    assert_eq!(outcome.outcome, OutcomeKind::Completed);
    assert_eq!(outcome.polls, 3);
    assert_eq!(outcome.retries, 0);
    assert_eq!(outcome.notified_by, NotifiedBy::Poll);
    assert_eq!(sent.len(), 4);
    assert_eq!(sent[0].at, Duration::ZERO, "the first poll goes at once");
    assert_eq!(sent[1].at, Duration::from_secs(2));
    assert_eq!(sent[2].at, Duration::from_secs(4));
    assert!(sent[3].path.ends_with("/s1/session_status/"));
    assert_eq!(outcome.accounts.len(), 1);
    assert_eq!(
        outcome.accounts[0].account_number.as_deref(),
        Some("XXXX1234")
    );
    assert_eq!(outcome.statements.len(), 1);
    assert_eq!(outcome.elapsed_ms, 4_160);
    let json = serde_json::to_value(&outcome).unwrap();
    assert_eq!(json["outcome"], "completed");
    assert_eq!(json["notified_by"], "poll");
    assert!(json["error"].is_null());
    assert_eq!(json["polls"], 3);
}

#[test]
fn failed_stage_or_account_means_completed_with_failures() {
    let t0 = Instant::now();
    let (outcome, _) = drive(
        track(no_jitter(), "s1", t0, 1),
        t0,
        |_, path| {
            if path.ends_with("/session_status/") {
                (session_status("s1", "completed", "", ""), LATENCY)
            } else {
                (progress("s1", "completed", "failed"), LATENCY)
            }
        },
        None,
    );
    assert_eq!(outcome.outcome, OutcomeKind::CompletedWithFailures);
    assert_eq!(outcome.failed_statements().count(), 1);

    let (outcome, _) = drive(
        track(no_jitter(), "s1", t0, 1),
        t0,
        |_, path| {
            if path.ends_with("/session_status/") {
                let message = "There are no transactions for Nov 2023, Dec 2023";
                (
                    session_status("s1", "failed", "INCOMPLETE_MONTHS", message),
                    LATENCY,
                )
            } else {
                (completed("s1"), LATENCY)
            }
        },
        None,
    );
    assert_eq!(outcome.outcome, OutcomeKind::CompletedWithFailures);
    let account = &outcome.accounts[0];
    assert_eq!(account.error_code, Some(AccountErrorCode::IncompleteMonths));
    assert!(matches!(&account.error_detail, Some(ErrorDetail::Months(m)) if m.len() == 2));
    assert_eq!(outcome.notified_by, NotifiedBy::Poll);
}

#[test]
fn webhook_ends_the_wait_after_one_confirming_request() {
    let t0 = Instant::now();
    let policy = PollPolicy {
        interval: Duration::from_secs(30),
        ..no_jitter()
    };
    let mut webhook_seen = false;
    let (outcome, sent) = drive(
        track(policy, "s1", t0, 1),
        t0,
        |i, _| {
            if i > 0 {
                webhook_seen = true;
            }
            (
                if i == 0 {
                    processing("s1")
                } else {
                    completed("s1")
                },
                LATENCY,
            )
        },
        Some((
            Duration::from_secs(5),
            hint(
                "s1",
                "failed",
                Some("INCOMPLETE_DATES_UPLOAD"),
                Some(r#"Missing dates present for {"Jan 2024": [1, 2]}"#),
            ),
        )),
    );
    assert!(webhook_seen);
    assert_eq!(
        sent.len(),
        2,
        "one poll, one confirmation, no session_status"
    );
    assert_eq!(
        sent[1].at,
        Duration::from_secs(5),
        "confirmed at once, not at the 30 s interval"
    );
    assert_eq!(outcome.notified_by, NotifiedBy::Webhook);
    assert_eq!(outcome.outcome, OutcomeKind::CompletedWithFailures);
    assert!(matches!(
        outcome.accounts[0].error_detail,
        Some(ErrorDetail::Dates(_))
    ));
}

#[test]
fn webhook_confirmation_keeps_a_minimum_spacing() {
    let t0 = Instant::now();
    let (_, sent) = drive(
        track(no_jitter(), "s1", t0, 1),
        t0,
        |i, _| {
            (
                if i == 0 {
                    processing("s1")
                } else {
                    completed("s1")
                },
                LATENCY,
            )
        },
        Some((
            Duration::from_millis(100),
            hint("s1", "completed", None, None),
        )),
    );
    // The webhook lands while the first poll is in flight: the confirmation waits 1 s after it.
    assert_eq!(sent[1].at, Duration::from_secs(1));
}

/// Session `s1` processing for three polls, then completed, with `webhook` landing at 500 ms
/// (before it is done).
fn premature(webhook: WebhookHint) -> (Outcome, Vec<Sent>) {
    let t0 = Instant::now();
    drive(
        track(no_jitter(), "s1", t0, 1),
        t0,
        |i, _| {
            (
                if i < 3 {
                    processing("s1")
                } else {
                    completed("s1")
                },
                LATENCY,
            )
        },
        Some((Duration::from_millis(500), webhook)),
    )
}

#[test]
fn premature_webhook_falls_back_to_polling() {
    let (outcome, sent) = premature(hint("s1", "completed", None, None));
    assert_eq!(outcome.outcome, OutcomeKind::Completed);
    assert_eq!(outcome.notified_by, NotifiedBy::Webhook);
    assert_eq!(sent.len(), 4);
    assert_spacing(&sent[1..], Duration::from_secs(2));
}

#[test]
fn terminal_api_errors_end_at_once() {
    for (status, code) in [
        (404, "SESSION_NOT_FOUND"),
        (410, "SESSION_DELETED"),
        (403, "ACCESS_DENIED"),
        (400, "KEY_REQUIRED"),
        (422, "SOMETHING_ELSE"),
        (400, "PROCESSING_NOT_REQUESTED"),
    ] {
        let t0 = Instant::now();
        let (outcome, sent) = drive(
            track(no_jitter(), "s1", t0, 1),
            t0,
            |_, _| (api_error(status, code), LATENCY),
            None,
        );
        assert_eq!(sent.len(), 1, "{code}");
        assert_eq!(outcome.outcome, OutcomeKind::ApiError);
        let error = outcome.error.unwrap();
        assert_eq!(error.code, code);
        assert_eq!(error.http_status, Some(status));
        assert_eq!(outcome.elapsed_ms, 80);
    }
    let t0 = Instant::now();
    let (outcome, _) = drive(
        track(no_jitter(), "s1", t0, 1),
        t0,
        |_, _| (json(403, "<html>Forbidden</html>"), LATENCY),
        None,
    );
    assert_eq!(outcome.error.unwrap().code, "ACCESS_DENIED");
}

#[test]
fn processing_not_requested_is_polled_during_grace() {
    let t0 = Instant::now();
    let policy = PollPolicy {
        not_requested_grace: Duration::from_secs(10),
        ..no_jitter()
    };
    let (outcome, sent) = drive(
        track(policy.clone(), "s1", t0, 1),
        t0,
        |_, _| (api_error(400, "PROCESSING_NOT_REQUESTED"), LATENCY),
        None,
    );
    assert_eq!(outcome.outcome, OutcomeKind::ApiError);
    assert_eq!(sent.len(), 6, "polled at 0, 2, 4, 6, 8 and 10 s");
    assert_eq!(sent.last().unwrap().at, Duration::from_secs(10));
    assert_spacing(&sent, Duration::from_secs(2));

    let (outcome, _) = drive(
        track(policy, "s1", t0, 1),
        t0,
        |i, path| match (i, path.ends_with("/session_status/")) {
            (_, true) => (session_status("s1", "completed", "", ""), LATENCY),
            (0 | 1, _) => (api_error(400, "PROCESSING_NOT_REQUESTED"), LATENCY),
            (2, _) => (processing("s1"), LATENCY),
            _ => (completed("s1"), LATENCY),
        },
        None,
    );
    assert_eq!(outcome.outcome, OutcomeKind::Completed);
}

#[test]
fn transient_failures_are_retried_with_capped_backoff() {
    let t0 = Instant::now();
    let (outcome, sent) = drive(
        track(no_jitter(), "s1", t0, 3),
        t0,
        |i, path| match (i, path.ends_with("/session_status/")) {
            (_, true) => (session_status("s1", "completed", "", ""), LATENCY),
            (0, _) => (json(503, "<html>down</html>"), LATENCY),
            (1, _) => (timeout(), Duration::from_secs(30)),
            (2, _) => (json(200, "garbage"), LATENCY),
            (3, _) => (json(502, ""), LATENCY),
            _ => (completed("s1"), LATENCY),
        },
        None,
    );
    assert_eq!(outcome.outcome, OutcomeKind::Completed);
    assert_eq!(outcome.retries, 4);
    assert_eq!(outcome.polls, 5);
    assert_spacing(&sent, Duration::from_secs(2));
    // The n-th retry waits at most max(interval, 2^(n-1) s) after the failure.
    let polls: Vec<_> = sent.iter().filter(|s| s.is_progress()).collect();
    let ceilings = [2, 2, 4, 8];
    for (n, pair) in polls.windows(2).enumerate() {
        let answered = pair[0].at
            + if n == 1 {
                Duration::from_secs(30)
            } else {
                LATENCY
            };
        assert!(pair[1].at >= answered);
        assert!(
            pair[1].at - answered <= Duration::from_secs(ceilings[n]).max(Duration::from_secs(2)),
            "retry {n} too late: {:?}",
            pair
        );
    }
}

#[test]
fn retry_after_is_honoured_and_capped() {
    let t0 = Instant::now();
    let (_, sent) = drive(
        track(no_jitter(), "s1", t0, 1),
        t0,
        |i, path| match (i, path.ends_with("/session_status/")) {
            (_, true) => (session_status("s1", "completed", "", ""), LATENCY),
            (0, _) => (status_with_retry_after(429, "7"), LATENCY),
            (1, _) => (status_with_retry_after(503, "3600"), LATENCY),
            _ => (completed("s1"), LATENCY),
        },
        None,
    );
    assert_eq!(sent[1].at, LATENCY + Duration::from_secs(7));
    assert_eq!(sent[2].at, sent[1].at + LATENCY + Duration::from_secs(60));
}

#[test]
fn retry_budget_ends_with_the_last_cause() {
    let t0 = Instant::now();
    let policy = PollPolicy {
        retry_budget: 4,
        ..no_jitter()
    };
    let (outcome, sent) = drive(
        track(policy, "s1", t0, 1),
        t0,
        |i, _| (if i < 4 { json(500, "") } else { timeout() }, LATENCY),
        None,
    );
    assert_eq!(sent.len(), 5, "the first try and four retries");
    assert_eq!(outcome.outcome, OutcomeKind::TransportError);
    assert_eq!(outcome.retries, 4);
    let error = outcome.error.unwrap();
    assert_eq!(error.code, "TIMEOUT");
    assert_eq!(error.http_status, None);
}

#[test]
fn an_api_unreachable_until_max_wait_is_a_transport_error() {
    let t0 = Instant::now();
    let policy = PollPolicy {
        max_wait: Duration::from_secs(20),
        retry_budget: 100,
        ..no_jitter()
    };
    let (outcome, sent) = drive(
        track(policy, "s1", t0, 1),
        t0,
        |_, _| {
            let refused = bankconnect_core::TransportError::new(
                bankconnect_core::TransportErrorKind::Connect,
                "connection refused",
            );
            (Err(refused), LATENCY)
        },
        None,
    );
    assert!(sent.len() >= 3);
    assert_eq!(outcome.outcome, OutcomeKind::TransportError);
    assert_eq!(outcome.error.unwrap().code, "CONNECT");
    assert!(outcome.elapsed_ms >= 20_000);
}

#[test]
fn a_success_resets_the_budget() {
    let t0 = Instant::now();
    let policy = PollPolicy {
        retry_budget: 1,
        ..no_jitter()
    };
    let (outcome, _) = drive(
        track(policy, "s1", t0, 1),
        t0,
        |i, path| match (i, path.ends_with("/session_status/")) {
            (_, true) => (session_status("s1", "completed", "", ""), LATENCY),
            (0 | 2 | 4, _) => (json(503, ""), LATENCY),
            (1 | 3, _) => (processing("s1"), LATENCY),
            _ => (completed("s1"), LATENCY),
        },
        None,
    );
    assert_eq!(outcome.outcome, OutcomeKind::Completed);
    assert_eq!(outcome.retries, 3);
}

#[test]
fn max_wait_times_out_with_what_was_last_seen() {
    let t0 = Instant::now();
    let policy = PollPolicy {
        max_wait: Duration::from_secs(60),
        ..PollPolicy::default()
    };
    let (outcome, sent) = drive(
        track(policy, "s1", t0, 9),
        t0,
        |_, _| (processing("s1"), LATENCY),
        None,
    );
    assert_eq!(outcome.outcome, OutcomeKind::TimedOut);
    assert!(outcome.error.is_none());
    assert_eq!(outcome.notified_by, NotifiedBy::Poll);
    assert_eq!(outcome.statements.len(), 1);
    assert_eq!(outcome.session_progress.unwrap().as_str(), "processing");
    assert!(sent.iter().all(|s| s.at < Duration::from_secs(60)));
    assert_eq!(outcome.elapsed_ms, 60_000);
    assert!(sent.len() >= 25 && sent.len() <= 30, "{} polls", sent.len());
}

#[test]
fn a_request_in_flight_at_max_wait_is_still_answered() {
    let t0 = Instant::now();
    let policy = PollPolicy {
        max_wait: Duration::from_secs(3),
        ..no_jitter()
    };
    let (outcome, sent) = drive(
        track(policy, "s1", t0, 1),
        t0,
        |i, _| {
            if i == 0 {
                (processing("s1"), LATENCY)
            } else {
                (processing("s1"), Duration::from_secs(5))
            }
        },
        None,
    );
    assert_eq!(sent.len(), 2);
    assert_eq!(outcome.outcome, OutcomeKind::TimedOut);
    assert_eq!(
        outcome.elapsed_ms, 7_000,
        "ended when the late answer came, one request past"
    );
}

#[test]
fn session_status_failures_keep_the_progress_verdict() {
    let t0 = Instant::now();
    let (outcome, sent) = drive(
        track(no_jitter(), "s1", t0, 1),
        t0,
        |i, _| match i {
            0 => (progress("s1", "completed", "failed"), LATENCY),
            1 => (json(503, ""), LATENCY),
            _ => (api_error(404, "SESSION_NOT_FOUND"), LATENCY),
        },
        None,
    );
    assert_eq!(sent.len(), 3);
    assert_eq!(outcome.outcome, OutcomeKind::CompletedWithFailures);
    assert!(outcome.accounts.is_empty());
    assert!(outcome
        .accounts_error
        .unwrap()
        .contains("SESSION_NOT_FOUND"));

    let (outcome, sent) = drive(
        track(no_jitter(), "s1", t0, 1),
        t0,
        |i, _| match i {
            0 => (completed("s1"), LATENCY),
            1 => (api_error(400, "PROCESSING_NOT_COMPLETED"), LATENCY),
            _ => (session_status("s1", "completed", "", ""), LATENCY),
        },
        None,
    );
    assert_eq!(sent.len(), 3);
    // Not-yet is asked again after a poll interval, not a backoff.
    assert_eq!(sent[2].at - sent[1].at, LATENCY + Duration::from_secs(2));
    assert_eq!(outcome.outcome, OutcomeKind::Completed);
    assert_eq!(outcome.accounts.len(), 1);
    assert!(outcome.accounts_error.is_none());
}

#[test]
fn accounts_fetch_can_be_turned_off() {
    let t0 = Instant::now();
    let policy = PollPolicy {
        fetch_accounts: false,
        ..no_jitter()
    };
    let (outcome, sent) = drive(
        track(policy, "s1", t0, 1),
        t0,
        |_, _| (completed("s1"), LATENCY),
        None,
    );
    assert_eq!(sent.len(), 1);
    assert_eq!(outcome.outcome, OutcomeKind::Completed);
}

#[test]
fn a_report_about_another_session_is_not_believed() {
    let t0 = Instant::now();
    let (outcome, _) = drive(
        track(no_jitter(), "s1", t0, 1),
        t0,
        |i, path| match (i, path.ends_with("/session_status/")) {
            (_, true) => (session_status("s1", "completed", "", ""), LATENCY),
            (0, _) => (completed("other"), LATENCY),
            _ => (processing("s1"), LATENCY),
        },
        None,
    );
    assert_eq!(outcome.outcome, OutcomeKind::TimedOut);
    assert!(outcome.retries >= 1);
}

#[test]
fn snapshot_and_resume_in_another_process() {
    let t0 = Instant::now();
    let mut session = track(no_jitter(), "s1", t0, 5);
    let mut now = t0;
    for _ in 0..2 {
        match session.poll_action(now) {
            bankconnect_core::Action::Send(_) => {
                now += LATENCY;
                session.handle_input(now, bankconnect_core::Input::Response(processing("s1")));
            }
            other => panic!("{other:?}"),
        }
        if let bankconnect_core::Action::WaitUntil(at) = session.poll_action(now) {
            now = at;
        }
    }
    let saved = serde_json::to_string(&session.snapshot(now).unwrap()).unwrap();
    let snapshot: SessionSnapshot = serde_json::from_str(&saved).unwrap();
    assert_eq!(snapshot.polls, 2);

    let t1 = Instant::now() + Duration::from_secs(1000);
    let resumed = TrackedSession::resume(api(), no_jitter(), snapshot, t1).unwrap();
    let (outcome, sent) = drive(
        resumed,
        t1,
        |_, path| {
            if path.ends_with("/session_status/") {
                (session_status("s1", "completed", "", ""), LATENCY)
            } else {
                (completed("s1"), LATENCY)
            }
        },
        None,
    );
    assert_eq!(sent[0].at, Duration::ZERO);
    assert_eq!(outcome.polls, 3);
    assert_eq!(
        outcome.elapsed_ms,
        (now - t0 + 2 * LATENCY).as_millis() as u64
    );
}

#[test]
fn invalid_policies_are_refused() {
    let policy = PollPolicy {
        interval: Duration::ZERO,
        ..PollPolicy::default()
    };
    assert!(TrackedSession::new(api(), policy, sid("s1"), Instant::now(), 1).is_err());
}

/// Answers progress with `processing` until `completed_from`, then `completed`; session_status
/// with the server's own (clean) verdict.
fn server(
    completed_from: usize,
) -> impl FnMut(usize, &str) -> (bankconnect_core::HttpResult, Duration) {
    move |i, path| {
        let result = if path.ends_with("/session_status/") {
            session_status("s1", "completed", "", "")
        } else if i < completed_from {
            processing("s1")
        } else {
            completed("s1")
        };
        (result, LATENCY)
    }
}

#[test]
fn an_unsigned_webhook_never_decides_the_accounts() {
    let t0 = Instant::now();
    // A forged INCOMPLETE_MONTHS for a clean session: the verdict comes from session_status.
    let forged = unsigned_hint(
        "s1",
        "failed",
        Some("INCOMPLETE_MONTHS"),
        Some("Incomplete months: Jan 2024"),
    );
    let (outcome, sent) = drive(
        track(no_jitter(), "s1", t0, 1),
        t0,
        server(1),
        Some((Duration::from_millis(500), forged)),
    );
    assert_eq!(outcome.outcome, OutcomeKind::Completed);
    assert_eq!(outcome.notified_by, NotifiedBy::Webhook);
    assert!(
        sent.last().unwrap().path.ends_with("/session_status/"),
        "accounts fetched from the API: {sent:?}"
    );
    assert!(outcome.accounts.iter().all(|a| !a.is_failed()));
}

#[test]
fn an_unsigned_webhook_on_a_session_still_processing_attaches_nothing() {
    let t0 = Instant::now();
    let policy = PollPolicy {
        max_wait: Duration::from_secs(10),
        ..no_jitter()
    };
    let forged = unsigned_hint("s1", "completed", None, None);
    let (outcome, _) = drive(
        track(policy, "s1", t0, 1),
        t0,
        server(usize::MAX),
        Some((Duration::from_millis(500), forged)),
    );
    assert_eq!(outcome.outcome, OutcomeKind::TimedOut);
    assert!(outcome.accounts.is_empty(), "{:?}", outcome.accounts);
}

#[test]
fn an_authenticated_webhook_on_a_session_still_processing_attaches_nothing_either() {
    let t0 = Instant::now();
    let policy = PollPolicy {
        max_wait: Duration::from_secs(10),
        ..no_jitter()
    };
    let (outcome, _) = drive(
        track(policy, "s1", t0, 1),
        t0,
        server(usize::MAX),
        Some((
            Duration::from_millis(500),
            hint("s1", "completed", None, None),
        )),
    );
    assert_eq!(outcome.outcome, OutcomeKind::TimedOut);
    assert!(outcome.accounts.is_empty());
}

#[test]
fn an_unsigned_webhook_during_session_status_does_not_end_it() {
    let t0 = Instant::now();
    let mut session = track(no_jitter(), "s1", t0, 1);
    let Action::Send(_) = session.poll_action(t0) else {
        panic!("first poll")
    };
    session.handle_input(t0 + LATENCY, Input::Response(completed("s1")));
    let Action::Send(request) = session.poll_action(t0 + LATENCY) else {
        panic!("session_status next")
    };
    assert!(request.uri().path().ends_with("/session_status/"));
    // A forged failure arrives while session_status is in flight: ignored.
    let forged = unsigned_hint("s1", "failed", Some("BALANCE_MISMATCH"), None);
    session.handle_input(t0 + LATENCY, Input::Webhook(forged));
    assert!(matches!(
        session.poll_action(t0 + LATENCY),
        Action::AwaitResponse
    ));
    session.handle_input(
        t0 + LATENCY * 2,
        Input::Response(session_status("s1", "completed", "", "")),
    );
    let Action::Done(outcome) = session.poll_action(t0 + LATENCY * 2) else {
        panic!("ends with the API's verdict")
    };
    assert_eq!(outcome.outcome, OutcomeKind::Completed);
}

#[test]
fn an_unsigned_webhook_the_poll_contradicts_earns_no_credit() {
    let (outcome, sent) = premature(unsigned_hint("s1", "completed", None, None));
    assert_eq!(outcome.outcome, OutcomeKind::Completed);
    // The confirming poll found it processing: the end was learnt by polling.
    assert_eq!(outcome.notified_by, NotifiedBy::Poll);
    assert_eq!(sent.len(), 5, "{sent:?}"); // + session_status, fetched as for any poll
}

/// Sends what is due at `now` (answering with `answer`), returning the requests' paths.
fn step(
    session: &mut TrackedSession,
    now: Instant,
    answer: &dyn Fn() -> bankconnect_core::HttpResult,
) -> Vec<String> {
    let mut paths = Vec::new();
    while let Action::Send(request) = session.poll_action(now) {
        paths.push(request.uri().path().to_owned());
        session.handle_input(now, Input::Response(answer()));
    }
    paths
}

#[test]
fn a_later_webhook_gets_its_own_confirmation_at_most_once_per_interval() {
    let t0 = Instant::now();
    let policy = PollPolicy {
        interval: Duration::from_secs(10),
        ..no_jitter()
    };
    let mut session = track(policy, "s1", t0, 1);
    let processing = || processing("s1");
    assert_eq!(step(&mut session, t0, &processing).len(), 1); // the first poll
                                                              // A forged webhook hastens one poll, which contradicts it.
    let forged = unsigned_hint("s1", "completed", None, None);
    session.handle_input(t0 + Duration::from_secs(2), Input::Webhook(forged.clone()));
    assert_eq!(
        step(&mut session, t0 + Duration::from_secs(2), &processing).len(),
        1
    );
    // Another within the interval hastens nothing (a flood cannot raise the poll rate).
    session.handle_input(t0 + Duration::from_secs(3), Input::Webhook(forged.clone()));
    assert!(step(&mut session, t0 + Duration::from_secs(4), &processing).is_empty());
    assert!(
        matches!(session.poll_action(t0 + Duration::from_secs(4)), Action::WaitUntil(at) if at == t0 + Duration::from_secs(12))
    );
    assert_eq!(
        step(&mut session, t0 + Duration::from_secs(12), &processing).len(),
        1
    );
    // A real one after the interval gets its own confirming poll at once, and the credit.
    let at = t0 + Duration::from_secs(13);
    session.handle_input(
        at,
        Input::Webhook(unsigned_hint("s1", "completed", None, None)),
    );
    let Action::Send(request) = session.poll_action(at) else {
        panic!("no confirming poll at once");
    };
    assert!(request.uri().path().ends_with("/progress/"));
    session.handle_input(at, Input::Response(completed("s1")));
    let Action::Send(request) = session.poll_action(at) else {
        panic!("no session_status");
    };
    assert!(
        request.uri().path().ends_with("/session_status/"),
        "{request:?}"
    );
    session.handle_input(
        at,
        Input::Response(session_status("s1", "completed", "", "")),
    );
    let Action::Done(outcome) = session.poll_action(at) else {
        panic!("not done");
    };
    assert_eq!(outcome.notified_by, NotifiedBy::Webhook);
}
