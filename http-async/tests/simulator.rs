//! The async driver against the simulator over loopback HTTP: the shared scenario list, the
//! webhook shortcut, cancellation, single calls, and 1 000 sessions at once.
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
use bankconnect_http_async::{Client, ClientSettings};
use bankconnect_sim::{Scenario, SessionScript, SimConfig, Simulator};

async fn sim(sessions: Vec<SessionScript>) -> Simulator {
    Simulator::start(SimConfig {
        scenario: Scenario {
            sessions,
            ..Scenario::default()
        },
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn api(sim: &Simulator, wrong: bool) -> Api {
    let key = if wrong { "nope" } else { "sim-api-key" };
    Api::new(
        BaseUrl::parse(&sim.base_url()).unwrap(),
        Credentials::new(key, "sim-server-hash").unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_scenario_list() {
    for case in driver_cases::cases() {
        let sim = sim(case.script.clone().into_iter().collect()).await;
        let client = Client::from_settings(
            ClientSettings::new(api(&sim, case.wrong_credentials), 1)
                .with_policy(case.policy.clone()),
        );
        let outcome = client
            .wait(&SessionId::new(case.session_id).unwrap())
            .await
            .unwrap();
        let log = sim.requests_for(case.session_id);
        eprintln!("case: {}", case.name);
        (case.check)(&outcome, &log);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_ends_the_wait_early() {
    let sim = sim(vec![
        SessionScript::new("w1").complete_after(Duration::from_millis(300))
    ])
    .await;
    let policy = bankconnect_core::PollPolicy {
        interval: Duration::from_secs(30),
        ..driver_cases::fast_policy()
    };
    let client =
        Client::from_settings(ClientSettings::new(api(&sim, false), 1).with_policy(policy));
    let mut tracker = client.track_many([SessionId::new("w1").unwrap()]).unwrap();
    let feed = tracker.webhook_feed();
    let started = Instant::now();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        feed.send(WebhookHint::unauthenticated(SessionId::new("w1").unwrap()));
        feed.send(WebhookHint::unauthenticated(
            SessionId::new("stranger").unwrap(),
        ));
    });
    let outcome = tracker.next_outcome().await.unwrap();
    assert_eq!(outcome.outcome, OutcomeKind::Completed);
    assert_eq!(outcome.notified_by, NotifiedBy::Webhook);
    assert_eq!(outcome.polls, 2);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(tracker.next_outcome().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_wait_is_clean() {
    let sim = sim(vec![
        SessionScript::new("long").complete_after(Duration::from_secs(60))
    ])
    .await;
    let client = Client::from_settings(
        ClientSettings::new(api(&sim, false), 1).with_policy(driver_cases::fast_policy()),
    );
    let id = SessionId::new("long").unwrap();
    let result = tokio::time::timeout(Duration::from_millis(350), client.wait(&id)).await;
    assert!(result.is_err(), "cancelled by the timeout");
    let polls = sim.requests_for("long").len();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        sim.requests_for("long").len(),
        polls,
        "nothing polls after the wait is dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_calls() {
    let sim = sim(vec![SessionScript::new("one").complete_after_polls(1)]).await;
    let client = Client::from_settings(
        ClientSettings::new(api(&sim, false), 1).with_policy(driver_cases::fast_policy()),
    );
    let registration =
        WebhookRegistration::new("https://example.com/hook", WebhookMode::NetBankingOnly).unwrap();
    assert_eq!(
        client
            .update_webhook(&registration)
            .await
            .unwrap()
            .message
            .as_deref(),
        Some("success")
    );
    assert_eq!(sim.registration().unwrap().webhook_mode, 0);
    let id = SessionId::new("one").unwrap();
    assert!(matches!(
        client.session_status(&id).await.unwrap(),
        bankconnect_core::SessionStatusReply::NotYet(_)
    ));
    assert!(client.progress(&id).await.unwrap().is_completed());
    assert!(matches!(
        client.session_status(&id).await.unwrap(),
        bankconnect_core::SessionStatusReply::Ready(_)
    ));
    let err = client
        .progress(&SessionId::new("missing").unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("SESSION_NOT_FOUND"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sessions_at_once() {
    let ids: Vec<String> = (0..1000).map(|i| format!("bulk-{i}")).collect();
    let sim = sim(ids
        .iter()
        .map(|id| SessionScript::new(id).complete_after_polls(2))
        .collect())
    .await;
    let client = Client::from_settings(
        ClientSettings::new(api(&sim, false), 1)
            .with_policy(driver_cases::fast_policy())
            .with_limits(SchedulerConfig {
                max_in_flight: 32,
                ..SchedulerConfig::default()
            }),
    );
    let mut tracker = client
        .track_many(ids.iter().map(|id| SessionId::new(id).unwrap()))
        .unwrap();
    let mut done = 0;
    while let Some(outcome) = tracker.next_outcome().await {
        assert_eq!(outcome.outcome, OutcomeKind::Completed, "{outcome:?}");
        done += 1;
    }
    assert_eq!(done, 1000);
    assert_eq!(sim.requests().len(), 3000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_request_is_retried() {
    let sim = Simulator::start(SimConfig {
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
    })
    .await
    .unwrap();
    let transport = bankconnect_http_async::ReqwestTransport::new(Duration::from_millis(300));
    let client = Client::with_settings(
        ClientSettings::new(api(&sim, false), 1).with_policy(driver_cases::fast_policy()),
        transport,
    );
    let started = Instant::now();
    let outcome = client.wait(&SessionId::new("t1").unwrap()).await.unwrap();
    assert_eq!(outcome.outcome, OutcomeKind::Completed);
    assert_eq!(outcome.retries, 1);
    assert!(
        started.elapsed() < Duration::from_millis(1_900),
        "did not wait for the slow answer"
    );
}

/// Sessions fed through a shared reference (the blocking driver's shape): one while tracking,
/// and one through a feed opened after the first was dropped; every outcome arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_fed_through_a_shared_tracker_all_end() {
    let ids = ["fed-0", "fed-1", "fed-2"];
    let sim = sim(ids
        .iter()
        .map(|id| SessionScript::new(id).complete_after_polls(1))
        .collect())
    .await;
    let client = Client::from_settings(
        ClientSettings::new(api(&sim, false), 1).with_policy(driver_cases::fast_policy()),
    );
    let mut tracker = client
        .track_many([SessionId::new(ids[0]).unwrap()])
        .unwrap();
    let shared = &tracker;
    let first = shared.session_feed();
    assert!(first.send(SessionId::new(ids[1]).unwrap()));
    let mut ended = vec![tracker.next_outcome().await.unwrap().session_id.to_string()];
    drop(first);
    let second = tracker.session_feed();
    assert!(second.send(SessionId::new(ids[2]).unwrap()));
    drop(second);
    while let Some(outcome) = tracker.next_outcome().await {
        ended.push(outcome.session_id.to_string());
    }
    ended.sort();
    assert_eq!(ended, ids);
}
