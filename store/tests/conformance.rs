//! One conformance suite, run on SQLite (a fresh file per case) and on PostgreSQL (a fresh schema
//! per case, when `BANKCONNECT_TEST_POSTGRES` names a server; otherwise listed as ignored).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use bankconnect_core::SessionId;
use bankconnect_store::{
    Added, Attempt, Bounds, DeliveryState, Finish, NewSession, Route, SessionState, Store,
    StoreError, WebhookFate, WebhookNotice, SCHEMA_VERSION,
};
use libtest_mimic::{Arguments, Trial};
use serde_json::json;

mod support;
use support::{Backend, Fixture};

#[path = "conformance/operations.rs"]
mod operations;
use operations::*;

type Case = fn(Fixture) -> Pin<Box<dyn Future<Output = ()> + Send>>;

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn at(ms: u64) -> SystemTime {
    t0() + Duration::from_millis(ms)
}

fn sid(id: &str) -> SessionId {
    SessionId::new(id).unwrap()
}

fn ids(n: usize, prefix: &str) -> Vec<NewSession> {
    (0..n)
        .map(|i| NewSession::new(sid(&format!("{prefix}{i:04}"))))
        .collect()
}

const LEASE: Duration = Duration::from_secs(30);

async fn adding_is_idempotent(fx: Fixture) {
    let store = fx.open().await;
    // Each engine declares what it can do; the service asks this, never the engine's name.
    let capabilities = store.capabilities();
    let fleet = fx.backend == Backend::Postgres;
    assert_eq!(capabilities.several_processes, fleet);
    assert_eq!(capabilities.notify, fleet);
    assert_eq!(store.listen_webhooks("r").is_some(), capabilities.notify);
    let new = NewSession::new(sid("s-1"))
        .with_reference("loan-42")
        .with_max_wait(Duration::from_secs(600));
    let added = store.add_session(new, at(0)).await.unwrap();
    let Added::Created {
        record,
        pending_webhooks,
    } = &added
    else {
        panic!("created: {added:?}")
    };
    assert!(pending_webhooks.is_empty());
    assert_eq!(record.state, SessionState::Tracking);
    assert_eq!(record.reference.as_deref(), Some("loan-42"));
    assert_eq!(record.added_at, at(0));
    assert_eq!(record.max_wait, Some(Duration::from_secs(600)));
    assert_eq!(record.delivery.state, DeliveryState::None);
    // Again, later, with other values: the stored record, unchanged.
    let again = store
        .add_session(
            NewSession::new(sid("s-1")).with_reference("other"),
            at(5_000),
        )
        .await
        .unwrap();
    assert_eq!(again, Added::Existing(record.clone()));
    assert_eq!(
        store.get_session(&sid("s-1")).await.unwrap().as_ref(),
        Some(record)
    );
    assert_eq!(store.get_session(&sid("nope")).await.unwrap(), None);
}

async fn sessions_added_leased_are_held_by_the_adder_until_the_lease_lapses(fx: Fixture) {
    let store = fx.open().await;
    let added = store
        .add_sessions_leased(ids(3, "l"), at(0), "adder", at(30_000))
        .await
        .unwrap();
    for added in &added {
        let Added::Created { record, .. } = added else {
            panic!("created: {added:?}")
        };
        let lease = record.lease.as_ref().expect("leased at the add");
        assert_eq!((lease.owner.as_str(), lease.until), ("adder", at(30_000)));
    }
    assert_eq!(store.held_sessions("adder").await.unwrap().len(), 3);
    assert!(store
        .claim_sessions("other", at(29_999), LEASE, 10)
        .await
        .unwrap()
        .is_empty());
    // Adding a known one again leaves its lease alone.
    let again = store
        .add_sessions_leased(ids(1, "l"), at(1), "other", at(90_000))
        .await
        .unwrap();
    assert!(
        matches!(&again[0], Added::Existing(r) if r.lease.as_ref().is_some_and(|l| l.owner == "adder"))
    );
    assert_eq!(
        store
            .claim_sessions("other", at(30_000), LEASE, 10)
            .await
            .unwrap()
            .len(),
        3,
        "lapsed"
    );
}

async fn a_batch_commits_all_or_nothing(fx: Fixture) {
    let store = fx.open().await;
    let mut batch = ids(5, "b");
    batch.push(NewSession::new(sid("too-long")).with_reference("x".repeat(5000)));
    let err = store.add_sessions(batch, at(0)).await.unwrap_err();
    assert!(matches!(err, StoreError::Database { .. }), "{err}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "the driver's error is kept: {err:?}"
    );
    assert!(!err.is_transient());
    let counts = store.count_sessions().await.unwrap();
    assert_eq!(counts.tracking, 0, "nothing of the failed batch was kept");
    let added = store.add_sessions(ids(5, "b"), at(1)).await.unwrap();
    assert!(added.iter().all(Added::is_created));
    // A batch mixing known and new ids: known ones come back unchanged.
    let mut mixed = ids(7, "b");
    mixed.push(NewSession::new(sid("b0000")));
    let added = store.add_sessions(mixed, at(2)).await.unwrap();
    let created: Vec<bool> = added.iter().map(Added::is_created).collect();
    assert_eq!(
        created,
        [false, false, false, false, false, true, true, false]
    );
    assert_eq!(store.count_sessions().await.unwrap().tracking, 7);
}

