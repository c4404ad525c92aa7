//! The many-session scheduler in virtual time: caps, rate limits, 429 slow-down, deadlines,
//! webhooks, removal and resumption, and properties over random workloads.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use bankconnect_core::{
    HttpResult, NotifiedBy, Outcome, OutcomeKind, PollPolicy, RateLimit, RequestKind,
    RequestTicket, Scheduler, SchedulerConfig, WebhookDisposition,
};
use common::*;
use proptest::prelude::*;

type Responder<'a> = dyn FnMut(&str, RequestKind, u32, Duration) -> (HttpResult, Duration) + 'a;

struct Run {
    outcomes: BTreeMap<String, Outcome>,
    sends: HashMap<String, Vec<Duration>>,
    max_in_flight_seen: usize,
    all_sends: Vec<Duration>,
}

/// Drives a scheduler in virtual time until every session has ended.
fn drive(
    scheduler: &mut Scheduler,
    t0: Instant,
    respond: &mut Responder<'_>,
    mut webhooks: Vec<(Duration, bankconnect_core::WebhookHint)>,
) -> Run {
    let mut now = t0;
    let mut pending: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut parked: HashMap<u64, (RequestTicket, HttpResult)> = HashMap::new();
    let mut next_id = 0u64;
    let mut counts: HashMap<(String, RequestKind), u32> = HashMap::new();
    let mut run = Run {
        outcomes: BTreeMap::new(),
        sends: HashMap::new(),
        max_in_flight_seen: 0,
        all_sends: Vec::new(),
    };
    webhooks.sort_by_key(|(at, _)| Reverse(*at));
    for _ in 0..10_000_000 {
        while let Some(scheduled) = scheduler.poll_request(now) {
            let id = scheduled.ticket.session_id().as_str().to_owned();
            let kind = scheduled.ticket.kind();
            let count = counts.entry((id.clone(), kind)).or_default();
            *count += 1;
            if kind == RequestKind::Progress {
                run.sends.entry(id.clone()).or_default().push(now - t0);
            }
            run.all_sends.push(now - t0);
            let (result, latency) = respond(&id, kind, *count, now - t0);
            pending.push(Reverse((now + latency, next_id)));
            parked.insert(next_id, (scheduled.ticket, result));
            next_id += 1;
            run.max_in_flight_seen = run.max_in_flight_seen.max(scheduler.in_flight());
        }
        while let Some(outcome) = scheduler.poll_outcome() {
            let previous = run.outcomes.insert(outcome.session_id.to_string(), outcome);
            assert!(previous.is_none(), "two outcomes for one session");
        }
        if scheduler.is_empty() && pending.is_empty() {
            return run;
        }
        let candidates = [
            scheduler.poll_timeout(now),
            pending.peek().map(|Reverse((at, _))| *at),
            webhooks.last().map(|(at, _)| t0 + *at),
        ];
        let next = candidates
            .into_iter()
            .flatten()
            .min()
            .expect("nothing left to wait for");
        now = now.max(next);
        while let Some(&Reverse((at, id))) = pending.peek() {
            if at > now {
                break;
            }
            pending.pop();
            let (ticket, result) = parked.remove(&id).unwrap();
            scheduler.handle_response(now, ticket, result);
        }
        while webhooks.last().is_some_and(|(at, _)| t0 + *at <= now) {
            let (_, hint) = webhooks.pop().unwrap();
            let _ = scheduler.handle_webhook(now, hint);
        }
    }
    panic!("livelock");
}

fn scheduler(policy: PollPolicy, config: SchedulerConfig) -> Scheduler {
    Scheduler::new(api(), policy, config, 42).unwrap()
}

fn add_sessions(scheduler: &mut Scheduler, t0: Instant, n: usize) {
    for i in 0..n {
        scheduler.add(t0, sid(&format!("s{i}"))).unwrap();
    }
}

/// Completes each session after `polls` progress requests; session_status answers with a completed account.
fn completes_after(
    polls: u32,
) -> impl FnMut(&str, RequestKind, u32, Duration) -> (HttpResult, Duration) {
    move |id, kind, count, _| match kind {
        RequestKind::SessionStatus => (session_status(id, "completed", "", ""), LATENCY),
        _ if count >= polls => (completed(id), LATENCY),
        _ => (processing(id), LATENCY),
    }
}

