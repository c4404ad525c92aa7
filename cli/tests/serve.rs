//! `bankconnect serve` as a real process: the simulator as FinBox (webhooks registered through
//! `--public-url`), a delivery receiver of our own, sessions of every kind, bad input, and SIGKILL
//! at chosen points followed by a restart on the same SQLite file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bankconnect_sim::{Scenario, SessionScript};
use common::*;
use serde_json::{json, Value};

const DELIVER_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Every POST the receiver got: its headers and body.
type Posts = Arc<Mutex<Vec<(HashMap<String, String>, Vec<u8>)>>>;

/// A delivery receiver: records every POST; answers 500 to the first `fail_first` posts of each
/// webhook-id, then 200.
struct Receiver {
    addr: String,
    posts: Posts,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    fn start(fail_first: usize) -> Self {
        Self::start_at("127.0.0.1:0", fail_first)
    }

    fn start_at(addr: &str, fail_first: usize) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let posts: Posts = Arc::default();
        let recorded = Arc::clone(&posts);
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let recorded = Arc::clone(&recorded);
            async move {
                let (parts, body) = request.into_parts();
                let bytes = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .unwrap_or_default();
                let headers: HashMap<String, String> = parts
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
                    .collect();
                let id = headers.get("webhook-id").cloned().unwrap_or_default();
                let mut posts = recorded.lock().unwrap();
                let seen = posts
                    .iter()
                    .filter(|(h, _)| h.get("webhook-id") == Some(&id))
                    .count();
                posts.push((headers, bytes.to_vec()));
                if seen < fail_first {
                    http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    http::StatusCode::OK
                }
            }
        });
        runtime.spawn(async move { axum::serve(listener, app).await });
        Self {
            addr,
            posts,
            _runtime: runtime,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/deliveries", self.addr)
    }

    /// Verified deliveries (each checked with the project's own verifier), by session.
    fn delivered(&self) -> Vec<(String, Value)> {
        let auth = bankconnect_webhook_verify::Authenticator::standard_webhooks(&[DELIVER_SECRET])
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let posts = self.posts.lock().unwrap();
        posts
            .iter()
            .map(|(headers, body)| {
                let mut map = http::HeaderMap::new();
                for (k, v) in headers {
                    map.insert(
                        http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                        v.parse().unwrap(),
                    );
                }
                let id = auth.verify(&map, body, now).expect("a valid signature");
                (id.unwrap(), serde_json::from_slice(body).unwrap())
            })
            .collect()
    }
}

struct Serve {
    child: Child,
    base: String,
}

impl Serve {
    fn start(sim: &Sim, db: &Path, receiver: Option<&Receiver>, extra: &[&str]) -> Self {
        Self::start_delivering(sim, db, receiver.map(Receiver::url), extra)
    }

    fn start_delivering(sim: &Sim, db: &Path, deliver_to: Option<String>, extra: &[&str]) -> Self {
        let mut command = bankconnect(Some(&sim.sim), &[]);
        let store = format!("sqlite:{}", db.display());
        command.args(["serve", "--store", &store]);
        if !extra.contains(&"--interval") {
            command.args(["--interval", "300ms"]);
        }
        if !extra.contains(&"--delivery-schedule") {
            command.args(["--delivery-schedule", "0s,200ms,400ms"]);
        }
        command.arg("--public-url");
        // The simulator posts its webhooks to us; the address is known once we listen, so
        // register the path on a fixed port picked now.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        command.arg(format!("http://127.0.0.1:{port}"));
        command.args(["--listen", &format!("127.0.0.1:{port}")]);
        if let Some(url) = deliver_to {
            command.args(["--deliver-to", &url]);
            command.env("BANKCONNECT_DELIVER_SECRET", DELIVER_SECRET);
        }
        command.args(extra);
        command.stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().unwrap().unwrap();
        let base = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line: {first}"))
            .to_owned();
        std::thread::spawn(move || for _ in lines {});
        Self { child, base }
    }

    fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[&str],
    ) -> (u16, Value) {
        http_request(&self.addr(), method, path, body, headers)
    }

    fn add(&self, body: Value) -> (u16, Value) {
        self.request("POST", "/v1/sessions", Some(&body.to_string()), &[])
    }

    fn get(&self, id: &str) -> Value {
        self.request("GET", &format!("/v1/sessions/{id}"), None, &[])
            .1
    }

    /// Waits until every session in `ids` is finished and delivered (when `delivered`).
    fn wait_finished(
        &self,
        ids: &[&str],
        delivered: bool,
        within: Duration,
    ) -> HashMap<String, Value> {
        let started = Instant::now();
        loop {
            let records: HashMap<String, Value> = ids
                .iter()
                .map(|id| ((*id).to_owned(), self.get(id)))
                .collect();
            let done = records.values().all(|r| {
                r["state"] == "finished" && (!delivered || r["delivery"]["state"] == "delivered")
            });
            if done {
                return records;
            }
            assert!(
                started.elapsed() < within,
                "not finished in time: {records:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }

    fn terminate(mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn temp_db(name: &str) -> (PathBuf, PathBuf) {
    let dir = bankconnect_testkit::temp_dir(&format!("serve_{name}"));
    (dir.join("serve.db"), dir)
}

fn scenario_sim(sessions: Vec<SessionScript>) -> Sim {
    sim_with(
        Scenario {
            sessions,
            ..Scenario::default()
        },
        "sim-api-key",
        "sim-server-hash",
    )
}

#[test]
fn sessions_of_every_kind_end_right_and_are_delivered_signed() {
    let sim = scenario_sim(vec![
        SessionScript::new("clean").complete_after(Duration::from_millis(400)),
        SessionScript::new("months")
            .complete_after(Duration::from_millis(400))
            .account_failure("INCOMPLETE_MONTHS", "Incomplete months: Jan 2024, Feb 2024"),
        SessionScript::new("quiet")
            .complete_after(Duration::from_millis(300))
            .without_webhook(),
        SessionScript::new("gone").deleted(),
        SessionScript::new("dup")
            .complete_after(Duration::from_millis(300))
            .duplicate_webhook(),
        SessionScript::new("flaky")
            .complete_after(Duration::from_millis(300))
            .fault_on(1, bankconnect_sim::FaultKind::ServerError),
    ]);
    let receiver = Receiver::start(2);
    let (db, dir) = temp_db("kinds");
    let serve = Serve::start(&sim, &db, Some(&receiver), &[]);
    let ids = [
        "clean",
        "months",
        "quiet",
        "gone",
        "dup",
        "flaky",
        "unknown-404",
    ];
    let (status, batch) = serve.add(json!({"sessions": ids.iter().map(|id| json!({"session_id": id, "reference": format!("ref-{id}")})).collect::<Vec<_>>()}));
    assert_eq!(status, 202, "{batch}");
    assert_eq!(batch["sessions"].as_array().unwrap().len(), ids.len());
    assert_eq!(batch["sessions"][0]["state"], "tracking");
    let records = serve.wait_finished(&ids, true, Duration::from_secs(30));
    let outcome = |id: &str| {
        records[id]["outcome"]["outcome"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(outcome("clean"), "completed");
    assert_eq!(outcome("months"), "completed_with_failures");
    assert_eq!(outcome("quiet"), "completed");
    assert_eq!(outcome("gone"), "api_error");
    assert_eq!(outcome("dup"), "completed");
    assert_eq!(outcome("flaky"), "completed");
    assert_eq!(outcome("unknown-404"), "api_error");
    assert_eq!(
        records["months"]["outcome"]["accounts"][0]["error_detail"]["months"],
        json!(["2024-01", "2024-02"])
    );
    assert_eq!(records["clean"]["reference"], "ref-clean");
    // Every delivery: signed (verified), the same webhook-id on each of its 3 attempts (500, 500, 200).
    let delivered = receiver.delivered();
    for id in ids {
        let attempts: Vec<_> = delivered
            .iter()
            .filter(|(_, body)| body["data"]["session_id"] == id)
            .collect();
        assert_eq!(attempts.len(), 3, "{id}: {attempts:?}");
        assert!(attempts.iter().all(|(wid, _)| *wid == attempts[0].0));
        assert_eq!(attempts[0].1["type"], "session.finished");
        assert_eq!(records[id]["delivery"]["attempts"], 3);
    }
    // Listing finished sessions pages through all of them.
    let (status, page) = serve.request("GET", "/v1/sessions?state=finished&limit=4", None, &[]);
    assert_eq!(status, 200);
    assert_eq!(page["sessions"].as_array().unwrap().len(), 4);
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (_, rest) = serve.request(
        "GET",
        &format!("/v1/sessions?state=finished&limit=4&cursor={cursor}"),
        None,
        &[],
    );
    assert_eq!(rest["sessions"].as_array().unwrap().len(), 3);
    assert_eq!(rest["next_cursor"], Value::Null);
    // Adding a known session again: 200 and the record unchanged.
    let (status, again) = serve.add(json!({"session_id": "clean", "reference": "other"}));
    assert_eq!(status, 200);
    assert_eq!(again["reference"], "ref-clean");
    assert_eq!(again["state"], "finished");
    // Metrics and readiness.
    let metrics = {
        let mut stream = TcpStream::connect(serve.addr()).unwrap();
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    };
    for name in [
        "bankconnect_outcomes_total",
        "bankconnect_deliveries_total",
        "bankconnect_api_requests_total",
        "bankconnect_webhooks_total",
        "bankconnect_outcome_latency_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing");
    }
    assert_eq!(serve.request("GET", "/readyz", None, &[]).0, 200);
    assert_eq!(serve.request("GET", "/healthz", None, &[]).0, 200);
    assert_eq!(serve.terminate(), Some(0));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_input_gets_the_documented_4xx_and_changes_nothing() {
    let sim = scenario_sim(vec![]);
    let (db, dir) = temp_db("bad");
    let serve = Serve::start(&sim, &db, None, &["--api-token", "tok-123"]);
    let auth = "authorization: Bearer tok-123";
    let post = |body: &str| serve.request("POST", "/v1/sessions", Some(body), &[auth]);
    for (body, status) in [
        ("{bad", 400),
        ("[]", 400),
        ("{}", 400),
        (r#"{"session_id": ""}"#, 400),
        (r#"{"session_id": "a b"}"#, 400),
        (r#"{"session_id": 7}"#, 400),
        (r#"{"session_id": "ok", "surprise": 1}"#, 400),
        (r#"{"session_id": "ok", "max_wait": "soon"}"#, 400),
        (r#"{"sessions": []}"#, 400),
        (
            r#"{"sessions": [{"session_id": "ok"}, {"session_id": "bad id"}]}"#,
            400,
        ),
    ] {
        let (got, error) = post(body);
        assert_eq!(got, status, "{body}: {error}");
        assert!(
            error["error"]["code"].is_string() && error["error"]["message"].is_string(),
            "{error}"
        );
    }
    let big: Vec<Value> = (0..1001)
        .map(|i| json!({"session_id": format!("s{i}")}))
        .collect();
    assert_eq!(post(&json!({"sessions": big}).to_string()).0, 400);
    let huge = format!(
        r#"{{"session_id": "x", "reference": "{}"}}"#,
        "r".repeat(2 * 1024 * 1024)
    );
    assert_eq!(post(&huge).0, 413);
    assert_eq!(
        serve
            .request("POST", "/v1/sessions", Some(r#"{"session_id": "ok"}"#), &[])
            .0,
        401
    );
    assert_eq!(
        serve
            .request(
                "POST",
                "/v1/sessions",
                Some(r#"{"session_id": "ok"}"#),
                &["authorization: Bearer nope"]
            )
            .0,
        401
    );
    assert_eq!(
        serve.request("GET", "/v1/sessions/ok", None, &[auth]).0,
        404
    );
    assert_eq!(
        serve
            .request("GET", "/v1/sessions?state=weird", None, &[auth])
            .0,
        400
    );
    assert_eq!(
        serve
            .request("GET", "/v1/sessions?limit=0", None, &[auth])
            .0,
        400
    );
    assert_eq!(
        serve
            .request("GET", "/v1/sessions?cursor=zzz", None, &[auth])
            .0,
        400
    );
    assert_eq!(
        serve.request("DELETE", "/v1/sessions/ok", None, &[auth]).0,
        404
    );
    assert_eq!(serve.request("GET", "/nope", None, &[]).0, 404);
    assert_eq!(serve.request("PUT", "/v1/sessions", None, &[auth]).0, 405);
    // Nothing of that was stored.
    let (_, page) = serve.request("GET", "/v1/sessions?state=tracking", None, &[auth]);
    assert_eq!(page["sessions"], json!([]));
    // Health and the OpenAPI document need no token.
    assert_eq!(serve.request("GET", "/healthz", None, &[]).0, 200);
    let (status, doc) = serve.request("GET", "/openapi.json", None, &[]);
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/sessions",
        "/v1/sessions/{id}",
        "/webhooks/bankconnect",
        "/readyz",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} undocumented");
    }
    drop(serve);
    // Without a token, serve refuses a non-loopback address.
    let output = bankconnect(
        Some(&sim.sim),
        &[
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--store",
            &format!("sqlite:{}", dir.join("x.db").display()),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = bankconnect(Some(&sim.sim), &["serve", "--store", "mysql://x"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = bankconnect(
        Some(&sim.sim),
        &[
            "serve",
            "--deliver-to",
            "http://example.com/x",
            "--deliver-secret",
            DELIVER_SECRET,
        ],
    )
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sigkill_at_any_point_loses_no_session_webhook_outcome_or_delivery() {
    let sim = scenario_sim(vec![
        // Ends only by its webhook's effect (no webhook is sent by the simulator; we post one).
        SessionScript::new("after-add")
            .complete_after(Duration::from_millis(1500))
            .without_webhook(),
        // Done at its first poll, which confirms the (unsigned) webhook kept for it: the credit
        // shows the webhook's effect survived (a poll that contradicted it would earn none).
        SessionScript::new("hooked")
            .complete_after_polls(1)
            .without_webhook(),
        SessionScript::new("undelivered")
            .complete_after(Duration::from_millis(100))
            .without_webhook(),
    ]);
    let (db, dir) = temp_db("kill");
    // The back end is down until the last restart; retries every second or two meanwhile.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let deliver_to = format!("http://127.0.0.1:{port}/deliveries");
    let start = |sim: &Sim| {
        Serve::start_delivering(
            sim,
            &db,
            Some(deliver_to.clone()),
            &["--delivery-schedule", "0s,1s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s"],
        )
    };
    // 1. Killed right after the add's 202.
    let serve = start(&sim);
    assert_eq!(serve.add(json!({"session_id": "after-add"})).0, 202);
    serve.kill9();
    // 2. Killed right after a webhook's 200 (for a session not added yet: kept as pending).
    let serve = start(&sim);
    let event =
        json!({"session_id": "hooked", "event_name": "ENRICHMENT_NOTIFICATION", "accounts": []});
    let (status, _) = serve.request(
        "POST",
        "/webhooks/bankconnect",
        Some(&event.to_string()),
        &[],
    );
    assert_eq!(status, 200);
    serve.kill9();
    // 3. Outcomes committed, their deliveries failing (the back end is down), then killed.
    let serve = start(&sim);
    assert_eq!(serve.add(json!({"session_id": "undelivered"})).0, 202);
    assert_eq!(serve.add(json!({"session_id": "hooked"})).0, 202);
    let records = serve.wait_finished(&["undelivered"], false, Duration::from_secs(20));
    assert_ne!(records["undelivered"]["delivery"]["state"], "delivered");
    serve.kill9();
    // The back end comes up; a restart finishes and delivers everything.
    let receiver = Receiver::start_at(&format!("127.0.0.1:{port}"), 0);
    let serve = start(&sim);
    let ids = ["after-add", "hooked", "undelivered"];
    let records = serve.wait_finished(&ids, true, Duration::from_secs(30));
    for id in ids {
        assert_eq!(records[id]["outcome"]["outcome"], "completed", "{id}");
    }
    assert_eq!(
        records["hooked"]["outcome"]["notified_by"], "webhook",
        "the webhook accepted before the crash kept its effect"
    );
    let delivered = receiver.delivered();
    for id in ids {
        assert!(
            delivered
                .iter()
                .any(|(wid, body)| body["data"]["session_id"] == id && wid == &format!("msg_{id}")),
            "{id} not delivered"
        );
    }
    drop(serve);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn max_wait_counts_the_downtime() {
    let sim = scenario_sim(vec![
        SessionScript::new("slow").complete_after(Duration::from_secs(600))
    ]);
    let (db, dir) = temp_db("downtime");
    let serve = Serve::start(&sim, &db, None, &["--max-wait", "4s"]);
    assert_eq!(serve.add(json!({"session_id": "slow"})).0, 202);
    serve.kill9();
    std::thread::sleep(Duration::from_secs(3));
    let started = Instant::now();
    let serve = Serve::start(&sim, &db, None, &["--max-wait", "4s"]);
    let records = serve.wait_finished(&["slow"], false, Duration::from_secs(10));
    assert_eq!(records["slow"]["outcome"]["outcome"], "timed_out");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "downtime not counted: {:?}",
        started.elapsed()
    );
    let elapsed = records["slow"]["outcome"]["elapsed_ms"].as_u64().unwrap();
    assert!(elapsed >= 4000, "{elapsed}");
    drop(serve);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_authenticated_but_malformed_webhook_makes_its_session_poll_at_once() {
    let sim = scenario_sim(vec![SessionScript::new("slowpoke")
        .complete_after(Duration::from_millis(800))
        .without_webhook()]);
    let (db, dir) = temp_db("malformed");
    let serve = Serve::start(
        &sim,
        &db,
        None,
        &["--interval", "60s", "--webhook-token", "tok-1"],
    );
    assert_eq!(serve.add(json!({"session_id": "slowpoke"})).0, 202);
    std::thread::sleep(Duration::from_millis(1200));
    let malformed = r#"{"session_id": "slowpoke", "event_name": "ENRICHMENT_NOTIFICATION", "accounts": "oops"}"#;
    // Without the token: 401 and no effect; with it: 400, and the session polls at once.
    let (status, _) = serve.request("POST", "/webhooks/bankconnect", Some(malformed), &[]);
    assert_eq!(status, 401);
    let (status, _) = serve.request(
        "POST",
        "/webhooks/bankconnect?token=tok-1",
        Some(malformed),
        &[],
    );
    assert_eq!(status, 400);
    let records = serve.wait_finished(&["slowpoke"], false, Duration::from_secs(10));
    assert_eq!(records["slowpoke"]["outcome"]["outcome"], "completed");
    drop(serve);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_second_serve_on_the_same_sqlite_file_exits_2_naming_it() {
    let sim = scenario_sim(vec![]);
    let (db, dir) = temp_db("second");
    let first = Serve::start(&sim, &db, None, &[]);
    let store = format!("sqlite:{}", db.display());
    let output = bankconnect(
        Some(&sim.sim),
        &["serve", "--listen", "127.0.0.1:0", "--store", &store],
    )
    .output()
    .unwrap();
    assert_eq!(code(&output), 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&db.display().to_string()), "{stderr}");
    assert!(stderr.contains("PostgreSQL"), "{stderr}");
    // The first is unharmed.
    assert_eq!(first.add(json!({"session_id": "still-here"})).0, 202);
    drop(first);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn after_sigkill_a_restart_repolls_everything_within_one_interval() {
    let ids: Vec<String> = (0..100).map(|n| format!("slow-{n:03}")).collect();
    let sim = scenario_sim(
        ids.iter()
            .map(|id| SessionScript::new(id).complete_after(Duration::from_secs(600)))
            .collect(),
    );
    let (db, dir) = temp_db("repoll");
    let serve = Serve::start(&sim, &db, None, &["--interval", "2s"]);
    let batch: Vec<Value> = ids.iter().map(|id| json!({"session_id": id})).collect();
    assert_eq!(serve.add(json!({"sessions": batch})).0, 202);
    std::thread::sleep(Duration::from_millis(500));
    serve.kill9();
    let killed_at = sim
        .sim
        .requests()
        .iter()
        .map(|r| r.at_ms)
        .max()
        .unwrap_or(0);
    let serve = Serve::start(&sim, &db, None, &["--interval", "2s"]);
    std::thread::sleep(Duration::from_secs(5));
    let requests = sim.sim.requests();
    let late: Vec<(&String, Option<u64>)> = ids
        .iter()
        .map(|id| {
            let first = requests
                .iter()
                .filter(|r| r.at_ms > killed_at && r.session_id.as_deref() == Some(id.as_str()))
                .map(|r| r.at_ms - killed_at)
                .min();
            (id, first)
        })
        // One interval, plus the restart itself.
        .filter(|(_, first)| first.is_none_or(|ms| ms > 3_500))
        .collect();
    assert!(late.is_empty(), "re-polled late or not at all: {late:?}");
    drop(serve);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_delivery_claimed_by_a_killed_serve_is_made_again_within_seconds() {
    let sim = scenario_sim(vec![
        SessionScript::new("claimed").complete_after(Duration::from_millis(100))
    ]);
    let (db, dir) = temp_db("claimed");
    // A back end that takes the connection and never answers: the attempt hangs.
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = hanging.local_addr().unwrap();
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let holder = Arc::clone(&held);
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = Arc::clone(&accepted);
    std::thread::spawn(move || {
        for stream in hanging.incoming().flatten() {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            holder.lock().unwrap().push(stream);
        }
    });
    let deliver_to = format!("http://{addr}/deliveries");
    let serve = Serve::start_delivering(&sim, &db, Some(deliver_to.clone()), &[]);
    assert_eq!(serve.add(json!({"session_id": "claimed"})).0, 202);
    let started = Instant::now();
    while accepted.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "no attempt");
        std::thread::sleep(Duration::from_millis(20));
    }
    serve.kill9();
    // The restarted serve delivers to a back end that answers, elsewhere.
    let receiver = Receiver::start(0);
    let restarted = Instant::now();
    let serve = Serve::start_delivering(&sim, &db, Some(receiver.url()), &[]);
    let records = serve.wait_finished(&["claimed"], true, Duration::from_secs(10));
    assert_eq!(records["claimed"]["delivery"]["state"], "delivered");
    assert!(
        restarted.elapsed() < Duration::from_secs(8),
        "{:?}",
        restarted.elapsed()
    );
    drop(serve);
    drop(held);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn serve_logs_what_an_operator_needs_as_json_lines_without_colour() {
    let sim = scenario_sim(vec![]);
    let (db, dir) = temp_db("logs");
    let store = format!("sqlite:{}", db.display());
    let mut child = bankconnect(
        Some(&sim.sim),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            &store,
            "--log-format",
            "json",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(
        first.starts_with("listening on http://127.0.0.1:"),
        "{first}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a redirected log: {stderr}"
    );
    let lines: Vec<Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let messages: Vec<&str> = lines.iter().filter_map(|l| l["message"].as_str()).collect();
    for want in [
        "store opened",
        "listening",
        "shutting down",
        "leases released",
        "service stopped",
    ] {
        assert!(messages.contains(&want), "no {want:?} line in {messages:?}");
    }
    let opened = lines
        .iter()
        .find(|l| l["message"] == "store opened")
        .unwrap();
    assert_eq!(opened["store"], "sqlite");
    let _ = std::fs::remove_dir_all(dir);
}
