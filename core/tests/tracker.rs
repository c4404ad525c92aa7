//! The core tracker's bookkeeping in virtual time: tickets, cancellation, pending webhooks,
//! snapshots, and a livelock check (time must move whenever the tracker says wait).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use bankconnect_core::SchedulerConfig;
use bankconnect_core::{
    Answer, ClientSettings, HttpResult, NotifiedBy, Outcome, OutcomeKind, Output, PendingLimits,
    PollPolicy, RateLimit, RequestId, RequestKind, SnapshotError, Tracker, TrackerEvent,
    TrackerSnapshot, WebhookHint,
};
use common::*;
use proptest::prelude::*;

fn settings(policy: PollPolicy, limits: SchedulerConfig) -> ClientSettings {
    ClientSettings::new(api(), 7)
        .with_policy(policy)
        .with_limits(limits)
}

fn fast() -> PollPolicy {
    PollPolicy {
        interval: Duration::from_millis(100),
        interval_jitter: 0.0,
        webhook_confirm_spacing: Duration::from_millis(10),
        max_wait: Duration::from_secs(60),
        ..PollPolicy::default()
    }
}

/// A virtual-time world: the tracker, requests in flight ordered by answer time, and webhooks
/// due at set times. `answer(session, kind_path, nth request for that session)` decides.
struct World<F> {
    tracker: Tracker,
    now: Instant,
    t0: Instant,
    latency: Duration,
    in_flight: BTreeMap<(Instant, u64), (RequestId, HttpResult)>,
    webhooks: Vec<(Instant, WebhookHint)>,
    answer: F,
    counts: std::collections::HashMap<String, usize>,
    outcomes: Vec<Outcome>,
    sent: Vec<(Duration, String)>,
    steps: u64,
}

impl<F: FnMut(&str, &str, usize) -> HttpResult> World<F> {
    fn new(tracker: Tracker, t0: Instant, answer: F) -> Self {
        Self {
            tracker,
            now: t0,
            t0,
            latency: Duration::from_millis(20),
            in_flight: BTreeMap::new(),
            webhooks: Vec::new(),
            answer,
            counts: Default::default(),
            outcomes: Vec::new(),
            sent: Vec::new(),
            steps: 0,
        }
    }

    /// Runs until the tracker is idle (or `until`), checking that every wait moves time on.
    fn run(&mut self, until: Option<Instant>) {
        let mut polls_at_this_instant = 0u32;
        loop {
            self.steps += 1;
            assert!(self.steps < 1_000_000, "no end in sight");
            match self.tracker.poll_output(self.now) {
                Output::Send(transmit) => {
                    polls_at_this_instant += 1;
                    assert!(polls_at_this_instant < 100_000, "livelock at one instant");
                    let session = transmit.session_id.as_str().to_owned();
                    let path = transmit.request.uri().path().to_owned();
                    self.sent.push((self.now - self.t0, path.clone()));
                    let n = self.counts.entry(session.clone()).or_default();
                    let result = (self.answer)(&session, &path, *n);
                    *n += 1;
                    let seq = self.steps;
                    self.in_flight
                        .insert((self.now + self.latency, seq), (transmit.id, result));
                }
                Output::Event(TrackerEvent::Outcome(outcome)) => self.outcomes.push(outcome),
                Output::Event(_) => {}
                Output::Idle if self.webhooks.is_empty() => return,
                wait => {
                    let wake = match wait {
                        Output::WaitUntil(at) => {
                            assert!(at >= self.now, "WaitUntil in the past");
                            Some(at)
                        }
                        _ => None,
                    };
                    let next_answer = self.in_flight.keys().next().map(|(at, _)| *at);
                    let next_webhook = self.webhooks.iter().map(|(at, _)| *at).min();
                    let next = [wake, next_answer, next_webhook]
                        .into_iter()
                        .flatten()
                        .min();
                    let Some(next) = next else {
                        assert!(
                            self.tracker.in_flight() == 0,
                            "waiting for input with requests in flight that never come back"
                        );
                        return;
                    };
                    if until.is_some_and(|u| next > u) {
                        self.now = until.unwrap().max(self.now);
                        return;
                    }
                    if next > self.now {
                        polls_at_this_instant = 0;
                    } else {
                        polls_at_this_instant += 1;
                        assert!(
                            polls_at_this_instant < 100_000,
                            "livelock: time does not move"
                        );
                    }
                    self.now = next.max(self.now);
                    while let Some(entry) = self.in_flight.first_entry() {
                        if entry.key().0 > self.now {
                            break;
                        }
                        let (id, result) = entry.remove();
                        self.tracker.handle_response(self.now, id, result);
                    }
                    let now = self.now;
                    let (due, later): (Vec<_>, Vec<_>) =
                        self.webhooks.drain(..).partition(|(at, _)| *at <= now);
                    self.webhooks = later;
                    for (_, hint) in due {
                        self.tracker.handle_webhook(now, hint);
                    }
                }
            }
        }
    }
}

