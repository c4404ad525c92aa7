//! Conformance cases of the operators' calls (docs/operations.md), on both engines.

use std::time::Duration;

use bankconnect_store::{
    Attempt, AttemptDetail, DeliveryState, NewEvent, NewSession, Order, PollRequest, Purge,
    Redelivery, Retrack, Route, SessionFilter, SessionState, Store, FIRST_KEPT, LAST_KEPT,
};
use serde_json::{json, Value};

use super::{at, ids, sid, Fixture};

fn outcome(id: &str, kind: &str, codes: &[&str]) -> Value {
    let accounts: Vec<Value> = codes.iter().map(|c| json!({"error_code": c})).collect();
    json!({"session_id": id, "outcome": kind, "notified_by": "poll", "accounts": accounts})
}

async fn kinds(store: &Store, id: &str) -> Vec<String> {
    let page = store
        .session_events(&sid(id), 1000, None)
        .await
        .unwrap()
        .unwrap();
    page.events.into_iter().map(|e| e.kind).collect()
}

/// Records one attempt of a pending or failing delivery with `result`.
async fn attempt(store: &Store, id: &str, result: Attempt, now: u64) {
    let record = store.get_session(&sid(id)).await.unwrap().unwrap();
    assert!(
        matches!(
            record.delivery.state,
            DeliveryState::Pending | DeliveryState::Failing
        ),
        "{id}: {:?}",
        record.delivery
    );
    let detail = AttemptDetail::new(
        Some(503),
        Some("http_5xx".into()),
        Duration::from_millis(12),
        Some(b"busy\n\x1b[0m"),
    );
    store
        .record_attempts(vec![(sid(id), result, detail)], at(now))
        .await
        .unwrap();
}

pub(crate) async fn history_is_written_with_each_change_and_bounded(fx: Fixture) {
    let store = fx.open().await.with_replica("r1");
    store
        .add_session(NewSession::new(sid("h1")).with_reference("loan-42"), at(0))
        .await
        .unwrap();
    let hint = json!({"session_id": "h1", "event_name": "ENRICHMENT_NOTIFICATION", "accounts": [], "authenticated": true});
    for _ in 0..2 {
        store
            .accept_webhook(
                "k1",
                Some(&sid("h1")),
                &hint,
                Route::Hint {
                    authenticated: true,
                },
                "r1",
                at(5),
            )
            .await
            .unwrap();
    }
    store
        .finish_session_delivering_at(
            &sid("h1"),
            &outcome("h1", "completed", &[]),
            "msg_h1".into(),
            at(10),
            at(10),
        )
        .await
        .unwrap();
    attempt(
        &store,
        "h1",
        Attempt::Failed {
            error: "HTTP 503".into(),
            retry_at: at(20),
        },
        10,
    )
    .await;
    attempt(&store, "h1", Attempt::Delivered, 20).await;
    assert_eq!(
        kinds(&store, "h1").await,
        [
            "added",
            "webhook",
            "webhook",
            "outcome",
            "delivery_attempt",
            "delivery_attempt",
            "delivered"
        ]
    );
    let page = store
        .session_events(&sid("h1"), 1000, None)
        .await
        .unwrap()
        .unwrap();
    let e = &page.events;
    assert_eq!(e[0].fields["reference"], "loan-42");
    assert_eq!(e[0].replica.as_deref(), Some("r1"));
    assert_eq!(e[0].at, at(0));
    assert_eq!(e[1].fields["event_name"], "ENRICHMENT_NOTIFICATION");
    assert_eq!(e[1].fields["authenticated"], true);
    assert_eq!(e[1].fields["duplicate"], false);
    assert_eq!(e[2].fields["duplicate"], true);
    assert_eq!(e[3].fields["outcome"], "completed");
    assert_eq!(e[4].fields["attempt"], 1);
    assert_eq!(e[4].fields["status"], 503);
    assert_eq!(e[4].fields["error"], "http_5xx");
    assert_eq!(e[4].fields["duration_ms"], 12);
    // Bytes from the lender's back end are kept as escaped text.
    assert_eq!(e[4].fields["response_excerpt"], "busy\\n\\u{1b}[0m");
    assert!(e[4].fields["next_attempt_at"].is_string());
    assert_eq!(e[6].fields["attempts"], 2);
    assert_eq!(page.dropped, 0);
    assert!(page.next_cursor.is_none());
    // Pages follow one another.
    let first = store
        .session_events(&sid("h1"), 3, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.events.len(), 3);
    let rest = store
        .session_events(&sid("h1"), 100, first.next_cursor.as_deref())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rest.events[0].seq, 4);
    assert_eq!(rest.events.len(), 4);
    assert!(store
        .session_events(&sid("nope"), 10, None)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .session_events(&sid("h1"), 10, Some("zz"))
        .await
        .is_err());

    // Bounded: the first 20 and the last 200 stay, the count of those between is said.
    store
        .add_session(NewSession::new(sid("h2")), at(0))
        .await
        .unwrap();
    let many: Vec<_> = (0..300)
        .map(|n| {
            (
                sid("h2"),
                NewEvent::progress(Some("PROCESSING"), json!({}), n),
            )
        })
        .collect();
    assert_eq!(store.append_events(many, at(1)).await.unwrap(), 300);
    let page = store
        .session_events(&sid("h2"), 1000, None)
        .await
        .unwrap()
        .unwrap();
    let kept = usize::try_from(FIRST_KEPT + LAST_KEPT).unwrap();
    assert_eq!(page.events.len(), kept);
    assert_eq!(page.dropped, 301 - (FIRST_KEPT + LAST_KEPT));
    assert_eq!(page.events[19].seq, 20);
    assert_eq!(page.events[20].seq, 301 - LAST_KEPT + 1);
    assert_eq!(page.events.last().unwrap().seq, 301);
    // An event for an unknown session is not written.
    assert_eq!(
        store
            .append_events(
                vec![(sid("ghost"), NewEvent::api_error("X", None, "m", 1))],
                at(1)
            )
            .await
            .unwrap(),
        0
    );
}

