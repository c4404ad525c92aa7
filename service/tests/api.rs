//! The service in-process: its router driven with `oneshot`, a SQLite temp file, the simulator
//! on loopback. What the command adds (flags, exit codes, signals, SIGKILL) is tested on the
//! binary in the CLI package.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::Router;
use bankconnect_service::{DeliveryConfig, DeliverySchedule, ServiceConfig};
use bankconnect_sim::SessionScript;
use bankconnect_store::Store;
use serde_json::Value;

mod support;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_added_read_listed_and_cancelled_with_the_documented_codes() {
    let sessions = vec![
        SessionScript::new("quick").complete_after(Duration::from_millis(200)),
        SessionScript::new("slow").complete_after(Duration::from_secs(600)),
    ];
    let run = start("crud", sessions, fast()).await;
    let r = &run.router;
    let (status, _, record) = call(
        r,
        post(
            "/v1/sessions",
            r#"{"session_id": "quick", "reference": "loan-42"}"#,
        ),
    )
    .await;
    assert_eq!(status, 202, "{record}");
    assert_eq!(record["reference"], "loan-42");
    let (status, _, _) = call(r, post("/v1/sessions", r#"{"session_id": "quick"}"#)).await;
    assert_eq!(status, 200, "known already");
    let (status, _, batch) = call(
        r,
        post(
            "/v1/sessions",
            r#"{"sessions": [{"session_id": "slow", "max_wait": "1h"}]}"#,
        ),
    )
    .await;
    assert_eq!(status, 202, "{batch}");
    assert_eq!(batch["sessions"][0]["max_wait_ms"], 3_600_000);

    let finished = wait_state(r, "quick", "finished", Duration::from_secs(10)).await;
    assert_eq!(finished["outcome"]["outcome"], "completed", "{finished}");

    // The list shows every state by default.
    let (status, _, page) = call(r, get("/v1/sessions")).await;
    assert_eq!(status, 200);
    let listed: Vec<&str> = page["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["quick", "slow"]);
    let (_, _, tracking) = call(r, get("/v1/sessions?state=tracking")).await;
    assert_eq!(tracking["sessions"].as_array().unwrap().len(), 1);
    let (status, _, _) = call(r, get("/v1/sessions?state=nope")).await;
    assert_eq!(status, 400);

    // Cancel a tracking one; a finished one has nothing to cancel.
    let delete = |id: &str| {
        http::Request::delete(format!("/v1/sessions/{id}"))
            .body(Body::empty())
            .unwrap()
    };
    let (status, _, cancelled) = call(r, delete("slow")).await;
    assert_eq!(
        (status, cancelled["state"].as_str()),
        (200, Some("cancelled"))
    );
    let (status, _, err) = call(r, delete("quick")).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("NOT_TRACKING"))
    );
    let (status, _, err) = call(r, delete("never-added")).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_and_sloppy_requests_get_the_json_error_and_change_nothing() {
    let config = ServiceConfig {
        api_token: Some("s3cret-token".into()),
        ..fast()
    };
    let run = start("hostile", vec![], config).await;
    let r = &run.router;
    let authed = |mut request: http::Request<Body>, auth: &str| {
        request
            .headers_mut()
            .insert("authorization", auth.parse().unwrap());
        request
    };
    let body = r#"{"session_id": "a1"}"#;
    // The scheme is case-insensitive, the token is not.
    let (status, _, _) = call(r, authed(post("/v1/sessions", body), "bearer s3cret-token")).await;
    assert_eq!(status, 202);
    let (status, _, err) = call(r, authed(post("/v1/sessions", body), "Bearer S3CRET-TOKEN")).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (401, Some("UNAUTHORIZED"))
    );
    let (status, _, _) = call(r, post("/v1/sessions", body)).await;
    assert_eq!(status, 401);

    let ok = |request| authed(request, "Bearer s3cret-token");
    let cases: Vec<(http::Request<Body>, u16, &str)> = vec![
        // A cross-site form cannot add sessions.
        (
            http::Request::post("/v1/sessions")
                .header("content-type", "text/plain")
                .body(Body::from(r#"{"session_id": "form"}"#))
                .unwrap(),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            http::Request::post("/v1/sessions")
                .body(Body::from(r#"{"session_id": "none"}"#))
                .unwrap(),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            post(
                "/v1/sessions",
                r#"{"session_id": "d1", "session_id": "d2"}"#,
            ),
            400,
            "INVALID_REQUEST",
        ),
        (
            post(
                "/v1/sessions",
                r#"{"session_id": "m1", "max_wait": "500us"}"#,
            ),
            400,
            "INVALID_REQUEST",
        ),
        (
            post(
                "/v1/sessions",
                r#"{"session_id": "m2", "max_wait": "0.9ms"}"#,
            ),
            400,
            "INVALID_REQUEST",
        ),
        (
            post("/v1/sessions", r#"{"session_id": "m3", "max_wait": "1ns"}"#),
            400,
            "INVALID_REQUEST",
        ),
        (
            post("/v1/sessions", r#"{"session_id": "u1", "colour": "red"}"#),
            400,
            "INVALID_REQUEST",
        ),
        (
            post("/v1/sessions", r#"{"sessions": []}"#),
            400,
            "INVALID_REQUEST",
        ),
        (
            post(
                "/v1/sessions",
                r#"{"sessions": [{"session_id": "b1"}, {"session_id": 7}]}"#,
            ),
            400,
            "INVALID_REQUEST",
        ),
        (post("/v1/sessions", "[1, 2]"), 400, "INVALID_REQUEST"),
        (post("/v1/sessions", "{"), 400, "INVALID_REQUEST"),
        (get("/v1/sessions/%ff"), 400, "INVALID_REQUEST"),
        (get("/v1/sessions?limit=0"), 400, "INVALID_REQUEST"),
        (get("/v1/sessions?cursor=zzz"), 400, "INVALID_REQUEST"),
        (get("/v1/sessions?color=1"), 400, "INVALID_REQUEST"),
        (get("/nowhere"), 404, "NOT_FOUND"),
        (
            http::Request::put("/v1/sessions")
                .body(Body::empty())
                .unwrap(),
            405,
            "METHOD_NOT_ALLOWED",
        ),
    ];
    for (request, want, code) in cases {
        let shown = format!("{} {}", request.method(), request.uri());
        let (status, headers, err) = call(r, ok(request)).await;
        assert_eq!(status, want, "{shown}: {err}");
        assert_eq!(err["error"]["code"], code, "{shown}: {err}");
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{shown}"
        );
    }
    // Nothing of the refused bodies was stored: the batch with a bad entry added none.
    let (_, _, page) = call(r, ok(get("/v1/sessions"))).await;
    let ids: Vec<&str> = page["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a1"]);
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_endpoints_need_no_token_and_the_document_is_the_routes() {
    let config = ServiceConfig {
        api_token: Some("t".repeat(16)),
        webhook_path: "/hooks/finbox".into(),
        ..fast()
    };
    let run = start("ops", vec![], config).await;
    let r = &run.router;
    let (status, _, health) = call(r, get("/healthz")).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, _, ready) = call(r, get("/readyz")).await;
    assert_eq!(
        (status, ready["status"].as_str()),
        (200, Some("ready")),
        "{ready}"
    );
    let (status, _, metrics) = call(r, get("/metrics")).await;
    assert_eq!(status, 200);
    assert!(metrics
        .as_str()
        .unwrap()
        .contains("bankconnect_outcome_latency_seconds"));
    let (status, _, doc) = call(r, get("/openapi.json")).await;
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().unwrap();
    let mut names: Vec<&str> = paths.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "/healthz",
            "/hooks/finbox",
            "/metrics",
            "/readyz",
            "/v1/deliveries/recover",
            "/v1/delivery",
            "/v1/delivery/pause",
            "/v1/delivery/resume",
            "/v1/sessions",
            "/v1/sessions/{id}",
            "/v1/sessions/{id}/events",
            "/v1/sessions/{id}/poll",
            "/v1/sessions/{id}/redeliver",
            "/v1/sessions/{id}/retrack",
            "/v1/stats"
        ]
    );
    assert!(paths["/hooks/finbox"]["post"].is_object());
    // OpenAPI 3.1, the delivery described as a webhook, the outcome as a typed schema.
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert!(doc["webhooks"]["session.finished"]["post"]["requestBody"].is_object());
    let schemas = &doc["components"]["schemas"];
    for name in [
        "FinishedEventBody",
        "RecordBody",
        "OutcomeSchema",
        "AccountSchema",
        "EventsBody",
        "StatsBody",
        "DeliveryOverviewBody",
    ] {
        assert!(schemas[name].is_object(), "{name} missing: {}", schemas);
    }
    assert_eq!(
        schemas["OutcomeSchema"]["properties"]["outcome"]["$ref"],
        "#/components/schemas/OutcomeKindSchema"
    );
    let text = doc.to_string();
    assert!(
        !text.contains(&"t".repeat(16)),
        "the token is in the document"
    );
    assert!(doc["components"]["schemas"]["NewSessionBody"].is_object());
    // The webhook is routed where the document says.
    let (status, _, answer) = call(
        r,
        post(
            "/hooks/finbox",
            r#"{"session_id": "w1", "event_name": "ENRICHMENT_NOTIFICATION", "accounts": []}"#,
        ),
    )
    .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("accepted")),
        "{answer}"
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_known_at_the_add_is_committed_with_nothing_else_tracked() {
    // The session's max wait ran out before it was added (downtime, say): its outcome is known
    // at once, with no other session being polled to wake the loop.
    let sessions = vec![SessionScript::new("late").complete_after(Duration::from_secs(600))];
    let run = start("parked", sessions, fast()).await;
    let r = &run.router;
    let (status, _, _) = call(
        r,
        post(
            "/v1/sessions",
            r#"{"session_id": "late", "max_wait": "1ms"}"#,
        ),
    )
    .await;
    assert_eq!(status, 202);
    let record = wait_state(r, "late", "finished", Duration::from_secs(3)).await;
    assert_eq!(record["state"], "finished", "{record}");
    assert_eq!(record["outcome"]["outcome"], "timed_out", "{record}");
    run.stop().await;
}

/// A receiver on loopback that hangs on `slow`'s delivery and answers the others at once,
/// noting when each arrived.
async fn receiver() -> (String, Arc<Mutex<Vec<(String, Instant)>>>) {
    let seen: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let log = Arc::clone(&seen);
    let app = Router::new().route(
        "/deliveries",
        axum::routing::post(move |body: String| {
            let log = Arc::clone(&log);
            async move {
                let value: Value = serde_json::from_str(&body).unwrap_or_default();
                let id = value["data"]["session_id"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned();
                log.lock().unwrap().push((id.clone(), Instant::now()));
                if id == "slow" {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/deliveries"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_holds_up_only_its_own_delivery() {
    let (url, seen) = receiver().await;
    let mut sessions = vec![SessionScript::new("slow").complete_after(Duration::from_millis(100))];
    for id in ["a", "b", "c"] {
        sessions.push(SessionScript::new(id).complete_after(Duration::from_millis(600)));
    }
    let config = ServiceConfig {
        delivery: Some(DeliveryConfig {
            url,
            secrets: vec![KEY.into()],
        }),
        delivery_schedule: DeliverySchedule::new(vec![Duration::ZERO, Duration::from_secs(30)])
            .unwrap(),
        ..fast()
    };
    let run = start("hang", sessions, config).await;
    let r = &run.router;
    let started = Instant::now();
    let (status, _, _) = call(
        r,
        post(
            "/v1/sessions",
            r#"{"sessions": [{"session_id": "slow"}, {"session_id": "a"}, {"session_id": "b"}, {"session_id": "c"}]}"#,
        ),
    )
    .await;
    assert_eq!(status, 202);
    for id in ["a", "b", "c"] {
        let deadline = Instant::now() + Duration::from_secs(8);
        loop {
            let (_, _, record) = call(r, get(&format!("/v1/sessions/{id}"))).await;
            if record["delivery"]["state"] == "delivered" {
                break;
            }
            assert!(Instant::now() < deadline, "{id} not delivered: {record}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|(id, _)| id == "slow"),
        "slow was attempted: {seen:?}"
    );
    // Well within the hanging attempt's 15 s timeout.
    assert!(started.elapsed() < Duration::from_secs(8));
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_megabyte_webhooks_cost_the_store_a_few_bytes_each() {
    let run = start("forged", vec![], fast()).await;
    let r = &run.router;
    let message = "x".repeat(15_000);
    for n in 0..40 {
        let accounts: Vec<Value> = (0..60)
            .map(|a| {
                serde_json::json!({"account_id": format!("a{a}"), "bank_name": "sbi",
                    "account_status": "failed", "error_code": "OTHER", "error_message": message})
            })
            .collect();
        let body = serde_json::json!({"session_id": format!("unknown-{n}"),
            "event_name": "ENRICHMENT_NOTIFICATION", "accounts": accounts})
        .to_string();
        assert!(body.len() > 800_000);
        let (status, _, answer) = call(r, post("/webhooks/bankconnect", &body)).await;
        assert_eq!(status, 200, "{answer}");
    }
    // 40 MB sent; the store keeps the hints without the accounts nobody may trust.
    let size: u64 = std::fs::read_dir(&run.dir)
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum();
    assert!(size < 4 * 1024 * 1024, "the store grew to {size} bytes");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_large_bodies_share_one_budget_and_the_rest_are_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let run = start("budget", vec![], fast()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bankconnect_service::serve(
        listener,
        run.router.clone(),
        bankconnect_service::ListenerLimits::default(),
        async {
            let _ = stop.await;
        },
        Duration::from_secs(1),
    ));
    let chunk = vec![b' '; 900_000];
    let mut senders = Vec::new();
    for n in 0..200 {
        let chunk = chunk.clone();
        let path = if n % 2 == 0 {
            "/webhooks/bankconnect"
        } else {
            "/v1/sessions"
        };
        senders.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let head = format!(
                "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            // Most of the body, then nothing more for a while.
            let _ = stream.write_all(&chunk).await;
            let mut answer = vec![0u8; 512];
            let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut answer))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(0);
            let text = String::from_utf8_lossy(&answer[..n]).into_owned();
            (text, stream)
        }));
    }
    let mut refused = 0;
    let mut held = Vec::new();
    for sender in senders {
        let (answer, stream) = sender.await.unwrap();
        if answer.starts_with("HTTP/1.1 503") {
            refused += 1;
        }
        held.push(stream);
    }
    // 200 bodies of 0.9 MB in flight would be 180 MB; the budget is 64 MiB. (The process's
    // RSS, shared with the other tests here, is measured on the binary: cli/tests/hardening.rs.)
    assert!(refused >= 80, "refused {refused} of 200");
    // A normal request still gets through meanwhile.
    let (status, _, health) = call(&run.router, get("/healthz")).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    drop(held);
    let _ = stop_tx.send(());
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_means_the_schema_is_there_at_this_builds_version() {
    let run = start("ready", vec![], fast()).await;
    let r = &run.router;
    let (status, _, _) = call(r, get("/readyz")).await;
    assert_eq!(status, 200);
    // The database re-created empty under the running service: it answers, but cannot write.
    let db = run.dir.join("s.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.execute_batch("PRAGMA foreign_keys = OFF; DROP TABLE outbox; DROP TABLE sessions; DROP TABLE bankconnect_meta;")
        .unwrap();
    drop(conn);
    let (status, _, ready) = call(r, get("/readyz")).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["status"], "unavailable");
    // An add is refused in the JSON shape, and not with "try again": a retry cannot help.
    let (status, _, err) = call(r, post("/v1/sessions", r#"{"session_id": "after-drop"}"#)).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (500, Some("STORE_ERROR")),
        "{err}"
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_max_wait_an_older_build_stored_ends_instead_of_staying_tracking() {
    let dir = bankconnect_testkit::temp_dir("service_zombie");
    let url = format!("sqlite:{}", dir.join("s.db").display());
    {
        let store = Store::open(&url).await.unwrap();
        let session =
            bankconnect_store::NewSession::new(bankconnect_core::SessionId::new("zombie").unwrap())
                .with_max_wait(Duration::ZERO);
        store
            .add_session(session, std::time::SystemTime::now())
            .await
            .unwrap();
    }
    let run = start_in(
        dir,
        vec![SessionScript::new("zombie").complete_after(Duration::from_secs(600))],
        fast(),
    )
    .await;
    let record = wait_state(&run.router, "zombie", "finished", Duration::from_secs(5)).await;
    assert_eq!(record["state"], "finished", "{record}");
    assert_eq!(record["outcome"]["outcome"], "timed_out", "{record}");
    run.stop().await;
}