async fn claims_never_share_a_session_and_take_over_lapsed_leases(fx: Fixture) {
    let store = fx.open().await;
    store.add_sessions(ids(25, "c"), at(0)).await.unwrap();
    let a = store.claim_sessions("A", at(0), LEASE, 10).await.unwrap();
    let b = store.claim_sessions("B", at(1), LEASE, 10).await.unwrap();
    let a2 = store.claim_sessions("A", at(2), LEASE, 10).await.unwrap();
    assert_eq!((a.len(), b.len(), a2.len()), (10, 10, 5));
    let mut seen = HashSet::new();
    for record in a.iter().chain(&b).chain(&a2) {
        assert!(seen.insert(record.session_id.clone()), "claimed twice");
    }
    assert_eq!(a[0].lease.as_ref().unwrap().owner, "A");
    assert!(store
        .claim_sessions("C", at(3), LEASE, 10)
        .await
        .unwrap()
        .is_empty());
    let held: HashSet<_> = store
        .held_sessions("B")
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        held,
        b.iter()
            .map(|r| r.session_id.clone())
            .collect::<HashSet<_>>()
    );
    // A renews; B does not. After B's lease lapses, C takes B's sessions and none of A's.
    assert_eq!(
        store.renew_leases("A", at(20_000), LEASE).await.unwrap(),
        15
    );
    let taken = store
        .claim_sessions("C", at(31_000), LEASE, 100)
        .await
        .unwrap();
    let taken: HashSet<_> = taken.into_iter().map(|r| r.session_id).collect();
    let from_b: HashSet<_> = b.into_iter().map(|r| r.session_id).collect();
    assert_eq!(taken, from_b);
    assert!(
        store.held_sessions("B").await.unwrap().is_empty(),
        "B lost them to C"
    );
    // C hands two back; only its own leases are released.
    let two: Vec<_> = from_b.iter().take(2).cloned().collect();
    assert_eq!(
        store
            .release_sessions("A", two.clone(), at(32_000))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store.release_sessions("C", two, at(32_000)).await.unwrap(),
        2
    );
    assert_eq!(store.held_sessions("C").await.unwrap().len(), 8);
    // Claimable only from the time the releaser gave (one poll interval on).
    assert!(store
        .claim_sessions("C", at(31_999), LEASE, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .claim_sessions("C", at(32_000), LEASE, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    // A single-node store freed of every lease after a crash: all claimable again at once.
    assert_eq!(store.release_all_leases().await.unwrap(), 25);
    assert_eq!(
        store
            .claim_sessions("A", at(20_001), LEASE, 100)
            .await
            .unwrap()
            .len(),
        25
    );
    store.release_leases("A", at(20_001)).await.unwrap();
    store
        .claim_sessions("A", at(20_002), LEASE, 15)
        .await
        .unwrap();
    store
        .claim_sessions("C", at(31_000), LEASE, 10)
        .await
        .unwrap();
    // A shuts down: its leases are free one interval later.
    assert_eq!(store.release_leases("A", at(31_001)).await.unwrap(), 15);
    assert!(store
        .claim_sessions("C", at(31_000), LEASE, 100)
        .await
        .unwrap()
        .is_empty());
    let freed = store
        .claim_sessions("C", at(31_001), LEASE, 100)
        .await
        .unwrap();
    assert_eq!(freed.len(), 15);
    assert_eq!(
        store.live_replicas(at(0)).await.unwrap(),
        Vec::<String>::new(),
        "A left; C never heartbeat"
    );
    store.renew_leases("C", at(31_002), LEASE).await.unwrap();
    assert_eq!(store.live_replicas(at(31_000)).await.unwrap(), ["C"]);
}

async fn concurrent_claims_are_disjoint(fx: Fixture) {
    let store = fx.open().await;
    store.add_sessions(ids(200, "p"), at(0)).await.unwrap();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = store
                    .claim_sessions(&format!("w{worker}"), at(0), LEASE, 7)
                    .await
                    .unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|r| r.session_id));
            }
        }));
    }
    let mut seen = HashSet::new();
    for task in tasks {
        for id in task.await.unwrap() {
            assert!(seen.insert(id), "two workers hold one session");
        }
    }
    assert_eq!(seen.len(), 200);
}

async fn finishing_enqueues_its_delivery_in_the_same_transaction(fx: Fixture) {
    let store = fx.open().await;
    store.add_sessions(ids(2, "f"), at(0)).await.unwrap();
    let outcome = json!({"session_id": "f0000", "outcome": "completed", "polls": 3});
    let done = store
        .finish_session(&sid("f0000"), &outcome, Some("msg_f0000".into()), at(10))
        .await
        .unwrap();
    assert_eq!(done, Finish::Finished);
    let record = store.get_session(&sid("f0000")).await.unwrap().unwrap();
    assert_eq!(record.state, SessionState::Finished);
    assert_eq!(record.outcome, Some(outcome.clone()));
    assert_eq!(record.updated_at, at(10));
    assert_eq!(record.delivery.state, DeliveryState::Pending);
    assert_eq!(record.delivery.webhook_id.as_deref(), Some("msg_f0000"));
    assert_eq!(
        store
            .finish_session(&sid("f0000"), &outcome, Some("msg_x".into()), at(11))
            .await
            .unwrap(),
        Finish::NotTracking
    );
    assert_eq!(
        store
            .finish_session(&sid("zz"), &outcome, None, at(11))
            .await
            .unwrap(),
        Finish::Unknown
    );
    // The outbox insert fails (an empty webhook id): the session stays tracking.
    let err = store
        .finish_session(&sid("f0001"), &outcome, Some(String::new()), at(12))
        .await;
    assert!(err.is_err());
    let record = store.get_session(&sid("f0001")).await.unwrap().unwrap();
    assert_eq!(record.state, SessionState::Tracking);
    assert_eq!(record.outcome, None);
    // Without delivery: finished, nothing to deliver.
    store
        .finish_session(&sid("f0001"), &outcome, None, at(13))
        .await
        .unwrap();
    let record = store.get_session(&sid("f0001")).await.unwrap().unwrap();
    assert_eq!(record.delivery.state, DeliveryState::None);
}

