//! Properties of the session state machine over random response sequences, in virtual time.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, Instant};

use bankconnect_core::{HttpResult, OutcomeKind, PollPolicy};
use common::*;
use proptest::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    Processing,
    Completed,
    CompletedFailedStage,
    ServerError,
    RateLimited(u32),
    Timeout,
    Reset,
    Garbage,
    NotFound,
    Deleted,
    Denied,
    NotRequested,
    NotCompleted,
}

impl Reply {
    fn result(self) -> HttpResult {
        match self {
            Self::Processing => processing("s1"),
            Self::Completed => completed("s1"),
            Self::CompletedFailedStage => progress("s1", "completed", "failed"),
            Self::ServerError => json(503, "<html>unavailable</html>"),
            Self::RateLimited(secs) => status_with_retry_after(429, &secs.to_string()),
            Self::Timeout => timeout(),
            Self::Reset => Err(bankconnect_core::TransportError::new(
                bankconnect_core::TransportErrorKind::Reset,
                "reset",
            )),
            Self::Garbage => json(200, "{\"session_id\": 5"),
            Self::NotFound => api_error(404, "SESSION_NOT_FOUND"),
            Self::Deleted => api_error(410, "SESSION_DELETED"),
            Self::Denied => json(403, ""),
            Self::NotRequested => api_error(400, "PROCESSING_NOT_REQUESTED"),
            Self::NotCompleted => api_error(400, "PROCESSING_NOT_COMPLETED"),
        }
    }

    fn is_transient(self) -> bool {
        matches!(
            self,
            Self::ServerError | Self::RateLimited(_) | Self::Timeout | Self::Reset | Self::Garbage
        )
    }

    fn is_terminal(self) -> bool {
        matches!(self, Self::NotFound | Self::Deleted | Self::Denied)
    }
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        6 => Just(Reply::Processing),
        1 => Just(Reply::Completed),
        1 => Just(Reply::CompletedFailedStage),
        2 => Just(Reply::ServerError),
        1 => (0u32..200).prop_map(Reply::RateLimited),
        1 => Just(Reply::Timeout),
        1 => Just(Reply::Reset),
        1 => Just(Reply::Garbage),
        1 => Just(Reply::NotRequested),
        1 => Just(Reply::NotCompleted),
        1 => prop_oneof![Just(Reply::NotFound), Just(Reply::Deleted), Just(Reply::Denied)],
    ]
}

fn status_reply() -> impl Strategy<Value = u8> {
    0u8..4
}

#[derive(Debug, Clone)]
struct Case {
    policy: PollPolicy,
    replies: Vec<(Reply, u64)>,
    status_replies: Vec<u8>,
    webhook_at: Option<u64>,
    seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (
        (
            1u64..6,
            5u64..180,
            0u32..6,
            0u64..20,
            any::<bool>(),
            0.0f64..0.5,
        ),
        proptest::collection::vec((reply(), 1u64..8_000), 1..40),
        proptest::collection::vec(status_reply(), 1..6),
        proptest::option::of(0u64..200_000),
        any::<u64>(),
    )
        .prop_map(
            |(
                (interval, max_wait, budget, grace, fetch, jitter),
                replies,
                status_replies,
                webhook_at,
                seed,
            )| {
                let policy = PollPolicy {
                    interval: Duration::from_secs(interval),
                    interval_jitter: jitter,
                    max_wait: Duration::from_secs(max_wait),
                    retry_budget: budget,
                    not_requested_grace: Duration::from_secs(grace),
                    fetch_accounts: fetch,
                    ..PollPolicy::default()
                };
                Case {
                    policy,
                    replies,
                    status_replies,
                    webhook_at,
                    seed,
                }
            },
        )
}

