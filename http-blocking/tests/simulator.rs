//! The blocking driver against the simulator over loopback HTTP: the shared scenario list, the
//! webhook shortcut, single calls, and 1 000 sessions at once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use bankconnect_testkit::driver_cases;

use std::time::{Duration, Instant};

use bankconnect_core::SchedulerConfig;
use bankconnect_core::{
    Api, BaseUrl, Credentials, NotifiedBy, OutcomeKind, SessionId, WebhookHint, WebhookMode,
    WebhookRegistration,
};
use bankconnect_http_blocking::{Client, ClientSettings};
use bankconnect_sim::{Scenario, SessionScript, SimConfig, Simulator};

/// Runs the simulator on its own tokio runtime thread, so the tests stay free of async.
struct Sim {
    sim: Simulator,
    _runtime: tokio::runtime::Runtime,
}

fn sim(sessions: Vec<SessionScript>) -> Sim {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sim = runtime
        .block_on(Simulator::start(SimConfig {
            scenario: Scenario {
                sessions,
                ..Scenario::default()
            },
            ..SimConfig::default()
        }))
        .unwrap();
    Sim {
        sim,
        _runtime: runtime,
    }
}

fn api(sim: &Simulator, wrong: bool) -> Api {
    let key = if wrong { "nope" } else { "sim-api-key" };
    Api::new(
        BaseUrl::parse(&sim.base_url()).unwrap(),
        Credentials::new(key, "sim-server-hash").unwrap(),
    )
}

#[test]
fn shared_scenario_list() {
    for case in driver_cases::cases() {
        let sim = sim(case.script.clone().into_iter().collect());
        let client = Client::from_settings(
            ClientSettings::new(api(&sim.sim, case.wrong_credentials), 1)
                .with_policy(case.policy.clone()),
        );
        let outcome = client
            .wait(&SessionId::new(case.session_id).unwrap())
            .unwrap();
        let log = sim.sim.requests_for(case.session_id);
        eprintln!("case: {}", case.name);
        (case.check)(&outcome, &log);
    }
}

#[test]
fn a_webhook_ends_the_wait_early() {
    let sim = sim(vec![
        SessionScript::new("w1").complete_after(Duration::from_millis(300))
    ]);
    let policy = bankconnect_core::PollPolicy {
        interval: Duration::from_secs(30),
        ..driver_cases::fast_policy()
    };
    let client =
        Client::from_settings(ClientSettings::new(api(&sim.sim, false), 1).with_policy(policy));
    let mut tracker = client.track_many([SessionId::new("w1").unwrap()]).unwrap();
    let feed = tracker.webhook_feed();
    let started = Instant::now();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        feed.send(WebhookHint::unauthenticated(SessionId::new("w1").unwrap()));
        feed.send(WebhookHint::unauthenticated(
            SessionId::new("stranger").unwrap(),
        ));
    });
    let outcome = tracker.next_outcome().unwrap();
    assert_eq!(outcome.outcome, OutcomeKind::Completed);
    assert_eq!(outcome.notified_by, NotifiedBy::Webhook);
    assert_eq!(outcome.polls, 2);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "took {took:?} with a 30 s interval"
    );
    assert!(tracker.next_outcome().is_none());
}

#[test]
fn single_calls() {
    let sim = sim(vec![SessionScript::new("one").complete_after_polls(1)]);
    let client = Client::from_settings(
        ClientSettings::new(api(&sim.sim, false), 1).with_policy(driver_cases::fast_policy()),
    );
    let registration =
        WebhookRegistration::new("https://example.com/hook", WebhookMode::All).unwrap();
    assert_eq!(
        client
            .update_webhook(&registration)
            .unwrap()
            .message
            .as_deref(),
        Some("success")
    );
    assert_eq!(sim.sim.registration().unwrap().webhook_mode, 1);
    let id = SessionId::new("one").unwrap();
    assert!(matches!(
        client.session_status(&id).unwrap(),
        bankconnect_core::SessionStatusReply::NotYet(_)
    ));
    let report = client.progress(&id).unwrap();
    assert!(report.is_completed());
    assert!(matches!(
        client.session_status(&id).unwrap(),
        bankconnect_core::SessionStatusReply::Ready(_)
    ));
    let err = client
        .progress(&SessionId::new("missing").unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("SESSION_NOT_FOUND"), "{err}");
}

#[test]
fn a_thousand_sessions_at_once() {
    let ids: Vec<String> = (0..1000).map(|i| format!("bulk-{i}")).collect();
    let sim = sim(ids
        .iter()
        .map(|id| SessionScript::new(id).complete_after_polls(2))
        .collect());
    let client = Client::from_settings(
        ClientSettings::new(api(&sim.sim, false), 1)
            .with_policy(driver_cases::fast_policy())
            .with_limits(SchedulerConfig {
                max_in_flight: 16,
                ..SchedulerConfig::default()
            }),
    );
    let mut tracker = client
        .track_many(ids.iter().map(|id| SessionId::new(id).unwrap()))
        .unwrap();
    let mut done = 0;
    while let Some(outcome) = tracker.next_outcome() {
        assert_eq!(outcome.outcome, OutcomeKind::Completed, "{outcome:?}");
        done += 1;
    }
    assert_eq!(done, 1000);
    assert_eq!(sim.sim.requests().len(), 3000);
}