async fn a_claim_with_records_hands_each_delivery_its_record_once(fx: Fixture) {
    let store = fx.open().await;
    store.add_sessions(ids(12, "r"), at(0)).await.unwrap();
    for i in 0..12 {
        let id = sid(&format!("r{i:04}"));
        store
            .finish_session(&id, &json!({"i": i}), Some(format!("msg_r{i}")), at(1))
            .await
            .unwrap();
    }
    // Two workers at once: each delivery to one, with the record get_session reads.
    let (one, two) = tokio::join!(
        store.claim_deliveries_with_records("w1", at(2), Duration::from_secs(15), 8),
        store.claim_deliveries_with_records("w2", at(2), Duration::from_secs(15), 8),
    );
    let (one, two) = (one.unwrap(), two.unwrap());
    assert_eq!(one.len() + two.len(), 12);
    let mut seen = HashSet::new();
    for (due, record) in one.into_iter().chain(two) {
        assert!(
            seen.insert(due.session_id.clone()),
            "one delivery, two workers"
        );
        let record = record.expect("the record is read with the claim");
        assert_eq!(
            record,
            store.get_session(&due.session_id).await.unwrap().unwrap()
        );
        assert_eq!(record.delivery.state, DeliveryState::Pending);
        let i = record.outcome.as_ref().unwrap()["i"].as_u64().unwrap();
        assert_eq!(due.webhook_id, format!("msg_r{i}"));
        assert_eq!(due.attempts, 0);
    }
    // Claimed: nothing more until the claims lapse; then all again, as claim_deliveries does.
    assert!(store
        .claim_deliveries_with_records("late", at(3), Duration::from_secs(15), 100)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .claim_deliveries("late", at(20_000), Duration::from_secs(15), 100)
            .await
            .unwrap()
            .len(),
        12
    );
    // Paused: nothing is claimed.
    store.set_delivery_paused(true).await.unwrap();
    assert!(store
        .claim_deliveries_with_records("late", at(60_000), Duration::from_secs(15), 100)
        .await
        .unwrap()
        .is_empty());
}

async fn each_due_delivery_goes_to_one_worker_at_a_time(fx: Fixture) {
    let store = fx.open().await;
    store.add_sessions(ids(40, "d"), at(0)).await.unwrap();
    for i in 0..40 {
        let id = sid(&format!("d{i:04}"));
        store
            .finish_session(&id, &json!({"i": i}), Some(format!("msg_{i}")), at(1))
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for worker in 0..6 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = store
                    .claim_deliveries(&format!("w{worker}"), at(2), Duration::from_secs(15), 3)
                    .await
                    .unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got);
            }
        }));
    }
    let mut seen = HashSet::new();
    for task in tasks {
        for due in task.await.unwrap() {
            assert_eq!(due.attempts, 0);
            assert!(seen.insert(due.session_id), "one delivery, two workers");
        }
    }
    assert_eq!(seen.len(), 40);
    // Claimed: nobody else gets them until the claim lapses.
    assert!(store
        .claim_deliveries("late", at(3), Duration::from_secs(15), 100)
        .await
        .unwrap()
        .is_empty());
    let d0 = sid("d0000");
    let failed = Attempt::Failed {
        error: "HTTP 500".into(),
        retry_at: at(60_000),
    };
    assert!(store.delivery_attempted(&d0, failed, at(4)).await.unwrap());
    let record = store.get_session(&d0).await.unwrap().unwrap();
    assert_eq!(record.delivery.state, DeliveryState::Failing);
    assert_eq!(record.delivery.attempts, 1);
    assert_eq!(record.delivery.last_error.as_deref(), Some("HTTP 500"));
    // The others' claims lapse at 15 s; d0 is due at 60 s.
    let again = store
        .claim_deliveries("late", at(20_000), Duration::from_secs(15), 100)
        .await
        .unwrap();
    assert_eq!(again.len(), 39);
    assert!(again.iter().all(|d| d.session_id != d0));
    for due in &again {
        assert!(store
            .delivery_attempted(&due.session_id, Attempt::Delivered, at(20_001))
            .await
            .unwrap());
    }
    let retry = store
        .claim_deliveries("late", at(60_000), Duration::from_secs(15), 100)
        .await
        .unwrap();
    assert_eq!(retry.len(), 1);
    assert_eq!(
        (retry[0].attempts, retry[0].webhook_id.as_str()),
        (1, "msg_0")
    );
    assert!(store
        .delivery_attempted(&d0, Attempt::Delivered, at(60_001))
        .await
        .unwrap());
    assert!(
        !store
            .delivery_attempted(&d0, Attempt::Delivered, at(60_002))
            .await
            .unwrap(),
        "a delivered delivery does not change again"
    );
    let record = store.get_session(&d0).await.unwrap().unwrap();
    assert_eq!(
        (record.delivery.state, record.delivery.attempts),
        (DeliveryState::Delivered, 2)
    );
    // A last failure gives up.
    store
        .add_session(NewSession::new(sid("g")), at(0))
        .await
        .unwrap();
    store
        .finish_session(&sid("g"), &json!({}), Some("msg_g".into()), at(60_003))
        .await
        .unwrap();
    let gave_up = Attempt::GaveUp {
        error: "timeout".into(),
    };
    assert!(store
        .delivery_attempted(&sid("g"), gave_up, at(60_004))
        .await
        .unwrap());
    let record = store.get_session(&sid("g")).await.unwrap().unwrap();
    assert_eq!(record.delivery.state, DeliveryState::GivenUp);
    assert!(store
        .claim_deliveries("late", at(999_999_999), Duration::from_secs(15), 100)
        .await
        .unwrap()
        .is_empty());
}