/// Completes on the `done_at`-th progress request of each session; clean session_status.
fn completing(done_at: usize) -> impl FnMut(&str, &str, usize) -> HttpResult {
    move |session, path, n| {
        if path.ends_with("/session_status/") {
            session_status(session, "completed", "", "")
        } else if n + 1 >= done_at {
            completed(session)
        } else {
            processing(session)
        }
    }
}

#[test]
fn every_session_ends_once_and_the_tracker_goes_idle() {
    let t0 = Instant::now();
    let limits = SchedulerConfig {
        max_in_flight: 4,
        ..SchedulerConfig::default()
    };
    let mut tracker = Tracker::new(&settings(fast(), limits)).unwrap();
    for i in 0..50 {
        tracker.add(t0, sid(&format!("s{i}"))).unwrap();
    }
    let mut world = World::new(tracker, t0, completing(3));
    world.run(None);
    assert_eq!(world.outcomes.len(), 50);
    let mut ids: Vec<_> = world
        .outcomes
        .iter()
        .map(|o| o.session_id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50, "each session ends exactly once");
    assert!(world
        .outcomes
        .iter()
        .all(|o| o.outcome == OutcomeKind::Completed));
    assert_eq!(world.tracker.in_flight(), 0);
    assert!(world.tracker.is_empty());
    assert!(matches!(world.tracker.poll_output(world.now), Output::Idle));
}

#[test]
fn unknown_and_repeated_request_ids_are_ignored() {
    let t0 = Instant::now();
    let mut tracker = Tracker::new(&settings(fast(), SchedulerConfig::default())).unwrap();
    tracker.add(t0, sid("s1")).unwrap();
    let Output::Send(transmit) = tracker.poll_output(t0) else {
        panic!("first poll at once")
    };
    assert_eq!(tracker.in_flight(), 1);
    tracker.handle_response(t0, transmit.id, processing("s1"));
    assert_eq!(tracker.in_flight(), 0);
    // The same id again, as a completed answer: ignored, so the session keeps polling.
    tracker.handle_response(t0, transmit.id, completed("s1"));
    assert!(
        matches!(tracker.poll_output(t0), Output::WaitUntil(at) if at == t0 + Duration::from_millis(100))
    );
    assert_eq!(tracker.len(), 1);
}