#[test]
fn a_thousand_sessions_complete_within_the_caps() {
    let t0 = Instant::now();
    let config = SchedulerConfig {
        max_in_flight: 16,
        ..SchedulerConfig::default()
    };
    let mut scheduler = scheduler(PollPolicy::default(), config);
    add_sessions(&mut scheduler, t0, 1000);
    let run = drive(&mut scheduler, t0, &mut completes_after(3), Vec::new());
    assert_eq!(run.outcomes.len(), 1000);
    assert!(run
        .outcomes
        .values()
        .all(|o| o.outcome == OutcomeKind::Completed && o.polls == 3));
    assert!(run.max_in_flight_seen <= 16);
    for sends in run.sends.values() {
        for pair in sends.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_secs(2));
        }
    }
    assert!(scheduler.is_empty());
    assert_eq!(scheduler.in_flight(), 0);
}

#[test]
fn global_rate_limit_bounds_requests() {
    let t0 = Instant::now();
    let config = SchedulerConfig {
        rate_limit: Some(RateLimit {
            per_second: 20.0,
            burst: 5,
        }),
        ..SchedulerConfig::default()
    };
    let mut scheduler = scheduler(PollPolicy::default(), config);
    add_sessions(&mut scheduler, t0, 200);
    let run = drive(&mut scheduler, t0, &mut completes_after(2), Vec::new());
    assert_eq!(run.outcomes.len(), 200);
    // In any window of length w, at most burst + rate·w requests.
    let sends = &run.all_sends;
    for (i, start) in sends.iter().enumerate() {
        for window in [Duration::from_millis(500), Duration::from_secs(2)] {
            let inside = sends[i..]
                .iter()
                .take_while(|t| **t < *start + window)
                .count();
            assert!(
                inside as f64 <= 5.0 + 20.0 * window.as_secs_f64() + 1e-9,
                "{inside} requests in {window:?} from {start:?}"
            );
        }
    }
}

#[test]
fn a_429_slows_the_whole_client_and_it_recovers() {
    let t0 = Instant::now();
    let mut scheduler = scheduler(PollPolicy::default(), SchedulerConfig::default());
    add_sessions(&mut scheduler, t0, 100);
    let mut first_429_done = false;
    let mut respond = |id: &str, kind: RequestKind, count: u32, at: Duration| {
        if !first_429_done && at >= Duration::from_secs(4) {
            first_429_done = true;
            return (status_with_retry_after(429, "10"), LATENCY);
        }
        completes_after(4)(id, kind, count, at)
    };
    let run = drive(&mut scheduler, t0, &mut respond, Vec::new());
    assert_eq!(run.outcomes.len(), 100);
    let pause_start = run
        .all_sends
        .iter()
        .find(|t| **t >= Duration::from_secs(4))
        .copied()
        .unwrap();
    let answered = pause_start + LATENCY;
    // Requests already in flight may still go out before the 429 is answered; then the whole
    // client pauses (1 s for an isolated 429: the backoff's first ceiling, below the 10 s asked).
    assert!(
        !run.all_sends
            .iter()
            .any(|t| *t > answered && *t < answered + Duration::from_secs(1)),
        "requests went out during the pause"
    );
    // The session that got the 429 itself waits the whole 10 s it was asked to.
    let limited = run
        .sends
        .values()
        .find(|sends| sends.contains(&pause_start))
        .unwrap();
    let next = limited.iter().find(|t| **t > pause_start).unwrap();
    assert!(
        *next >= answered + Duration::from_secs(10),
        "retried after {next:?}"
    );
}

#[test]
fn max_wait_fires_even_while_the_cap_holds_requests_back() {
    let t0 = Instant::now();
    let policy = PollPolicy {
        max_wait: Duration::from_secs(5),
        ..PollPolicy::default()
    };
    let config = SchedulerConfig {
        max_in_flight: 1,
        adaptive_rate_limiting: false,
        ..SchedulerConfig::default()
    };
    let mut scheduler = scheduler(policy, config);
    add_sessions(&mut scheduler, t0, 2);
    // The first request hangs for 60 s (a transport timeout would end it); the other session
    // never gets to send, and still times out at its max wait.
    let run = drive(
        &mut scheduler,
        t0,
        &mut |id, _, _, _| (processing(id), Duration::from_secs(60)),
        Vec::new(),
    );
    let waiting = run.outcomes.values().find(|o| o.polls == 0).unwrap();
    assert_eq!(waiting.outcome, OutcomeKind::TimedOut);
    assert_eq!(waiting.elapsed_ms, 5_000);
    let hung = run.outcomes.values().find(|o| o.polls == 1).unwrap();
    assert_eq!(hung.outcome, OutcomeKind::TimedOut);
    assert_eq!(hung.elapsed_ms, 60_000);
}