async fn a_webhook_dedupe_key_is_recorded_once(fx: Fixture) {
    let store = fx.open().await;
    let event = json!({"event_name": "ENRICHMENT_NOTIFICATION", "session_id": "s"});
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        let event = event.clone();
        tasks.push(tokio::spawn(async move {
            store
                .record_webhook("key-1", Some(&sid("s")), &event, at(0))
                .await
                .unwrap()
        }));
    }
    let mut firsts = 0;
    for task in tasks {
        firsts += usize::from(task.await.unwrap());
    }
    assert_eq!(firsts, 1);
    assert!(store
        .record_webhook("key-2", None, &event, at(1))
        .await
        .unwrap());
    assert_eq!(store.prune_webhooks(at(1), at(0)).await.unwrap().dedupe, 1);
    assert!(store
        .record_webhook("key-1", None, &event, at(2))
        .await
        .unwrap());
}

async fn accepting_a_webhook_records_and_routes_it_in_one_transaction(fx: Fixture) {
    let store = fx.open_with(Bounds::new(1, Duration::from_secs(60))).await;
    let hint = |id: &str, n: u32| json!({"session_id": id, "n": n});
    let hinted = Route::Hint {
        authenticated: false,
    };
    store
        .add_sessions(
            vec![NewSession::new(sid("t")), NewSession::new(sid("e"))],
            at(0),
        )
        .await
        .unwrap();
    store
        .finish_session(&sid("e"), &json!({"outcome": "completed"}), None, at(1))
        .await
        .unwrap();
    let accept = |key: &'static str, id: Option<&'static str>, n: u32, route: Route, ms: u64| {
        let store = store.clone();
        async move {
            let session = id.map(sid);
            store
                .accept_webhook(
                    key,
                    session.as_ref(),
                    &hint(id.unwrap_or("-"), n),
                    route,
                    "r1",
                    at(ms),
                )
                .await
                .unwrap()
        }
    };
    assert_eq!(
        accept("k1", Some("t"), 1, hinted, 2).await,
        WebhookFate::Tracking
    );
    assert_eq!(
        accept("k1", Some("t"), 9, hinted, 3).await,
        WebhookFate::Duplicate
    );
    assert_eq!(
        accept("k2", Some("e"), 2, hinted, 4).await,
        WebhookFate::Ended
    );
    assert_eq!(
        accept("k3", Some("t"), 3, Route::RecordOnly, 5).await,
        WebhookFate::Recorded
    );
    assert_eq!(
        accept("k4", None, 4, hinted, 6).await,
        WebhookFate::Recorded
    );
    assert_eq!(
        accept("k5", Some("later-1"), 5, hinted, 7).await,
        WebhookFate::Kept { dropped: 0 }
    );
    // The bound is one kept webhook: the older falls out, counted.
    assert_eq!(
        accept("k6", Some("later-2"), 6, hinted, 8).await,
        WebhookFate::Kept { dropped: 1 }
    );
    // The session's accepted webhooks, oldest first, duplicates not recorded twice.
    let of_t = store.webhooks_of(&[sid("t"), sid("nobody")]).await.unwrap();
    let ns: Vec<_> = of_t.iter().map(|w| w.event["n"].clone()).collect();
    assert_eq!(ns, vec![json!(1), json!(3)]);
    assert!(of_t.iter().all(|w| w.session_id == sid("t")));
    // Kept ones come with the add, and stay among the accepted webhooks of that session.
    let added = store
        .add_session(NewSession::new(sid("later-2")), at(9))
        .await
        .unwrap();
    let Added::Created {
        pending_webhooks, ..
    } = added
    else {
        panic!("created")
    };
    assert_eq!(pending_webhooks, vec![hint("later-2", 6)]);
    assert_eq!(store.webhooks_of(&[sid("later-2")]).await.unwrap().len(), 1);
}