#[test]
fn answers_classified_off_the_tracker_count_as_responses_and_a_mix_up_is_retried() {
    let t0 = Instant::now();
    let mut tracker = Tracker::new(&settings(fast(), SchedulerConfig::default())).unwrap();
    tracker.add(t0, sid("s1")).unwrap();
    let Output::Send(transmit) = tracker.poll_output(t0) else {
        panic!("first poll at once")
    };
    assert_eq!(transmit.kind, RequestKind::Progress);
    // Classified for the wrong kind of request: a failed request, retried (not stuck in flight).
    let wrong = Answer::classify(RequestKind::SessionStatus, completed("s1"));
    tracker.handle_answer(t0, transmit.id, wrong);
    assert_eq!(tracker.in_flight(), 0);
    assert_eq!(tracker.len(), 1);
    let mut now = t0;
    let mut outcome = None;
    for _ in 0..100 {
        match tracker.poll_output(now) {
            Output::Send(transmit) => {
                let result = if transmit.kind == RequestKind::Progress {
                    completed("s1")
                } else {
                    session_status("s1", "completed", "", "")
                };
                let answer = Answer::classify(transmit.kind, result);
                tracker.handle_answer(now, transmit.id, answer);
            }
            Output::WaitUntil(at) => now = at,
            Output::Event(TrackerEvent::Outcome(done)) => outcome = Some(done),
            Output::Idle => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    let outcome = outcome.expect("the session ends");
    assert_eq!(outcome.outcome, OutcomeKind::Completed);
    assert!(now > t0, "the mix-up was retried after a delay");
}

#[test]
fn a_removed_session_reports_nothing_even_when_its_answer_comes_back() {
    let t0 = Instant::now();
    let mut tracker = Tracker::new(&settings(fast(), SchedulerConfig::default())).unwrap();
    tracker.add(t0, sid("gone")).unwrap();
    tracker.add(t0, sid("kept")).unwrap();
    let mut transmits = Vec::new();
    while let Output::Send(t) = tracker.poll_output(t0) {
        transmits.push(t);
    }
    assert_eq!(transmits.len(), 2);
    let snapshot = tracker.remove(t0, &sid("gone")).expect("resumable state");
    assert_eq!(snapshot.session_id, sid("gone"));
    assert!(!tracker.contains(&sid("gone")));
    for t in transmits {
        let answer = completed(t.session_id.as_str());
        tracker.handle_response(t0 + MS, t.id, answer);
    }
    let mut world = World::new(tracker, t0 + MS, completing(1));
    world.run(None);
    let ended: Vec<_> = world
        .outcomes
        .iter()
        .map(|o| o.session_id.as_str())
        .collect();
    assert_eq!(ended, ["kept"]);
    assert_eq!(world.tracker.in_flight(), 0);
}

#[test]
fn a_webhook_before_its_session_is_applied_when_the_session_is_added() {
    let t0 = Instant::now();
    let policy = PollPolicy {
        interval: Duration::from_secs(30),
        ..fast()
    };
    let mut tracker = Tracker::new(&settings(policy, SchedulerConfig::default())).unwrap();
    tracker.handle_webhook(t0, hint("early", "failed", Some("BALANCE_MISMATCH"), None));
    assert_eq!(tracker.pending_webhooks().held, 1);
    tracker
        .add(t0 + Duration::from_secs(5), sid("early"))
        .unwrap();
    assert_eq!(tracker.pending_webhooks().held, 0);
    assert_eq!(tracker.pending_webhooks().applied, 1);
    let mut world = World::new(tracker, t0 + Duration::from_secs(5), completing(1));
    world.run(None);
    let outcome = &world.outcomes[0];
    assert_eq!(outcome.notified_by, NotifiedBy::Webhook);
    assert_eq!(outcome.outcome, OutcomeKind::CompletedWithFailures);
    assert_eq!(
        world.sent.len(),
        1,
        "the authenticated webhook's accounts: no session_status"
    );
}

#[test]
fn kept_webhooks_are_bounded_by_count_and_age_and_counted() {
    let t0 = Instant::now();
    let settings = settings(fast(), SchedulerConfig::default())
        .with_pending_limits(PendingLimits::new(2, Duration::from_secs(60)));
    let mut tracker = Tracker::new(&settings).unwrap();
    for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
        tracker.handle_webhook(t0 + MS * i as u32, WebhookHint::unauthenticated(sid(id)));
    }
    // The same session again does not count twice.
    tracker.handle_webhook(t0 + MS * 3, WebhookHint::unauthenticated(sid("c")));
    let stats = tracker.pending_webhooks();
    assert_eq!((stats.held, stats.dropped), (2, 1));
    tracker.add(t0 + MS * 4, sid("a")).unwrap();
    assert_eq!(tracker.pending_webhooks().applied, 0, "the oldest fell out");
    tracker.add(t0 + MS * 5, sid("b")).unwrap();
    assert_eq!(tracker.pending_webhooks().applied, 1);
    // "c" is older than the age bound by the time its session comes.
    tracker.add(t0 + Duration::from_secs(61), sid("c")).unwrap();
    let stats = tracker.pending_webhooks();
    assert_eq!((stats.held, stats.applied, stats.expired), (0, 1, 1));
}

#[test]
fn a_flood_of_webhooks_for_one_session_keeps_memory_flat() {
    let t0 = Instant::now();
    let mut tracker = Tracker::new(&settings(fast(), SchedulerConfig::default())).unwrap();
    for i in 0..100_000u32 {
        tracker.handle_webhook(t0 + MS * i, WebhookHint::unauthenticated(sid("x")));
    }
    assert_eq!(tracker.pending_webhooks().held, 1);
    let snapshot = tracker.snapshot(t0 + MS * 100_000, SystemTime::now());
    assert_eq!(snapshot.pending_webhooks.len(), 1);
}

#[test]
fn an_unsigned_webhook_does_not_replace_a_signed_one_while_kept() {
    let t0 = Instant::now();
    let mut tracker = Tracker::new(&settings(fast(), SchedulerConfig::default())).unwrap();
    tracker.handle_webhook(t0, hint("s1", "completed", None, None));
    tracker.handle_webhook(
        t0 + MS,
        unsigned_hint("s1", "failed", Some("BALANCE_MISMATCH"), None),
    );
    tracker.add(t0 + MS * 2, sid("s1")).unwrap();
    let mut world = World::new(tracker, t0 + MS * 2, completing(1));
    world.run(None);
    assert_eq!(world.outcomes[0].outcome, OutcomeKind::Completed);
    assert_eq!(world.sent.len(), 1);
}

#[test]
fn snapshot_resume_counts_the_time_stopped_toward_max_wait() {
    let t0 = Instant::now();
    let wall0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let policy = PollPolicy {
        max_wait: Duration::from_secs(100),
        ..fast()
    };
    let settings = settings(policy, SchedulerConfig::default());
    let mut tracker = Tracker::new(&settings).unwrap();
    tracker.add(t0, sid("short")).unwrap();
    tracker.handle_webhook(t0, WebhookHint::unauthenticated(sid("later")));
    let mut world = World::new(tracker, t0, completing(usize::MAX));
    world.run(Some(t0 + Duration::from_secs(10)));
    let at = world.now;
    let snapshot = world.tracker.snapshot(at, wall0);
    assert_eq!(snapshot.sessions.len(), 1);
    let bytes = snapshot.to_json().unwrap();
    let read = TrackerSnapshot::from_json(&bytes).unwrap();
    assert_eq!(read, snapshot);

    // Back 30 s later (wall clock) in a new process whose Instant starts afresh.
    let t1 = Instant::now() + Duration::from_secs(1000);
    let resumed =
        Tracker::resume_from(&settings, read.clone(), t1, wall0 + Duration::from_secs(30)).unwrap();
    let mut world = World::new(resumed, t1, completing(usize::MAX));
    world.run(None);
    let outcome = &world.outcomes[0];
    assert_eq!(outcome.outcome, OutcomeKind::TimedOut);
    // 10 s before, 30 s stopped: the 100 s max wait ends 60 s after resuming.
    let waited = world.now - t1;
    assert!(
        waited >= Duration::from_secs(60) && waited < Duration::from_secs(61),
        "{waited:?}"
    );
    assert!(outcome.elapsed_ms >= 100_000 && outcome.elapsed_ms < 101_000);

    // Stopped longer than the max wait: it ends at once on resume.
    let resumed =
        Tracker::resume_from(&settings, read, t1, wall0 + Duration::from_secs(500)).unwrap();
    let mut world = World::new(resumed, t1, completing(usize::MAX));
    world.run(None);
    assert_eq!(world.outcomes[0].outcome, OutcomeKind::TimedOut);
    assert!(world.sent.is_empty());
    assert_eq!(world.now, t1);
}

#[test]
fn kept_webhooks_survive_a_snapshot_and_age_while_stopped() {
    let t0 = Instant::now();
    let wall0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let settings = settings(fast(), SchedulerConfig::default())
        .with_pending_limits(PendingLimits::new(10, Duration::from_secs(60)));
    let mut tracker = Tracker::new(&settings).unwrap();
    tracker.handle_webhook(t0, hint("w", "completed", None, None));
    let snapshot = tracker.snapshot(t0 + Duration::from_secs(10), wall0);
    let t1 = Instant::now();
    let resumed = Tracker::resume_from(
        &settings,
        snapshot.clone(),
        t1,
        wall0 + Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(resumed.pending_webhooks().held, 1);
    let resumed =
        Tracker::resume_from(&settings, snapshot, t1, wall0 + Duration::from_secs(60)).unwrap();
    let stats = resumed.pending_webhooks();
    assert_eq!((stats.held, stats.expired), (0, 1));
}

#[test]
fn snapshots_from_a_newer_version_are_refused_clearly() {
    let newer = br#"{"version": 2, "taken_at_unix_ms": 0, "sessions": [], "future_field": 1}"#;
    let err = TrackerSnapshot::from_json(newer).unwrap_err();
    assert!(matches!(
        err,
        SnapshotError::Newer {
            found: 2,
            supported: 1
        }
    ));
    assert!(err.to_string().contains("newer"), "{err}");
    let unknown = br#"{"version": 0, "taken_at_unix_ms": 0, "sessions": []}"#;
    assert!(matches!(
        TrackerSnapshot::from_json(unknown),
        Err(SnapshotError::Unsupported(0))
    ));
    assert!(matches!(
        TrackerSnapshot::from_json(b"[1,2"),
        Err(SnapshotError::Malformed(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever the caps, rate limit, latency and answers, every session ends exactly once,
    /// time moves on whenever the tracker waits, and nothing stays in flight.
    #[test]
    fn every_session_ends_under_any_limits(
        sessions in 1usize..40,
        max_in_flight in 1usize..6,
        rate in proptest::option::of(1u32..50),
        latency_ms in 1u64..300,
        done_at in 1usize..5,
        faults in proptest::collection::vec(0u8..4, 0..20),
        webhooks in proptest::collection::vec((0usize..60, 0u64..2000), 0..20),
    ) {
        let t0 = Instant::now();
        let limits = SchedulerConfig {
            max_in_flight,
            rate_limit: rate.map(|r| RateLimit { per_second: f64::from(r), burst: 2 }),
            progress_updates: true,
            ..SchedulerConfig::default()
        };
        let policy = PollPolicy { max_wait: Duration::from_secs(30), ..fast() };
        let mut tracker = Tracker::new(&settings(policy, limits)).unwrap();
        for i in 0..sessions {
            tracker.add(t0, sid(&format!("s{i}"))).unwrap();
        }
        let mut answers = completing(done_at);
        let mut k = 0usize;
        let mut world = World::new(tracker, t0, move |session: &str, path: &str, n: usize| {
            k += 1;
            match faults.get(k % 23).copied() {
                Some(1) => timeout(),
                Some(2) => status_with_retry_after(429, "1"),
                Some(3) => json(503, "down"),
                _ => answers(session, path, n),
            }
        });
        world.latency = Duration::from_millis(latency_ms);
        world.webhooks = webhooks
            .into_iter()
            .map(|(i, at)| (t0 + Duration::from_millis(at), WebhookHint::unauthenticated(sid(&format!("s{i}")))))
            .collect();
        world.run(None);
        let mut ids: Vec<_> = world.outcomes.iter().map(|o| o.session_id.clone()).collect();
        ids.sort();
        let total = ids.len();
        ids.dedup();
        prop_assert_eq!(total, sessions);
        prop_assert_eq!(ids.len(), sessions);
        prop_assert_eq!(world.tracker.in_flight(), 0);
    }
}

#[test]
fn a_session_added_earlier_counts_its_wait_and_may_have_its_own_max_wait() {
    let t0 = Instant::now();
    let policy = PollPolicy {
        max_wait: Duration::from_secs(100),
        ..fast()
    };
    let mut tracker = Tracker::new(&settings(policy, SchedulerConfig::default())).unwrap();
    // Added 90 s ago (before a restart): 10 s left of the policy's 100 s.
    tracker
        .add_started(t0, sid("old"), Duration::from_secs(90), None)
        .unwrap();
    // Its own 5 s max wait.
    tracker
        .add_started(
            t0,
            sid("short"),
            Duration::ZERO,
            Some(Duration::from_secs(5)),
        )
        .unwrap();
    assert!(tracker
        .add_started(t0, sid("zero"), Duration::ZERO, Some(Duration::ZERO))
        .is_err());
    let mut world = World::new(tracker, t0, completing(usize::MAX));
    world.run(None);
    let ended: Vec<(String, u64)> = world
        .outcomes
        .iter()
        .map(|o| (o.session_id.as_str().to_owned(), o.elapsed_ms))
        .collect();
    assert_eq!(ended.len(), 2);
    assert!(world
        .outcomes
        .iter()
        .all(|o| o.outcome == OutcomeKind::TimedOut));
    assert_eq!(ended[0].0, "short");
    assert!((5_000..5_100).contains(&ended[0].1), "{ended:?}");
    assert_eq!(ended[1].0, "old");
    assert!((100_000..100_100).contains(&ended[1].1), "{ended:?}");
}
