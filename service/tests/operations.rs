//! The operators' endpoints in-process (docs/operations.md): roles, a session's history,
//! finding sessions, redelivery and recovery, the pause, retrack, poll now, purge and
//! retention, over a SQLite temp file, the simulator and a receiver on loopback.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::Router;
use bankconnect_service::{DeliveryConfig, DeliverySchedule, ServiceConfig};
use bankconnect_sim::SessionScript;
use serde_json::{json, Value};

mod support;
use support::*;

/// A receiver on loopback that answers 503 with a body while `down`, 200 otherwise, noting
/// each delivery's `webhook-id`.
struct Receiver {
    url: String,
    down: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl Receiver {
    async fn start() -> Self {
        let down = Arc::new(AtomicBool::new(true));
        let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let (is_down, log) = (Arc::clone(&down), Arc::clone(&seen));
        let app = Router::new().route(
            "/in",
            axum::routing::post(move |headers: http::HeaderMap, body: String| {
                let (is_down, log) = (Arc::clone(&is_down), Arc::clone(&log));
                async move {
                    let value: Value = serde_json::from_str(&body).unwrap_or_default();
                    let id = value["data"]["session_id"]
                        .as_str()
                        .unwrap_or("?")
                        .to_owned();
                    let webhook_id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("?")
                        .to_owned();
                    log.lock().unwrap().push((id, webhook_id));
                    if is_down.load(Ordering::SeqCst) {
                        (http::StatusCode::SERVICE_UNAVAILABLE, "down\n\u{1b}[1m")
                    } else {
                        (http::StatusCode::OK, "ok")
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{addr}/in?token=lender-secret"),
            down,
            seen,
        }
    }

    fn deliveries_of(&self, id: &str) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, _)| s == id)
            .map(|(_, w)| w.clone())
            .collect()
    }
}

const ADMIN: &str = "admin-token-0123456789";
const READER: &str = "reader-token-0123456789";

fn with_token(mut request: http::Request<Body>, token: &str) -> http::Request<Body> {
    request.headers_mut().insert(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    request
}

fn empty_post(path: &str) -> http::Request<Body> {
    http::Request::post(path).body(Body::empty()).unwrap()
}

fn delete(path: &str) -> http::Request<Body> {
    http::Request::delete(path).body(Body::empty()).unwrap()
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn delivery_state(r: &Router, id: &str) -> String {
    let (_, _, record) = call(r, get(&format!("/v1/sessions/{id}"))).await;
    record["delivery"]["state"]
        .as_str()
        .unwrap_or("?")
        .to_owned()
}

async fn kinds(r: &Router, id: &str) -> Vec<String> {
    let (status, _, page) = call(r, get(&format!("/v1/sessions/{id}/events?limit=1000"))).await;
    assert_eq!(status, 200, "{page}");
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_only_token_reads_and_changes_nothing() {
    let config = ServiceConfig {
        api_token: Some(ADMIN.into()),
        read_token: Some(READER.into()),
        ..fast()
    };
    let sessions = vec![SessionScript::new("ro").complete_after(Duration::from_secs(600))];
    let run = start("roles", sessions, config).await;
    let r = &run.router;
    let (status, _, _) = call(
        r,
        with_token(post("/v1/sessions", r#"{"session_id": "ro"}"#), ADMIN),
    )
    .await;
    assert_eq!(status, 202);
    for path in [
        "/v1/sessions",
        "/v1/sessions/ro",
        "/v1/sessions/ro/events",
        "/v1/stats",
        "/v1/delivery",
    ] {
        let (status, _, body) = call(r, with_token(get(path), READER)).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let refused = [
        post("/v1/sessions", r#"{"session_id": "ro2"}"#),
        delete("/v1/sessions/ro"),
        delete("/v1/sessions/ro?purge=true"),
        empty_post("/v1/sessions/ro/poll"),
        empty_post("/v1/sessions/ro/retrack"),
        empty_post("/v1/sessions/ro/redeliver"),
        empty_post("/v1/delivery/pause"),
        post(
            "/v1/deliveries/recover",
            r#"{"since": "2026-01-01T00:00:00Z"}"#,
        ),
    ];
    for request in refused {
        let path = request.uri().to_string();
        let (status, _, body) = call(r, with_token(request, READER)).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("FORBIDDEN")),
            "{path}"
        );
    }
    // Nothing changed.
    let (_, _, record) = call(r, with_token(get("/v1/sessions/ro"), ADMIN)).await;
    assert_eq!(record["state"], "tracking");
    let (status, _, _) = call(r, with_token(get("/v1/sessions/ro2"), ADMIN)).await;
    assert_eq!(status, 404);
    for token in ["", "wrong", "reader-token-0123456788"] {
        let (status, _, _) = call(r, with_token(get("/v1/sessions"), token)).await;
        assert_eq!(status, 401, "{token:?}");
    }
    // Neither token shows anywhere.
    let (_, _, metrics) = call(r, get("/metrics")).await;
    let (_, _, doc) = call(r, get("/openapi.json")).await;
    for text in [metrics.to_string(), doc.to_string()] {
        assert!(!text.contains(ADMIN) && !text.contains(READER));
    }
    run.stop().await;
}

#[test]
fn a_read_only_token_needs_an_admin_token_and_differs_from_it() {
    let alone = ServiceConfig {
        read_token: Some(READER.into()),
        ..ServiceConfig::default()
    };
    let err = alone.validate().unwrap_err();
    assert!(err.to_string().contains("admin token"), "{err}");
    let same = ServiceConfig {
        api_token: Some(ADMIN.into()),
        read_token: Some(ADMIN.into()),
        ..ServiceConfig::default()
    };
    let err = same.validate().unwrap_err();
    assert!(err.to_string().contains("differ"), "{err}");
    assert!(!format!("{err} {err:?} {same:?}").contains(ADMIN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_back_end_is_recovered_with_one_call_and_every_step_is_in_the_history() {
    let receiver = Receiver::start().await;
    let config = ServiceConfig {
        delivery: Some(DeliveryConfig {
            url: receiver.url.clone(),
            secrets: vec![KEY.into()],
        }),
        delivery_schedule: DeliverySchedule::parse("0s,100ms").unwrap(),
        ..fast()
    };
    let sessions = vec![
        SessionScript::new("h1").complete_after(Duration::from_millis(300)),
        SessionScript::new("slow").complete_after(Duration::from_secs(600)),
    ];
    let run = start("recover", sessions, config).await;
    let r = &run.router;
    let added_at = SystemTime::now();
    let (status, _, _) = call(
        r,
        post(
            "/v1/sessions",
            r#"{"session_id": "h1", "reference": "loan-42"}"#,
        ),
    )
    .await;
    assert_eq!(status, 202);
    let (status, _, _) = call(r, post("/v1/sessions", r#"{"session_id": "slow"}"#)).await;
    assert_eq!(status, 202);
    until("h1 given up", async || {
        delivery_state(r, "h1").await == "given_up"
    })
    .await;

    // Its story, in order.
    let (_, _, page) = call(r, get("/v1/sessions/h1/events")).await;
    let events = page["events"].as_array().unwrap();
    let kinds_seen: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds_seen.first(), Some(&"added"), "{page}");
    assert_eq!(events[0]["reference"], "loan-42");
    assert!(kinds_seen.contains(&"progress"), "{kinds_seen:?}");
    assert!(
        kinds_seen.ends_with(&[
            "outcome",
            "delivery_attempt",
            "delivery_attempt",
            "given_up"
        ]),
        "{kinds_seen:?}"
    );
    let attempt = events
        .iter()
        .find(|e| e["kind"] == "delivery_attempt")
        .unwrap();
    assert_eq!(attempt["status"], 503);
    assert_eq!(attempt["error"], "http_5xx");
    assert_eq!(
        attempt["response_excerpt"], "down\\n\\u{1b}[1m",
        "{attempt}"
    );
    assert!(attempt["duration_ms"].is_u64());
    assert!(attempt["seq"].is_u64() && attempt["at"].is_string());
    assert_eq!(page["dropped"], 0);

    // The delivery's health; the target never shows its query.
    let (_, _, health) = call(r, get("/v1/delivery")).await;
    assert_eq!(health["given_up"], 1, "{health}");
    assert_eq!(health["consecutive_failures"], 2, "{health}");
    assert_eq!(health["paused"], false);
    assert!(health["last_failure"]["at"].is_string());
    let target = health["target"].as_str().unwrap();
    assert!(
        target.ends_with("/in") && !target.contains("lender-secret"),
        "{target}"
    );

    // Finding it.
    for query in [
        "delivery=given_up",
        "q=loan",
        "reference=loan-42",
        "outcome=completed",
        "order=desc&state=finished",
    ] {
        let (status, _, page) = call(r, get(&format!("/v1/sessions?{query}"))).await;
        assert_eq!(status, 200, "{query}: {page}");
        let ids: Vec<&str> = page["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["session_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["h1"], "{query}");
    }
    for (query, named) in [
        ("outcome=bogus", "outcome"),
        ("delivery=lost", "delivery"),
        ("added_after=yesterday", "added_after"),
        ("order=up", "order"),
        ("limit=0", "limit"),
    ] {
        let (status, _, body) = call(r, get(&format!("/v1/sessions?{query}"))).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("INVALID_REQUEST")),
            "{query}"
        );
        assert!(
            body["error"]["message"].as_str().unwrap().contains(named),
            "{query}: {body}"
        );
    }
    let (_, _, stats) = call(r, get("/v1/stats")).await;
    assert_eq!(stats["sessions"]["finished"], 1, "{stats}");
    assert_eq!(stats["deliveries"]["given_up"], 1, "{stats}");
    assert_eq!(stats["outcomes_24h"]["completed"], 1, "{stats}");

    // The back end is back: a dry run counts, the real one requeues with the same webhook-id.
    receiver.down.store(false, Ordering::SeqCst);
    let since = rfc3339(added_at - Duration::from_secs(60));
    let (status, _, dry) = call(
        r,
        post(
            "/v1/deliveries/recover",
            &json!({"since": since, "dry_run": true}).to_string(),
        ),
    )
    .await;
    assert_eq!(
        (status, dry["matched"].as_u64(), dry["requeued"].as_u64()),
        (200, Some(1), Some(0)),
        "{dry}"
    );
    assert_eq!(delivery_state(r, "h1").await, "given_up");
    let (status, _, done) = call(
        r,
        post(
            "/v1/deliveries/recover",
            &json!({"since": since}).to_string(),
        ),
    )
    .await;
    assert_eq!(
        (status, done["requeued"].as_u64()),
        (200, Some(1)),
        "{done}"
    );
    until("h1 delivered", async || {
        delivery_state(r, "h1").await == "delivered"
    })
    .await;
    let ids = receiver.deliveries_of("h1");
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|id| id == "msg_h1"), "{ids:?}");
    assert!(kinds(r, "h1").await.ends_with(&[
        "redeliver".into(),
        "delivery_attempt".into(),
        "delivered".into()
    ]));

    // Bad recoveries change nothing.
    for body in [
        json!({"since": since, "until": rfc3339(added_at - Duration::from_secs(120))}),
        json!({"since": rfc3339(SystemTime::now() - Duration::from_secs(40 * 24 * 3600))}),
        json!({"since": "last week"}),
        json!({"since": since, "states": ["delivered"]}),
    ] {
        let (status, _, answer) = call(r, post("/v1/deliveries/recover", &body.to_string())).await;
        assert_eq!(status, 400, "{body}: {answer}");
    }

    // Redelivering a delivered one needs force.
    let (status, _, body) = call(r, empty_post("/v1/sessions/h1/redeliver")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("ALREADY_DELIVERED"))
    );
    let (status, _, body) = call(r, empty_post("/v1/sessions/slow/redeliver")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("NOT_FINISHED"))
    );
    let (status, _, _) = call(r, empty_post("/v1/sessions/nobody/redeliver")).await;
    assert_eq!(status, 404);

    // Paused for maintenance: nothing goes until resumed.
    let (status, _, paused) = call(r, post("/v1/delivery/pause", "{}")).await;
    assert_eq!((status, paused["paused"].as_bool()), (200, Some(true)));
    let (status, record, _) =
        call(r, post("/v1/sessions/h1/redeliver", r#"{"force": true}"#)).await;
    assert_eq!(status, 202, "{record:?}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(receiver.deliveries_of("h1").len(), 3);
    assert_eq!(delivery_state(r, "h1").await, "pending");
    let (_, _, metrics) = call(r, get("/metrics")).await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("bankconnect_delivery_paused{"),
        "{metrics}"
    );
    let (status, _, resumed) = call(r, empty_post("/v1/delivery/resume")).await;
    assert_eq!((status, resumed["paused"].as_bool()), (200, Some(false)));
    until("h1 delivered again", async || {
        receiver.deliveries_of("h1").len() == 4
    })
    .await;

    // Retracked: tracked again, and its next outcome is delivered under a new webhook-id.
    let (status, _, record) = call(r, empty_post("/v1/sessions/h1/retrack")).await;
    assert_eq!(
        (status, record["state"].as_str()),
        (202, Some("tracking")),
        "{record}"
    );
    let (status, _, body) = call(r, empty_post("/v1/sessions/h1/retrack")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("TRACKING"))
    );
    until("h1 delivered after the retrack", async || {
        receiver.deliveries_of("h1").len() == 5
    })
    .await;
    assert_eq!(receiver.deliveries_of("h1").last().unwrap(), "msg_h1_2");
    let kinds_now = kinds(r, "h1").await;
    assert_eq!(
        kinds_now.iter().filter(|k| *k == "outcome").count(),
        2,
        "{kinds_now:?}"
    );

    // Poll now: only a tracking session.
    let (status, _, body) = call(r, empty_post("/v1/sessions/h1/poll")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("NOT_TRACKING"))
    );
    let (status, _, body) = call(r, empty_post("/v1/sessions/slow/poll")).await;
    assert_eq!(status, 202, "{body}");
    assert!(kinds(r, "slow").await.ends_with(&["poll_requested".into()]));
    let (status, _, _) = call(
        r,
        http::Request::post("/v1/sessions/slow/poll")
            .header("content-type", "text/plain")
            .body(Body::from("x"))
            .unwrap(),
    )
    .await;
    assert_eq!(status, 415);

    // Purge: never a tracking session; a finished one goes with its history.
    let (status, _, body) = call(r, delete("/v1/sessions/slow?purge=true")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("TRACKING"))
    );
    let (status, _, body) = call(r, delete("/v1/sessions/h1?purge=true")).await;
    assert_eq!(
        (status, body["purged"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    let (status, _, _) = call(r, get("/v1/sessions/h1")).await;
    assert_eq!(status, 404);
    let (status, _, _) = call(r, get("/v1/sessions/h1/events")).await;
    assert_eq!(status, 404);
    let (status, _, _) = call(r, delete("/v1/sessions/slow?purge=maybe")).await;
    assert_eq!(status, 400);
    let (_, _, metrics) = call(r, get("/metrics")).await;
    let metrics = metrics.as_str().unwrap().to_owned();
    for action in [
        "recover",
        "redeliver",
        "pause",
        "resume",
        "retrack",
        "poll",
        "purge",
    ] {
        let counted = metrics.lines().any(|l| {
            l.starts_with("bankconnect_operator_actions_total")
                && l.contains(&format!("action=\"{action}\""))
        });
        assert!(counted, "{action}: {metrics}");
    }
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_delivery_target_there_is_nothing_to_redeliver() {
    let sessions = vec![SessionScript::new("n1").complete_after(Duration::from_millis(100))];
    let run = start("notarget", sessions, fast()).await;
    let r = &run.router;
    call(r, post("/v1/sessions", r#"{"session_id": "n1"}"#)).await;
    wait_state(r, "n1", "finished", Duration::from_secs(10)).await;
    let (status, _, body) = call(r, empty_post("/v1/sessions/n1/redeliver")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("NO_DELIVERY_TARGET"))
    );
    let (_, _, health) = call(r, get("/v1/delivery")).await;
    assert_eq!(health["target"], Value::Null);
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_what_is_old_at_start_and_keeps_what_is_live() {
    let dir = bankconnect_testkit::temp_dir("service_retention");
    {
        let store =
            bankconnect_store::Store::open(&format!("sqlite:{}", dir.join("s.db").display()))
                .await
                .unwrap();
        let old = SystemTime::now() - Duration::from_secs(3 * 3600);
        let sid = |id: &str| bankconnect_core::SessionId::new(id).unwrap();
        for id in ["old-done", "old-pending", "old-tracking"] {
            store
                .add_session(bankconnect_store::NewSession::new(sid(id)), old)
                .await
                .unwrap();
        }
        let outcome = json!({"outcome": "completed"});
        store
            .finish_session(&sid("old-done"), &outcome, None, old)
            .await
            .unwrap();
        store
            .finish_session_delivering_at(
                &sid("old-pending"),
                &outcome,
                "msg_old-pending".into(),
                SystemTime::now() + Duration::from_secs(3600),
                old,
            )
            .await
            .unwrap();
    }
    let config = ServiceConfig {
        retention: Some(Duration::from_secs(3600)),
        ..fast()
    };
    let sessions =
        vec![SessionScript::new("old-tracking").complete_after(Duration::from_secs(600))];
    let run = start_in(dir, sessions, config).await;
    let r = &run.router;
    until("the old session pruned", async || {
        call(r, get("/v1/sessions/old-done")).await.0 == 404
    })
    .await;
    for kept in ["old-pending", "old-tracking"] {
        let (status, _, _) = call(r, get(&format!("/v1/sessions/{kept}"))).await;
        assert_eq!(status, 200, "{kept}");
    }
    // The counter moves just after the prune's commit, so a read can land between the two.
    until("the prune counted", async || {
        let (_, _, metrics) = call(r, get("/metrics")).await;
        metrics
            .as_str()
            .unwrap_or("")
            .lines()
            .any(|l| l.starts_with("bankconnect_pruned_total") && l.contains("kind=\"sessions\""))
    })
    .await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_one_failure_is_one_api_error_event_with_its_count() {
    use bankconnect_sim::FaultKind;
    let sessions = vec![SessionScript::new("flaky")
        .complete_after_polls(1)
        .fault_on(1, FaultKind::ServerError)
        .fault_on(2, FaultKind::ServerError)
        .fault_on(3, FaultKind::RateLimited)];
    let run = start("api_errors", sessions, fast()).await;
    let r = &run.router;
    call(r, post("/v1/sessions", r#"{"session_id": "flaky"}"#)).await;
    wait_state(r, "flaky", "finished", Duration::from_secs(20)).await;
    let (_, _, page) = call(r, get("/v1/sessions/flaky/events")).await;
    let events = page["events"].as_array().unwrap();
    let errors: Vec<&Value> = events.iter().filter(|e| e["kind"] == "api_error").collect();
    assert_eq!(errors.len(), 2, "{page}");
    assert_eq!(errors[0]["status"], 503, "{page}");
    assert_eq!(errors[0]["count"], 2, "{page}");
    assert_eq!(errors[1]["status"], 429, "{page}");
    assert_eq!(errors[1]["count"], 1, "{page}");
    assert!(errors[0]["code"].is_string() && errors[0]["message"].is_string());
    // Written in the order things happened: the errors before the outcome.
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    let outcome_at = kinds.iter().position(|k| *k == "outcome").unwrap();
    let last_error_at = kinds.iter().rposition(|k| *k == "api_error").unwrap();
    assert!(last_error_at < outcome_at, "{kinds:?}");
    run.stop().await;
}