async fn leased_webhooks_are_those_of_held_tracking_sessions_since_a_time(fx: Fixture) {
    let store = fx.open().await;
    store.add_sessions(ids(4, "s"), at(0)).await.unwrap();
    let mine = store.claim_sessions("me", at(0), LEASE, 2).await.unwrap();
    let theirs = store
        .claim_sessions("other", at(0), LEASE, 2)
        .await
        .unwrap();
    let hinted = Route::Hint {
        authenticated: true,
    };
    for (n, record) in mine.iter().chain(&theirs).enumerate() {
        let id = &record.session_id;
        for (k, ms) in [(0, 100), (1, 5_000)] {
            store
                .accept_webhook(
                    &format!("{id}-{k}"),
                    Some(id),
                    &json!({"session_id": id.as_str(), "n": n, "k": k}),
                    hinted,
                    "other",
                    at(ms),
                )
                .await
                .unwrap();
        }
    }
    let since = store.leased_webhooks("me", at(1_000)).await.unwrap();
    let mut got: Vec<_> = since.iter().map(|w| w.session_id.clone()).collect();
    got.sort();
    let mut want: Vec<_> = mine.iter().map(|r| r.session_id.clone()).collect();
    want.sort();
    assert_eq!(got, want, "one recent webhook per held session");
    assert!(since.iter().all(|w| w.event["k"] == json!(1)));
    assert_eq!(store.leased_webhooks("me", at(0)).await.unwrap().len(), 4);
    // A finished session's webhooks are no longer wanted.
    store
        .finish_session(&mine[0].session_id, &json!({}), None, at(6_000))
        .await
        .unwrap();
    assert_eq!(store.leased_webhooks("me", at(0)).await.unwrap().len(), 2);
}

async fn next(notices: &mut bankconnect_store::WebhookNotices) -> WebhookNotice {
    tokio::time::timeout(Duration::from_secs(10), notices.recv())
        .await
        .expect("a notice within 10 s")
        .expect("still listening")
}

async fn listeners_hear_of_webhooks_for_tracking_sessions_from_others(fx: Fixture) {
    let accepting = fx.open().await;
    let listening = fx.open().await;
    let Some(mut notices) = listening.listen_webhooks("b") else {
        // SQLite: one process does everything, nothing to listen to.
        assert_eq!(fx.backend, support::Backend::Sqlite);
        return;
    };
    // Listening (re)started: whatever came before must be read from the store.
    assert_eq!(next(&mut notices).await, WebhookNotice::Missed);
    accepting.add_sessions(ids(2, "n"), at(0)).await.unwrap();
    // Another schema on the same server: its webhooks are not ours.
    let other = support::Fixture::new(fx.backend).await;
    let other_store = other.open().await;
    other_store.add_sessions(ids(1, "n"), at(0)).await.unwrap();
    let hinted = Route::Hint {
        authenticated: false,
    };
    let event = json!({"session_id": "n0000"});
    for (store, key, session, origin) in [
        (&other_store, "x1", "n0000", "a"), // another schema
        (&accepting, "k1", "n0000", "b"),   // the listener's own
        (&accepting, "k2", "unknown", "a"), // kept, not tracking
        (&accepting, "k3", "n0001", "a"),   // heard
    ] {
        store
            .accept_webhook(key, Some(&sid(session)), &event, hinted, origin, at(1))
            .await
            .unwrap();
    }
    assert_eq!(
        next(&mut notices).await,
        WebhookNotice::Webhook(sid("n0001"))
    );
    // A duplicate notifies nobody; a new one does.
    for key in ["k3", "k4"] {
        accepting
            .accept_webhook(key, Some(&sid("n0000")), &event, hinted, "a", at(2))
            .await
            .unwrap();
    }
    assert_eq!(
        next(&mut notices).await,
        WebhookNotice::Webhook(sid("n0000"))
    );
}

async fn pending_webhooks_are_bounded_and_applied_on_add(fx: Fixture) {
    let store = fx.open_with(Bounds::new(2, Duration::from_secs(60))).await;
    let hint = |n: u32| json!({"session_id": "x", "n": n});
    store
        .keep_pending_webhook(&sid("a"), &hint(1), false, at(0))
        .await
        .unwrap();
    store
        .keep_pending_webhook(&sid("b"), &hint(2), true, at(1))
        .await
        .unwrap();
    // An unauthenticated one does not replace b's authenticated one.
    store
        .keep_pending_webhook(&sid("b"), &hint(3), false, at(2))
        .await
        .unwrap();
    let dropped = store
        .keep_pending_webhook(&sid("c"), &hint(4), false, at(3))
        .await
        .unwrap();
    assert_eq!(dropped, 1, "a, the oldest, fell out");
    let added = store
        .add_sessions(
            vec![NewSession::new(sid("a")), NewSession::new(sid("b"))],
            at(4),
        )
        .await
        .unwrap();
    let pending: Vec<_> = added
        .iter()
        .map(|a| match a {
            Added::Created {
                pending_webhooks, ..
            } => pending_webhooks.clone(),
            _ => panic!("new"),
        })
        .collect();
    assert_eq!(pending, [vec![], vec![hint(2)]]);
    // c's is older than the age bound when c is added.
    let added = store
        .add_session(NewSession::new(sid("c")), at(61_000))
        .await
        .unwrap();
    assert_eq!(
        added,
        Added::Created {
            record: added.record().clone(),
            pending_webhooks: vec![]
        }
    );
}