#[test]
fn a_timed_out_request_is_retried() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sim = runtime
        .block_on(Simulator::start(SimConfig {
            scenario: Scenario {
                sessions: vec![SessionScript::new("t1")
                    .fault_on(1, bankconnect_sim::FaultKind::Slow)
                    .complete_after_polls(1)],
                faults: bankconnect_sim::FaultRates {
                    slow_ms: 2_000,
                    ..Default::default()
                },
                ..Scenario::default()
            },
            ..SimConfig::default()
        }))
        .unwrap();
    let transport = bankconnect_http_blocking::UreqTransport::new(Duration::from_millis(300));
    let client = Client::with_settings(
        ClientSettings::new(api(&sim, false), 1).with_policy(driver_cases::fast_policy()),
        transport,
    );
    let started = Instant::now();
    let outcome = client.wait(&SessionId::new("t1").unwrap()).unwrap();
    assert_eq!(outcome.outcome, OutcomeKind::Completed);
    assert_eq!(outcome.retries, 1);
    assert!(
        started.elapsed() < Duration::from_millis(1_900),
        "did not wait for the slow answer"
    );
}

/// Requests the simulator has answered so far.
fn requests_now(sim: &Sim) -> usize {
    sim.sim.requests().len()
}

#[test]
fn an_unread_tracker_stops_at_its_event_bound_and_a_dropped_one_stops_polling() {
    let ids: Vec<String> = (0..20).map(|i| format!("unread-{i}")).collect();
    let sim = sim(ids
        .iter()
        .map(|id| SessionScript::new(id).complete_after_polls(1_000_000))
        .collect());
    let client = Client::from_settings(
        ClientSettings::new(api(&sim.sim, false), 1)
            .with_policy(bankconnect_core::PollPolicy {
                interval: Duration::from_millis(5),
                ..driver_cases::fast_policy()
            })
            .with_limits(SchedulerConfig {
                max_in_flight: 4,
                progress_updates: true,
                ..SchedulerConfig::default()
            }),
    );
    let mut tracker = client
        .track_many(ids.iter().map(|id| SessionId::new(id).unwrap()))
        .unwrap();
    // One event read: the workers go on alone, each answer queueing a progress update.
    assert!(matches!(
        tracker.next_event(),
        Some(bankconnect_core::TrackerEvent::Progress(_))
    ));
    // The count once it stops growing (or after 6 s, when it never does).
    let settle = |sim: &Sim| {
        let mut last = requests_now(sim);
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(300));
            let now = requests_now(sim);
            if now == last {
                break;
            }
            last = now;
        }
        last
    };
    // Nobody reads: polling stops once 1 024 events wait (plus the one read, the events the
    // caller took with it, and the requests in flight).
    let stopped = settle(&sim);
    assert!(
        (1024..1024 + 64).contains(&stopped),
        "{stopped} requests before the tracker stopped"
    );
    // Reading makes room, and polling resumes.
    for _ in 0..1000 {
        assert!(tracker.next_event().is_some());
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(requests_now(&sim) > stopped, "polling resumed");
    // Dropped: the workers finish what they sent and stop.
    drop(tracker);
    let after_drop = settle(&sim);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(requests_now(&sim), after_drop, "no request after the drop");
}

/// Sessions fed through a shared reference (the async driver's shape too): one while
/// tracking, and one through a feed opened after the first was dropped; every outcome arrives.
#[test]
fn sessions_fed_through_a_shared_tracker_all_end() {
    let ids = ["fed-0", "fed-1", "fed-2"];
    let sim = sim(ids
        .iter()
        .map(|id| SessionScript::new(id).complete_after_polls(1))
        .collect());
    let client = Client::from_settings(
        ClientSettings::new(api(&sim.sim, false), 1).with_policy(driver_cases::fast_policy()),
    );
    let mut tracker = client
        .track_many([SessionId::new(ids[0]).unwrap()])
        .unwrap();
    let shared = &tracker;
    let first = shared.session_feed();
    assert!(first.send(SessionId::new(ids[1]).unwrap()));
    let mut ended = vec![tracker.next_outcome().unwrap().session_id.to_string()];
    drop(first);
    let second = tracker.session_feed();
    assert!(second.send(SessionId::new(ids[2]).unwrap()));
    drop(second);
    while let Some(outcome) = tracker.next_outcome() {
        ended.push(outcome.session_id.to_string());
    }
    ended.sort();
    assert_eq!(ended, ids);
}