pub(crate) async fn filters_select_by_each_field_in_either_order(fx: Fixture) {
    let store = fx.open().await;
    for (n, (id, reference)) in [
        ("a1", "loan-1"),
        ("a2", "loan-2"),
        ("b3", "loan-1"),
        ("b4", "other"),
    ]
    .into_iter()
    .enumerate()
    {
        store
            .add_session(
                NewSession::new(sid(id)).with_reference(reference),
                at(u64::try_from(n).unwrap() * 100),
            )
            .await
            .unwrap();
    }
    store
        .finish_session_delivering_at(
            &sid("a1"),
            &outcome("a1", "completed_with_failures", &["INCOMPLETE_MONTHS"]),
            "msg_a1".into(),
            at(500),
            at(500),
        )
        .await
        .unwrap();
    store
        .finish_session(&sid("a2"), &outcome("a2", "timed_out", &[]), None, at(500))
        .await
        .unwrap();
    store.cancel_session(&sid("b4"), at(600)).await.unwrap();
    let list = |filter: SessionFilter| {
        let store = store.clone();
        async move {
            store
                .list_filtered(filter, 10, None)
                .await
                .unwrap()
                .sessions
                .into_iter()
                .map(|r| r.session_id.as_str().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let mut f = SessionFilter::all();
    f.reference = Some("loan-1".into());
    assert_eq!(list(f).await, ["a1", "b3"]);
    let mut f = SessionFilter::all();
    f.prefix = Some("b".into());
    assert_eq!(list(f).await, ["b3", "b4"]);
    let mut f = SessionFilter::all();
    f.prefix = Some("loan-".into());
    assert_eq!(list(f).await, ["a1", "a2", "b3"]);
    let mut f = SessionFilter::all();
    f.outcome = Some("timed_out".into());
    assert_eq!(list(f).await, ["a2"]);
    let mut f = SessionFilter::all();
    f.error_code = Some("INCOMPLETE_MONTHS".into());
    assert_eq!(list(f).await, ["a1"]);
    let mut f = SessionFilter::all();
    f.delivery = Some(DeliveryState::Pending);
    assert_eq!(list(f).await, ["a1"]);
    let mut f = SessionFilter::all();
    f.delivery = Some(DeliveryState::None);
    assert_eq!(list(f).await, ["a2", "b3", "b4"]);
    let mut f = SessionFilter::in_state(Some(SessionState::Cancelled));
    f.prefix = Some("b".into());
    assert_eq!(list(f).await, ["b4"]);
    let mut f = SessionFilter::all();
    f.added_after = Some(at(0));
    f.added_before = Some(at(300));
    assert_eq!(list(f).await, ["a2", "b3"]);
    // Newest first, paged.
    let mut f = SessionFilter::all();
    f.order = Order::Desc;
    let page = store.list_filtered(f.clone(), 3, None).await.unwrap();
    let got: Vec<_> = page
        .sessions
        .iter()
        .map(|r| r.session_id.as_str())
        .collect();
    assert_eq!(got, ["b4", "b3", "a2"]);
    let next = store
        .list_filtered(f.clone(), 3, page.next_cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(next.sessions.len(), 1);
    assert_eq!(next.sessions[0].session_id, sid("a1"));
    assert!(next.next_cursor.is_none());
    // A cursor of one order is refused by the other.
    let asc = SessionFilter::all();
    assert!(store
        .list_filtered(asc, 3, page.next_cursor.as_deref())
        .await
        .is_err());

    let stats = store.stats(at(0)).await.unwrap();
    assert_eq!(
        (
            stats.sessions.tracking,
            stats.sessions.finished,
            stats.sessions.cancelled
        ),
        (1, 2, 1)
    );
    assert_eq!((stats.deliveries.none, stats.deliveries.pending), (3, 1));
    assert_eq!(
        stats.outcomes,
        [
            ("completed_with_failures".to_owned(), 1),
            ("timed_out".to_owned(), 1)
        ]
    );
    assert_eq!(stats.top_error_codes, [("INCOMPLETE_MONTHS".to_owned(), 1)]);
    assert_eq!(stats.oldest_tracking_added_at, Some(at(200)));
    assert_eq!(stats.oldest_undelivered_at, Some(at(500)));
    assert!(store.stats(at(501)).await.unwrap().outcomes.is_empty());
}

pub(crate) async fn redelivery_keeps_the_webhook_id_and_recovery_requeues_a_window(fx: Fixture) {
    let store = fx.open().await;
    store.add_sessions(ids(4, "r"), at(0)).await.unwrap();
    assert_eq!(
        store
            .redeliver(&sid("r0000"), false, "msg_r0000", at(1))
            .await
            .unwrap(),
        Redelivery::NotFinished
    );
    assert_eq!(
        store
            .redeliver(&sid("zz"), false, "msg_zz", at(1))
            .await
            .unwrap(),
        Redelivery::Unknown
    );
    for (n, id) in ["r0000", "r0001", "r0002"].into_iter().enumerate() {
        let t = 100 * (u64::try_from(n).unwrap() + 1);
        store
            .finish_session_delivering_at(
                &sid(id),
                &outcome(id, "completed", &[]),
                format!("msg_{id}"),
                at(t),
                at(t),
            )
            .await
            .unwrap();
    }
    attempt(&store, "r0000", Attempt::Delivered, 400).await;
    for id in ["r0001", "r0002"] {
        attempt(
            &store,
            id,
            Attempt::GaveUp {
                error: "HTTP 500".into(),
            },
            400,
        )
        .await;
    }
    assert_eq!(
        store
            .redeliver(&sid("r0000"), false, "msg_r0000", at(500))
            .await
            .unwrap(),
        Redelivery::AlreadyDelivered
    );
    let Redelivery::Requeued(record) = store
        .redeliver(&sid("r0000"), true, "msg_r0000", at(500))
        .await
        .unwrap()
    else {
        panic!("not requeued");
    };
    assert_eq!(record.delivery.state, DeliveryState::Pending);
    assert_eq!(record.delivery.attempts, 0);
    assert_eq!(record.delivery.webhook_id.as_deref(), Some("msg_r0000"));
    assert_eq!(record.delivery.next_attempt_at, Some(at(500)));
    assert!(kinds(&store, "r0000")
        .await
        .ends_with(&["redeliver".to_owned()]));
    // A session finished with no delivery gets its first one.
    store
        .finish_session(
            &sid("r0003"),
            &outcome("r0003", "completed", &[]),
            None,
            at(450),
        )
        .await
        .unwrap();
    let Redelivery::Requeued(record) = store
        .redeliver(&sid("r0003"), false, "msg_r0003", at(500))
        .await
        .unwrap()
    else {
        panic!("not requeued");
    };
    assert_eq!(record.delivery.webhook_id.as_deref(), Some("msg_r0003"));

    // Recovery: given up in [since, until); a dry run only counts.
    let given_up = [DeliveryState::GivenUp];
    let dry = store
        .recover_deliveries(at(0), at(250), &given_up, true, at(600))
        .await
        .unwrap();
    assert_eq!((dry.matched, dry.requeued), (1, 0));
    let again = store.get_session(&sid("r0001")).await.unwrap().unwrap();
    assert_eq!(again.delivery.state, DeliveryState::GivenUp);
    let done = store
        .recover_deliveries(at(0), at(1000), &given_up, false, at(600))
        .await
        .unwrap();
    assert_eq!((done.matched, done.requeued), (2, 2));
    for id in ["r0001", "r0002"] {
        let record = store.get_session(&sid(id)).await.unwrap().unwrap();
        assert_eq!(record.delivery.state, DeliveryState::Pending);
        assert_eq!(record.delivery.webhook_id, Some(format!("msg_{id}")));
    }
    let page = store
        .session_events(&sid("r0001"), 100, None)
        .await
        .unwrap()
        .unwrap();
    let last = page.events.last().unwrap();
    assert_eq!(
        (last.kind.as_str(), &last.fields["by"]),
        ("redeliver", &json!("recover"))
    );
}

pub(crate) async fn pausing_is_shared_and_stops_claims_and_counting(fx: Fixture) {
    let one = fx.open().await;
    let two = fx.open().await;
    one.add_sessions(ids(1, "p"), at(0)).await.unwrap();
    one.finish_session_delivering_at(
        &sid("p0000"),
        &outcome("p0000", "completed", &[]),
        "msg_p0000".into(),
        at(1),
        at(1),
    )
    .await
    .unwrap();
    let claimed = one
        .claim_deliveries("w1", at(2), Duration::from_secs(20), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    two.set_delivery_paused(true).await.unwrap();
    assert!(one.delivery_overview().await.unwrap().paused);
    // An attempt in flight when the pause came fails: not counted, nothing gives up.
    let detail = AttemptDetail::default();
    one.record_attempts(
        vec![(
            sid("p0000"),
            Attempt::GaveUp {
                error: "HTTP 500".into(),
            },
            detail,
        )],
        at(3),
    )
    .await
    .unwrap();
    let record = one.get_session(&sid("p0000")).await.unwrap().unwrap();
    assert_eq!(
        (record.delivery.state, record.delivery.attempts),
        (DeliveryState::Pending, 0)
    );
    assert!(one
        .claim_deliveries("w1", at(50), Duration::from_secs(20), 10)
        .await
        .unwrap()
        .is_empty());
    two.set_delivery_paused(false).await.unwrap();
    attempt(
        &one,
        "p0000",
        Attempt::Failed {
            error: "HTTP 500".into(),
            retry_at: at(100),
        },
        60,
    )
    .await;
    let overview = one.delivery_overview().await.unwrap();
    assert!(!overview.paused);
    assert_eq!(overview.counts.failing, 1);
    assert_eq!(overview.consecutive_failures, 1);
    assert_eq!(overview.last_failure.as_ref().map(|f| f.0), Some(at(60)));
    assert_eq!(overview.oldest_undelivered_at, Some(at(1)));
    attempt(&one, "p0000", Attempt::Delivered, 100).await;
    let overview = one.delivery_overview().await.unwrap();
    assert_eq!(
        (overview.consecutive_failures, overview.last_success_at),
        (0, Some(at(100)))
    );
    assert_eq!(overview.counts.delivered, 1);
}

pub(crate) async fn retracking_tracks_again_with_a_new_webhook_id(fx: Fixture) {
    let store = fx.open().await;
    store.add_sessions(ids(1, "t"), at(0)).await.unwrap();
    assert_eq!(
        store.retrack(&sid("t0000"), at(1), None).await.unwrap(),
        Retrack::Tracking
    );
    assert_eq!(
        store.retrack(&sid("zz"), at(1), None).await.unwrap(),
        Retrack::Unknown
    );
    store
        .finish_session_delivering_at(
            &sid("t0000"),
            &outcome("t0000", "completed", &["X"]),
            "msg_t0000".into(),
            at(10),
            at(10),
        )
        .await
        .unwrap();
    attempt(&store, "t0000", Attempt::Delivered, 11).await;
    let Retrack::Retracked(record) = store
        .retrack(&sid("t0000"), at(100), Some(("r1", at(130))))
        .await
        .unwrap()
    else {
        panic!("not retracked");
    };
    assert_eq!(record.state, SessionState::Tracking);
    assert_eq!(record.outcome, None);
    assert_eq!(record.delivery.state, DeliveryState::None);
    assert_eq!(record.tracking_since, at(100));
    assert_eq!(record.added_at, at(0));
    assert_eq!(record.lease.as_ref().map(|l| l.owner.as_str()), Some("r1"));
    let mut f = SessionFilter::all();
    f.error_code = Some("X".into());
    assert!(store
        .list_filtered(f, 10, None)
        .await
        .unwrap()
        .sessions
        .is_empty());
    store
        .finish_session_delivering_at(
            &sid("t0000"),
            &outcome("t0000", "completed", &[]),
            "msg_t0000".into(),
            at(200),
            at(200),
        )
        .await
        .unwrap();
    let record = store.get_session(&sid("t0000")).await.unwrap().unwrap();
    assert_eq!(record.delivery.state, DeliveryState::Pending);
    assert_eq!(record.delivery.webhook_id.as_deref(), Some("msg_t0000_2"));
    let kinds = kinds(&store, "t0000").await;
    assert_eq!(kinds.iter().filter(|k| *k == "outcome").count(), 2);
}

pub(crate) async fn polls_asked_for_are_recorded_and_announced(fx: Fixture) {
    let store = fx.open().await.with_replica("asker");
    let mut notices = store.listen_webhooks("listener");
    store.add_sessions(ids(2, "q"), at(0)).await.unwrap();
    store.cancel_session(&sid("q0001"), at(1)).await.unwrap();
    assert_eq!(
        store.request_poll(&sid("q0001"), at(2)).await.unwrap(),
        PollRequest::NotTracking
    );
    assert_eq!(
        store.request_poll(&sid("zz"), at(2)).await.unwrap(),
        PollRequest::Unknown
    );
    assert!(matches!(
        store.request_poll(&sid("q0000"), at(2)).await.unwrap(),
        PollRequest::Requested(_)
    ));
    assert!(kinds(&store, "q0000")
        .await
        .ends_with(&["poll_requested".to_owned()]));
    assert!(kinds(&store, "q0001")
        .await
        .ends_with(&["cancelled".to_owned()]));
    if let Some(notices) = notices.as_mut() {
        loop {
            match super::next(notices).await {
                bankconnect_store::WebhookNotice::PollRequested(session) => {
                    assert_eq!(session, sid("q0000"));
                    break;
                }
                _ => continue,
            }
        }
    }
}

pub(crate) async fn purging_and_retention_never_touch_what_is_live(fx: Fixture) {
    let store = fx.open().await;
    store.add_sessions(ids(7, "x"), at(0)).await.unwrap();
    let finish = |id: &'static str, deliver: bool, t: u64| {
        let store = store.clone();
        async move {
            let o = outcome(id, "completed", &["C"]);
            if deliver {
                store
                    .finish_session_delivering_at(&sid(id), &o, format!("msg_{id}"), at(t), at(t))
                    .await
                    .unwrap();
            } else {
                store
                    .finish_session(&sid(id), &o, None, at(t))
                    .await
                    .unwrap();
            }
        }
    };
    finish("x0000", true, 10).await; // delivered: goes
    finish("x0001", true, 10).await; // pending: stays
    finish("x0002", true, 10).await; // given up: goes
    finish("x0003", false, 10).await; // no delivery: goes
    store.cancel_session(&sid("x0004"), at(10)).await.unwrap(); // cancelled: goes
    finish("x0005", false, 5_000).await; // recent: stays
                                         // x0006 tracking: stays.
    attempt(&store, "x0000", Attempt::Delivered, 20).await;
    store
        .record_attempts(
            vec![(
                sid("x0002"),
                Attempt::GaveUp { error: "e".into() },
                AttemptDetail::default(),
            )],
            at(20),
        )
        .await
        .unwrap();
    store
        .record_attempts(
            vec![(
                sid("x0001"),
                Attempt::Failed {
                    error: "e".into(),
                    retry_at: at(10_000),
                },
                AttemptDetail::default(),
            )],
            at(20),
        )
        .await
        .unwrap();
    // Batches of at most the size asked.
    let mut rounds = Vec::new();
    loop {
        let pruned = store.prune_sessions(at(1_000), 2).await.unwrap();
        assert!(!pruned.skipped);
        if pruned.sessions == 0 {
            break;
        }
        rounds.push(pruned.sessions);
    }
    assert_eq!(rounds, [2, 2]);
    let left: Vec<String> = store
        .list_filtered(SessionFilter::all(), 100, None)
        .await
        .unwrap()
        .sessions
        .into_iter()
        .map(|r| r.session_id.as_str().to_owned())
        .collect();
    assert_eq!(left, ["x0001", "x0005", "x0006"]);
    assert!(store
        .session_events(&sid("x0000"), 10, None)
        .await
        .unwrap()
        .is_none());
    let stats = store.stats(at(0)).await.unwrap();
    assert_eq!(stats.top_error_codes, [("C".to_owned(), 2)]);

    // Purge: now, whatever its age; never a tracking session.
    assert_eq!(
        store.purge_session(&sid("x0006")).await.unwrap(),
        Purge::Tracking
    );
    assert_eq!(
        store.purge_session(&sid("x0001")).await.unwrap(),
        Purge::Purged
    );
    assert_eq!(
        store.purge_session(&sid("x0001")).await.unwrap(),
        Purge::Unknown
    );
    assert!(store.get_session(&sid("x0001")).await.unwrap().is_none());
    assert!(store
        .claim_deliveries("w", at(20_000), Duration::from_secs(20), 10)
        .await
        .unwrap()
        .is_empty());
}

/// The counts `stats` reads (kept by the engine as rows change) against what the rows say,
/// through adding, finishing across bucket edges, cancelling, retracking, delivery, purging and
/// pruning; windows that start inside a bucket count its tail exactly.
pub(crate) async fn counts_follow_every_change_and_windows_are_exact(fx: Fixture) {
    let store = fx.open().await;
    store.add_sessions(ids(6, "c"), at(0)).await.unwrap();
    let finish = |id: &'static str, kind: &'static str, codes: &'static [&'static str], ms: u64| {
        let store = store.clone();
        async move {
            store
                .finish_session_delivering_at(
                    &sid(id),
                    &outcome(id, kind, codes),
                    format!("msg_{id}"),
                    at(ms),
                    at(ms),
                )
                .await
                .unwrap();
        }
    };
    // Buckets are 5 minutes (300 000 ms) wide and `at(0)` starts one.
    finish("c0000", "completed", &["X"], 1_000).await;
    finish("c0001", "completed_with_failures", &["X", "Y"], 299_999).await;
    finish("c0002", "timed_out", &[], 300_000).await;
    finish("c0003", "completed", &["Y"], 650_000).await;
    store
        .cancel_session(&sid("c0004"), at(700_000))
        .await
        .unwrap();
    let named = |pairs: &[(&str, u64)]| -> Vec<(String, u64)> {
        pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
    };

    let stats = store.stats(at(0)).await.unwrap();
    assert_eq!(
        (
            stats.sessions.tracking,
            stats.sessions.finished,
            stats.sessions.cancelled
        ),
        (1, 4, 1)
    );
    assert_eq!(
        (
            stats.deliveries.none,
            stats.deliveries.pending,
            stats.deliveries.delivered
        ),
        (2, 4, 0)
    );
    assert_eq!(
        stats.outcomes,
        named(&[
            ("completed", 2),
            ("completed_with_failures", 1),
            ("timed_out", 1)
        ])
    );
    assert_eq!(stats.top_error_codes, named(&[("X", 2), ("Y", 2)]));
    // Starting inside the first bucket: its tail from the rows, the rest from the buckets.
    let stats = store.stats(at(1_001)).await.unwrap();
    assert_eq!(
        stats.outcomes,
        named(&[
            ("completed", 1),
            ("completed_with_failures", 1),
            ("timed_out", 1)
        ])
    );
    assert_eq!(stats.top_error_codes, named(&[("Y", 2), ("X", 1)]));
    let stats = store.stats(at(300_001)).await.unwrap();
    assert_eq!(stats.outcomes, named(&[("completed", 1)]));
    assert_eq!(stats.top_error_codes, named(&[("Y", 1)]));
    assert!(store.stats(at(650_001)).await.unwrap().outcomes.is_empty());

    // Delivered, then retracked: the outcome and its codes leave the counts.
    attempt(&store, "c0003", Attempt::Delivered, 650_010).await;
    let stats = store.stats(at(0)).await.unwrap();
    assert_eq!(
        (stats.deliveries.pending, stats.deliveries.delivered),
        (3, 1)
    );
    store
        .retrack(&sid("c0003"), at(700_001), None)
        .await
        .unwrap();
    let stats = store.stats(at(0)).await.unwrap();
    assert_eq!((stats.sessions.tracking, stats.sessions.finished), (2, 3));
    assert_eq!(
        (
            stats.deliveries.none,
            stats.deliveries.pending,
            stats.deliveries.delivered
        ),
        (3, 3, 0)
    );
    assert_eq!(
        stats.outcomes,
        named(&[
            ("completed", 1),
            ("completed_with_failures", 1),
            ("timed_out", 1)
        ])
    );
    assert_eq!(stats.top_error_codes, named(&[("X", 2), ("Y", 1)]));
    // Finished again later, in another bucket.
    finish("c0003", "completed_with_failures", &["Z"], 900_000).await;
    let stats = store.stats(at(600_000)).await.unwrap();
    assert_eq!(stats.outcomes, named(&[("completed_with_failures", 1)]));
    assert_eq!(stats.top_error_codes, named(&[("Z", 1)]));

    // Purged: a finished session and everything counted of it.
    assert_eq!(
        store.purge_session(&sid("c0000")).await.unwrap(),
        Purge::Purged
    );
    let stats = store.stats(at(0)).await.unwrap();
    assert_eq!(stats.sessions.finished, 3);
    assert_eq!(stats.deliveries.pending, 3);
    assert_eq!(
        stats.outcomes,
        named(&[("completed_with_failures", 2), ("timed_out", 1)])
    );
    assert_eq!(
        stats.top_error_codes,
        named(&[("X", 1), ("Y", 1), ("Z", 1)])
    );

    // Pruned: the cancelled session (finished ones wait for their delivery).
    let pruned = store.prune_sessions(at(800_000), 100).await.unwrap();
    assert_eq!(pruned.sessions, 1, "{pruned:?}");
    let stats = store.stats(at(0)).await.unwrap();
    assert_eq!(
        (
            stats.sessions.tracking,
            stats.sessions.finished,
            stats.sessions.cancelled
        ),
        (1, 3, 0)
    );
    assert_eq!((stats.deliveries.none, stats.deliveries.pending), (1, 3));
    // The engine's own state counter agrees with the stats.
    let counted = store.count_sessions().await.unwrap();
    assert_eq!(
        (counted.tracking, counted.finished, counted.cancelled),
        (1, 3, 0)
    );
}

/// The deliveries per state as the stats read them, against a count of the records.
async fn delivery_counts_agree(store: &Store, ids: &[&str], want: (u64, u64, u64, u64)) {
    let stats = store.stats(at(0)).await.unwrap();
    let counted = (
        stats.deliveries.pending,
        stats.deliveries.failing,
        stats.deliveries.delivered,
        stats.deliveries.given_up,
    );
    assert_eq!(counted, want, "the stats");
    let mut records = (0, 0, 0, 0);
    for id in ids {
        match store
            .get_session(&sid(id))
            .await
            .unwrap()
            .unwrap()
            .delivery
            .state
        {
            DeliveryState::Pending => records.0 += 1,
            DeliveryState::Failing => records.1 += 1,
            DeliveryState::Delivered => records.2 += 1,
            DeliveryState::GivenUp => records.3 += 1,
            _ => {}
        }
    }
    assert_eq!(records, want, "the records");
}

pub(crate) async fn delivery_counts_follow_every_attempt_redelivery_and_refinish(fx: Fixture) {
    let store = fx.open().await;
    store.add_sessions(ids(3, "k"), at(0)).await.unwrap();
    let all = ["k0000", "k0001", "k0002"];
    for id in all {
        store
            .finish_session_delivering_at(
                &sid(id),
                &outcome(id, "completed", &[]),
                format!("msg_{id}"),
                at(1),
                at(1),
            )
            .await
            .unwrap();
    }
    delivery_counts_agree(&store, &all, (3, 0, 0, 0)).await;
    let failed = || Attempt::Failed {
        error: "HTTP 503".into(),
        retry_at: at(20),
    };
    attempt(&store, "k0000", failed(), 10).await;
    attempt(
        &store,
        "k0001",
        Attempt::GaveUp {
            error: "HTTP 500".into(),
        },
        10,
    )
    .await;
    attempt(&store, "k0002", Attempt::Delivered, 10).await;
    delivery_counts_agree(&store, &all, (0, 1, 1, 1)).await;
    // Failing again is no move.
    attempt(&store, "k0000", failed(), 20).await;
    delivery_counts_agree(&store, &all, (0, 1, 1, 1)).await;
    // Requeued by an operator, from given up and (forced) from delivered.
    assert!(matches!(
        store
            .redeliver(&sid("k0001"), false, "msg_k0001", at(30))
            .await
            .unwrap(),
        Redelivery::Requeued(_)
    ));
    assert!(matches!(
        store
            .redeliver(&sid("k0002"), true, "msg_k0002", at(30))
            .await
            .unwrap(),
        Redelivery::Requeued(_)
    ));
    delivery_counts_agree(&store, &all, (2, 1, 0, 0)).await;
    attempt(&store, "k0000", Attempt::Delivered, 40).await;
    attempt(&store, "k0001", Attempt::Delivered, 40).await;
    delivery_counts_agree(&store, &all, (1, 0, 2, 0)).await;
    // Retracked and finished again: a new delivery replaces the delivered one.
    store.retrack(&sid("k0000"), at(50), None).await.unwrap();
    store
        .finish_session_delivering_at(
            &sid("k0000"),
            &outcome("k0000", "timed_out", &[]),
            "msg_k0000".to_owned(),
            at(60),
            at(60),
        )
        .await
        .unwrap();
    delivery_counts_agree(&store, &all, (2, 0, 1, 0)).await;
}