async fn what_clients_can_fill_is_bounded_in_count_and_bytes(fx: Fixture) {
    let bounds = Bounds::new(100, Duration::from_secs(3600))
        .with_bytes(1000, 1000)
        .with_dedupe_count(3);
    let store = fx.open_with(bounds).await;
    // Pending webhooks: three of about 400 bytes, of which the newest two fit in 1 000.
    let big = |n: u32| json!({"session_id": "x", "n": n, "pad": "p".repeat(380)});
    for (i, id) in ["p1", "p2", "p3"].into_iter().enumerate() {
        store
            .keep_pending_webhook(&sid(id), &big(i as u32), false, at(i as u64))
            .await
            .unwrap();
    }
    let added = store
        .add_sessions(
            vec![
                NewSession::new(sid("p1")),
                NewSession::new(sid("p2")),
                NewSession::new(sid("p3")),
            ],
            at(10),
        )
        .await
        .unwrap();
    let kept: Vec<usize> = added
        .iter()
        .map(|a| match a {
            Added::Created {
                pending_webhooks, ..
            } => pending_webhooks.len(),
            _ => panic!("new"),
        })
        .collect();
    assert_eq!(kept, [0, 1, 1], "the oldest fell out by bytes");
    // Dedupe records: at most three, the newest.
    let small = json!({"e": 1});
    for n in 0..5u64 {
        assert!(store
            .record_webhook(&format!("k{n}"), None, &small, at(100 + n))
            .await
            .unwrap());
    }
    let pruned = store.prune_webhooks(at(0), at(0)).await.unwrap();
    assert_eq!(pruned.dedupe, 2);
    // The newest are still known (duplicates), the pruned ones are new again.
    assert!(!store
        .record_webhook("k4", None, &small, at(200))
        .await
        .unwrap());
    assert!(store
        .record_webhook("k0", None, &small, at(201))
        .await
        .unwrap());
    // And by bytes: two events of 600 bytes do not fit in 1 000.
    let wide = json!({"pad": "w".repeat(600)});
    assert!(store
        .record_webhook("w1", None, &wide, at(300))
        .await
        .unwrap());
    assert!(store
        .record_webhook("w2", None, &wide, at(301))
        .await
        .unwrap());
    let pruned = store.prune_webhooks(at(0), at(0)).await.unwrap();
    assert!(pruned.dedupe >= 2, "{pruned:?}");
    assert!(!store
        .record_webhook("w2", None, &wide, at(400))
        .await
        .unwrap());
    assert!(store
        .record_webhook("w1", None, &wide, at(401))
        .await
        .unwrap());
    // Heartbeats of replicas gone long ago go too.
    store
        .renew_leases("old", at(1_000), Duration::from_secs(30))
        .await
        .unwrap();
    store
        .renew_leases("new", at(900_000), Duration::from_secs(30))
        .await
        .unwrap();
    let pruned = store.prune_webhooks(at(0), at(500_000)).await.unwrap();
    assert_eq!(pruned.replicas, 1);
    assert_eq!(store.live_replicas(at(0)).await.unwrap(), ["new"]);
}

async fn many_records_are_read_in_the_order_asked_each_once(fx: Fixture) {
    let store = fx.open().await;
    // More than one statement's worth of ids, asked in reverse with unknown ones and repeats.
    let ids: Vec<String> = (0..150).map(|n| format!("r{n:03}")).collect();
    store
        .add_sessions(
            ids.iter().map(|id| NewSession::new(sid(id))).collect(),
            at(0),
        )
        .await
        .unwrap();
    let mut asked: Vec<SessionId> = ids.iter().rev().map(|id| sid(id)).collect();
    asked.insert(10, sid("nobody"));
    asked.push(sid("r149"));
    asked.push(sid("r000"));
    let read: Vec<String> = store
        .get_sessions(asked)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.session_id.as_str().to_owned())
        .collect();
    let want: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(read, want);
}

async fn many_attempts_are_recorded_in_one_round_and_records_read_together(fx: Fixture) {
    let store = fx.open().await;
    let ids = ["b1", "b2", "b3"];
    store
        .add_sessions(
            ids.iter().map(|id| NewSession::new(sid(id))).collect(),
            at(0),
        )
        .await
        .unwrap();
    for id in ids {
        store
            .finish_session_delivering_at(&sid(id), &json!({}), format!("msg_{id}"), at(1), at(1))
            .await
            .unwrap();
    }
    let records = store
        .get_sessions(vec![sid("b3"), sid("nobody"), sid("b1")])
        .await
        .unwrap();
    let read: Vec<&str> = records.iter().map(|r| r.session_id.as_str()).collect();
    assert_eq!(read, ["b3", "b1"]);
    let due = store
        .claim_deliveries("w", at(2), Duration::from_secs(15), 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 3);
    let recorded = store
        .deliveries_attempted(
            vec![
                (sid("b1"), Attempt::Delivered),
                (
                    sid("b2"),
                    Attempt::GaveUp {
                        error: "HTTP 500".into(),
                    },
                ),
                (sid("nobody"), Attempt::Delivered),
            ],
            at(3),
        )
        .await
        .unwrap();
    assert_eq!(recorded, 2);
    let state = |id: &'static str| {
        let store = store.clone();
        async move {
            store
                .get_session(&sid(id))
                .await
                .unwrap()
                .unwrap()
                .delivery
                .state
        }
    };
    assert_eq!(state("b1").await, DeliveryState::Delivered);
    assert_eq!(state("b2").await, DeliveryState::GivenUp);
    assert_eq!(state("b3").await, DeliveryState::Pending);
    assert_eq!(store.deliveries_attempted(vec![], at(4)).await.unwrap(), 0);
}