#[test]
fn webhooks_end_tracked_sessions_and_untracked_ones_are_reported() {
    let t0 = Instant::now();
    let policy = PollPolicy {
        interval: Duration::from_secs(60),
        ..PollPolicy::default()
    };
    let mut scheduler = scheduler(policy, SchedulerConfig::default());
    add_sessions(&mut scheduler, t0, 3);
    let untracked = scheduler.handle_webhook(t0, hint("nobody", "completed", None, None));
    assert!(
        matches!(untracked, WebhookDisposition::Untracked(h) if h.session_id.as_str() == "nobody")
    );
    let mut respond = |id: &str, _: RequestKind, count: u32, _: Duration| {
        (
            if count == 1 {
                processing(id)
            } else {
                completed(id)
            },
            LATENCY,
        )
    };
    let webhooks = (0..3)
        .map(|i| {
            (
                Duration::from_secs(3 + i),
                hint(&format!("s{i}"), "completed", None, None),
            )
        })
        .collect();
    let run = drive(&mut scheduler, t0, &mut respond, webhooks);
    for (i, outcome) in run.outcomes.values().enumerate() {
        assert_eq!(outcome.notified_by, NotifiedBy::Webhook);
        assert_eq!(outcome.polls, 2);
        assert_eq!(outcome.elapsed_ms, (3 + i as u64) * 1000 + 80);
    }
}

#[test]
fn sessions_can_be_added_removed_and_resumed() {
    let t0 = Instant::now();
    let mut first = scheduler(PollPolicy::default(), SchedulerConfig::default());
    add_sessions(&mut first, t0, 3);
    assert!(matches!(
        first.add(t0, sid("s1")),
        Err(bankconnect_core::TrackError::Duplicate(_))
    ));
    let scheduled = first.poll_request(t0).unwrap();
    let saved: Vec<String> = first
        .snapshot_all(t0)
        .iter()
        .map(|s| serde_json::to_string(s).unwrap())
        .collect();
    assert_eq!(saved.len(), 3);
    assert!(first.remove(t0, &sid("s2")).is_some());
    assert!(!first.contains(&sid("s2")));
    assert_eq!(first.len(), 2);
    // A late answer for a removed session is ignored but frees its in-flight slot.
    first.handle_response(t0, scheduled.ticket, processing("s0"));
    assert_eq!(first.in_flight(), 0);

    let t1 = t0 + Duration::from_secs(100);
    let mut second = scheduler(PollPolicy::default(), SchedulerConfig::default());
    for text in saved {
        second
            .resume(t1, serde_json::from_str(&text).unwrap())
            .unwrap();
    }
    let run = drive(&mut second, t1, &mut completes_after(1), Vec::new());
    assert_eq!(run.outcomes.len(), 3);
    assert!(run
        .outcomes
        .values()
        .all(|o| o.outcome == OutcomeKind::Completed));
}

/// Cases per property: the default, or `PROPTEST_CASES` when set (`cargo xtask fuzz` raises it).
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(1000)))]

    #[test]
    fn every_session_ends_within_the_rules(
        sessions in 1usize..40,
        cap in 1usize..8,
        polls_needed in proptest::collection::vec(1u32..6, 1..10),
        fault_every in 2u32..7,
        latency_ms in 1u64..3000,
        seed in any::<u64>(),
    ) {
        let t0 = Instant::now();
        let policy = PollPolicy { max_wait: Duration::from_secs(120), ..PollPolicy::default() };
        let config = SchedulerConfig { max_in_flight: cap, ..SchedulerConfig::default() };
        let mut scheduler = Scheduler::new(api(), policy.clone(), config, seed).unwrap();
        add_sessions(&mut scheduler, t0, sessions);
        let mut served = 0u32;
        let mut respond = |id: &str, kind: RequestKind, count: u32, _: Duration| {
            served += 1;
            let latency = Duration::from_millis(latency_ms);
            if served.is_multiple_of(fault_every) {
                return (if served.is_multiple_of(3) { status_with_retry_after(429, "1") } else { json(502, "") }, latency);
            }
            let index: usize = id[1..].parse().unwrap();
            let needed = polls_needed[index % polls_needed.len()];
            match kind {
                RequestKind::SessionStatus => (session_status(id, "completed", "", ""), latency),
                _ if count >= needed => (completed(id), latency),
                _ => (processing(id), latency),
            }
        };
        let run = drive(&mut scheduler, t0, &mut respond, Vec::new());
        prop_assert_eq!(run.outcomes.len(), sessions);
        prop_assert!(run.max_in_flight_seen <= cap);
        for sends in run.sends.values() {
            for pair in sends.windows(2) {
                prop_assert!(pair[1] - pair[0] >= policy.interval);
            }
            prop_assert!(sends.iter().all(|t| *t < policy.max_wait));
        }
        for outcome in run.outcomes.values() {
            prop_assert!(Duration::from_millis(outcome.elapsed_ms) <= policy.max_wait + Duration::from_millis(latency_ms));
        }
        prop_assert_eq!(scheduler.in_flight(), 0);
    }
}