/// Runs a case, returning the outcome, the requests sent and the reply given to each progress request.
fn run(case: &Case) -> (bankconnect_core::Outcome, Vec<Sent>, Vec<Reply>) {
    let t0 = Instant::now();
    let mut progress_replies = Vec::new();
    let mut status_index = 0usize;
    let mut progress_index = 0usize;
    let (outcome, sent) = drive(
        track(case.policy.clone(), "s1", t0, case.seed),
        t0,
        |_, path| {
            if path.ends_with("/session_status/") {
                let choice = case.status_replies[status_index % case.status_replies.len()];
                status_index += 1;
                let result = match choice {
                    0 => session_status("s1", "failed", "INCOMPLETE_MONTHS", "for Nov 2023"),
                    1 => json(503, ""),
                    2 => api_error(404, "SESSION_NOT_FOUND"),
                    _ => api_error(400, "PROCESSING_NOT_COMPLETED"),
                };
                (result, Duration::from_millis(50))
            } else {
                let (reply, latency) = case.replies[progress_index % case.replies.len()];
                progress_index += 1;
                progress_replies.push(reply);
                (reply.result(), Duration::from_millis(latency))
            }
        },
        case.webhook_at.map(|ms| {
            (
                Duration::from_millis(ms),
                hint("s1", "completed", None, None),
            )
        }),
    );
    (outcome, sent, progress_replies)
}

/// Cases per property: the default, or `PROPTEST_CASES` when set (`cargo xtask fuzz` raises it).
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(3000)))]

    #[test]
    fn session_rules_hold(case in case()) {
        let (outcome, sent, replies) = run(&case);
        let policy = &case.policy;
        let polls: Vec<&Sent> = sent.iter().filter(|s| s.is_progress()).collect();
        prop_assert_eq!(polls.len(), replies.len());
        prop_assert_eq!(outcome.polls as usize, polls.len());

        // Never polled faster than the interval, but for at most one webhook confirmation,
        // which still keeps the confirmation spacing.
        let mut early = 0;
        for pair in polls.windows(2) {
            let gap = pair[1].at - pair[0].at;
            prop_assert!(gap >= policy.confirm_spacing(), "gap {:?}", gap);
            if gap < policy.interval {
                early += 1;
            }
        }
        prop_assert!(early <= usize::from(case.webhook_at.is_some()), "{} early polls", early);

        // Nothing is sent at or after the max wait, and nothing runs past it by more than one request.
        for request in &sent {
            prop_assert!(request.at < policy.max_wait, "sent at {:?}", request.at);
        }
        let longest = Duration::from_millis(8_000);
        prop_assert!(Duration::from_millis(outcome.elapsed_ms) <= policy.max_wait + longest);

        // Terminal errors stop at once.
        for (i, reply) in replies.iter().enumerate() {
            if reply.is_terminal() {
                prop_assert_eq!(i, replies.len() - 1);
                prop_assert_eq!(outcome.outcome, OutcomeKind::ApiError);
            }
        }

        // Retries stop at the budget.
        let mut run_length = 0u32;
        for reply in &replies {
            run_length = if reply.is_transient() { run_length + 1 } else { 0 };
            prop_assert!(run_length <= policy.retry_budget + 1);
        }
        if outcome.outcome == OutcomeKind::TransportError {
            // Either the budget ran out, or the max wait passed with nothing but failures.
            let exhausted = run_length == policy.retry_budget + 1;
            let never_answered = !replies.iter().any(|r| {
                matches!(r, Reply::Processing | Reply::Completed | Reply::CompletedFailedStage)
            }) && replies.last().is_some_and(|r| r.is_transient())
                && Duration::from_millis(outcome.elapsed_ms) >= policy.max_wait;
            prop_assert!(exhausted || never_answered, "{:?}", outcome);
        }

        // Completion is reported only when progress said so.
        if outcome.outcome.is_completed() {
            prop_assert!(matches!(replies.last(), Some(Reply::Completed | Reply::CompletedFailedStage)));
        }
        if replies.last() == Some(&Reply::CompletedFailedStage) && outcome.outcome.is_completed() {
            prop_assert_eq!(outcome.outcome, OutcomeKind::CompletedWithFailures);
        }
    }

    #[test]
    fn same_seed_same_schedule(case in case()) {
        let (first, sent_first, _) = run(&case);
        let (second, sent_second, _) = run(&case);
        prop_assert_eq!(first, second);
        prop_assert_eq!(sent_first, sent_second);
    }
}