async fn paging_skips_and_repeats_nothing_while_rows_are_added(fx: Fixture) {
    let store = fx.open().await;
    store.add_sessions(ids(25, "l"), at(0)).await.unwrap();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut extra = 0;
    loop {
        let page = store
            .list_sessions(Some(SessionState::Tracking), 10, cursor.as_deref())
            .await
            .unwrap();
        seen.extend(
            page.sessions
                .iter()
                .map(|r| r.session_id.as_str().to_owned()),
        );
        // Rows keep arriving between pages.
        if extra < 3 {
            store
                .add_sessions(ids(4, &format!("m{extra}-")), at(1))
                .await
                .unwrap();
            extra += 1;
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no row repeated");
    assert_eq!(seen.len(), 25 + 12, "no row skipped");
    assert_eq!(seen[0], "l0000");
    // Other states are listed apart; bad cursors are refused.
    store
        .finish_session(&sid("l0003"), &json!({}), None, at(2))
        .await
        .unwrap();
    let finished = store
        .list_sessions(Some(SessionState::Finished), 10, None)
        .await
        .unwrap();
    assert_eq!(finished.sessions.len(), 1);
    assert_eq!(finished.next_cursor, None);
    // Every state at once, still in the order added.
    let all = store.list_sessions(None, 1000, None).await.unwrap();
    let tracking = store
        .list_sessions(Some(SessionState::Tracking), 1000, None)
        .await
        .unwrap();
    assert_eq!(all.sessions.len(), tracking.sessions.len() + 1);
    assert!(all
        .sessions
        .iter()
        .any(|r| r.session_id.as_str() == "l0003" && r.state == SessionState::Finished));
    assert!(all
        .sessions
        .windows(2)
        .all(|w| w[0].added_at <= w[1].added_at));
    for bad in ["", "x", "s", "s-1", "szz", "s123456789abcdef01"] {
        assert!(matches!(
            store
                .list_sessions(Some(SessionState::Tracking), 10, Some(bad))
                .await,
            Err(StoreError::InvalidCursor)
        ));
    }
}

async fn cancelling_stops_claims_finishes_and_deliveries(fx: Fixture) {
    let store = fx.open().await;
    store.add_sessions(ids(2, "x"), at(0)).await.unwrap();
    let record = store
        .cancel_session(&sid("x0000"), at(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state, SessionState::Cancelled);
    assert_eq!(record.updated_at, at(5));
    assert_eq!(
        store
            .finish_session(&sid("x0000"), &json!({}), Some("m".into()), at(6))
            .await
            .unwrap(),
        Finish::NotTracking
    );
    let claimed = store.claim_sessions("A", at(7), LEASE, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(store
        .cancel_session(&sid("nope"), at(8))
        .await
        .unwrap()
        .is_none());
    store
        .finish_session(&sid("x0001"), &json!({}), None, at(9))
        .await
        .unwrap();
    let unchanged = store
        .cancel_session(&sid("x0001"), at(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unchanged.state, SessionState::Finished);
    let counts = store.count_sessions().await.unwrap();
    assert_eq!(
        (counts.tracking, counts.finished, counts.cancelled),
        (0, 1, 1)
    );
}

async fn tracker_state_is_saved_and_loaded(fx: Fixture) {
    let store = fx.open().await;
    store.add_sessions(ids(3, "t"), at(0)).await.unwrap();
    let state = json!({"polls": 4, "elapsed_ms": 1234});
    let saved = store
        .save_tracker_states(vec![
            (sid("t0001"), state.clone()),
            (sid("missing"), state.clone()),
        ])
        .await
        .unwrap();
    assert_eq!(saved, 1);
    let tracking = store.tracking_sessions().await.unwrap();
    assert_eq!(tracking.len(), 3);
    assert_eq!(tracking[1].tracker_state, Some(state));
    assert_eq!(tracking[0].tracker_state, None);
}

async fn schema_versions_are_recorded_and_newer_ones_refused(fx: Fixture) {
    let store = fx.open().await;
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    drop(store);
    // Opening again migrates nothing and keeps the data.
    let store = fx.open().await;
    store
        .add_session(NewSession::new(sid("v")), at(0))
        .await
        .unwrap();
    drop(store);
    fx.set_schema_version(SCHEMA_VERSION + 1).await;
    let err = fx.try_open().await.unwrap_err();
    assert!(
        matches!(err, StoreError::NewerSchema { found, supported } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err}"
    );
    assert!(err.to_string().contains("newer"), "{err}");
}

fn cases() -> Vec<(&'static str, Case)> {
    macro_rules! case {
        ($name:ident) => {
            (stringify!($name), |fx| {
                Box::pin($name(fx)) as Pin<Box<dyn Future<Output = ()> + Send>>
            })
        };
    }
    vec![
        case!(history_is_written_with_each_change_and_bounded),
        case!(filters_select_by_each_field_in_either_order),
        case!(redelivery_keeps_the_webhook_id_and_recovery_requeues_a_window),
        case!(pausing_is_shared_and_stops_claims_and_counting),
        case!(retracking_tracks_again_with_a_new_webhook_id),
        case!(polls_asked_for_are_recorded_and_announced),
        case!(purging_and_retention_never_touch_what_is_live),
        case!(counts_follow_every_change_and_windows_are_exact),
        case!(delivery_counts_follow_every_attempt_redelivery_and_refinish),
        case!(adding_is_idempotent),
        case!(a_batch_commits_all_or_nothing),
        case!(sessions_added_leased_are_held_by_the_adder_until_the_lease_lapses),
        case!(claims_never_share_a_session_and_take_over_lapsed_leases),
        case!(concurrent_claims_are_disjoint),
        case!(finishing_enqueues_its_delivery_in_the_same_transaction),
        case!(each_due_delivery_goes_to_one_worker_at_a_time),
        case!(a_claim_with_records_hands_each_delivery_its_record_once),
        case!(a_webhook_dedupe_key_is_recorded_once),
        case!(pending_webhooks_are_bounded_and_applied_on_add),
        case!(what_clients_can_fill_is_bounded_in_count_and_bytes),
        case!(many_attempts_are_recorded_in_one_round_and_records_read_together),
        case!(many_records_are_read_in_the_order_asked_each_once),
        case!(accepting_a_webhook_records_and_routes_it_in_one_transaction),
        case!(leased_webhooks_are_those_of_held_tracking_sessions_since_a_time),
        case!(listeners_hear_of_webhooks_for_tracking_sessions_from_others),
        case!(paging_skips_and_repeats_nothing_while_rows_are_added),
        case!(cancelling_stops_claims_finishes_and_deliveries),
        case!(tracker_state_is_saved_and_loaded),
        case!(schema_versions_are_recorded_and_newer_ones_refused),
    ]
}

fn main() {
    let args = Arguments::from_args();
    let postgres = support::postgres_url();
    if postgres.is_none() {
        eprintln!(
            "conformance: the PostgreSQL half is SKIPPED (set BANKCONNECT_TEST_POSTGRES, e.g. postgres://postgres@127.0.0.1:5432/test)"
        );
    }
    let mut trials = Vec::new();
    for (name, case) in cases() {
        trials.push(Trial::test(format!("sqlite::{name}"), move || {
            support::run(Backend::Sqlite, case);
            Ok(())
        }));
        let skip = postgres.is_none();
        trials.push(
            Trial::test(format!("postgres::{name}"), move || {
                support::run(Backend::Postgres, case);
                Ok(())
            })
            .with_ignored_flag(skip),
        );
    }
    trials.push(
        Trial::test(
            "both_engines_migrations_yield_the_same_tables_columns_and_indexes",
            || {
                support::block_on(async {
                    let sqlite = Fixture::new(Backend::Sqlite).await;
                    let postgres = Fixture::new(Backend::Postgres).await;
                    drop(sqlite.open().await);
                    drop(postgres.open().await);
                    let lite = sqlite_shape(&sqlite.url);
                    let pg = postgres_shape(&postgres.url).await;
                    assert_eq!(lite, pg, "the engines' schemas differ");
                    assert!(lite.iter().any(|line| line == "index sessions_by_owner"));
                });
                Ok(())
            },
        )
        .with_ignored_flag(postgres.is_none()),
    );
    trials.push(Trial::test(
        "sqlite_works_on_a_current_thread_runtime",
        || {
            // The store blocks in place on multi-threaded runtimes; elsewhere it uses the blocking pool.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let fixture = Fixture::new(Backend::Sqlite).await;
                let store = fixture.open().await;
                store
                    .add_session(NewSession::new(sid("ct")), at(0))
                    .await
                    .unwrap();
                assert!(store.get_session(&sid("ct")).await.unwrap().is_some());
            });
            Ok(())
        },
    ));
    trials.push(Trial::test(
        "bad_urls_name_the_accepted_forms_and_hide_passwords",
        || {
            support::block_on(async {
                for url in [
                    "mysql://root@localhost/db",
                    "",
                    "sqlite:",
                    "bankconnect.db",
                    "sqlite:x.db?mode=ro",
                ] {
                    let err = Store::open(url).await.unwrap_err();
                    assert!(matches!(err, StoreError::BadUrl(_)), "{url}: {err}");
                    assert!(err.to_string().contains("sqlite:PATH"), "{err}");
                }
                let url = "postgres://alice:hunter2secret@127.0.0.1:1/lenders";
                let err = Store::open(url).await.unwrap_err();
                let text = format!("{err} {err:?}");
                assert!(!text.contains("hunter2secret"), "{text}");
                assert!(text.contains("127.0.0.1:1/lenders"), "{text}");
            });
            Ok(())
        },
    ));
    libtest_mimic::run(&args, trials).exit();
}

/// `table T`, `column T.C` and `index I` lines of a SQLite store, sorted.
fn sqlite_shape(url: &str) -> Vec<String> {
    let path = url.trim_start_matches("sqlite:");
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut lines = Vec::new();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for table in &tables {
        lines.push(format!("table {table}"));
        let columns: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info(?1)")
            .unwrap()
            .query_map([table], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        lines.extend(columns.into_iter().map(|c| format!("column {table}.{c}")));
    }
    let indexes: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex_%'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    lines.extend(indexes.into_iter().map(|i| format!("index {i}")));
    lines.sort();
    lines
}

/// The same lines for a PostgreSQL store (its own schema); primary and unique keys, which
/// SQLite makes implicitly, are left out on both sides.
async fn postgres_shape(url: &str) -> Vec<String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut lines = Vec::new();
    for row in client
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()",
            &[],
        )
        .await
        .unwrap()
    {
        let table: String = row.get(0);
        lines.push(format!("table {table}"));
    }
    for row in client
        .query(
            "SELECT table_name::text, column_name::text FROM information_schema.columns WHERE table_schema = current_schema()",
            &[],
        )
        .await
        .unwrap()
    {
        let (table, column): (String, String) = (row.get(0), row.get(1));
        lines.push(format!("column {table}.{column}"));
    }
    for row in client
        .query(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema() \
             AND indexname NOT LIKE '%_pkey' AND indexname NOT LIKE '%_key'",
            &[],
        )
        .await
        .unwrap()
    {
        let index: String = row.get(0);
        lines.push(format!("index {index}"));
    }
    lines.sort();
    lines
}
