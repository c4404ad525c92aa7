//! `bankconnect serve` measured as a process (the release binary), side by side with baselines
//! in one run:
//!
//! - `serve_add_session`: `POST /v1/sessions`, one per request, committed to SQLite, against a
//!   bare axum handler doing the same single-row insert into the same SQLite file (serve's
//!   `sessions` table, same settings). Latency per request from a keep-alive client, blocks
//!   alternated. Serve also starts tracking each session (its first poll), which the bare
//!   handler does not.
//! - `serve_webhook_intake`: a FinBox webhook for a tracking session, accepted and committed,
//!   against the same bare handler.
//! - `serve_restart_100k`: from process start on a store of 100 000 tracking sessions to the first
//!   progress request received by the API (goal: under 3 s, the baseline column).
//! - `serve_notice_latency`: from a webhook's arrival to the signed delivery received by the
//!   lender's endpoint (confirmation poll and session_status included), p99 over N sessions
//!   (goal: 50 ms, the baseline column).
//! - `serve_delivery_throughput`: deliveries per second from finished sessions (committed with
//!   their deliveries due) to a local receiver that answers at once, against a bare reqwest loop
//!   POSTing the same signed bodies to the same receiver at the same concurrency (64); reported
//!   as microseconds per delivery, the medians of five alternating rounds (goal: ratio at most
//!   1.5, and at least 1 000 deliveries/s).
//! - `fleet_scaling` (with `BANKCONNECT_TEST_POSTGRES`): CPU time of the replicas per 1 000
//!   sessions tracked to the end, three replicas against one on the same PostgreSQL and load;
//!   goal at most 1.25x (at least 0.8x the work per CPU second per replica).
//!
//! Run: `cargo bench -p bankconnect-cli --bench serve` (`-- --quick` for a short run). For the
//! delivery line, `BENCH_DELIVERIES` and `BENCH_ROUNDS` change its size, and
//! `BENCH_SERVE_BINS=a,b,…` (paths of `bankconnect` builds) also runs each build on a copy of
//! every round's store and prints their rates and CPU side by side.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use bankconnect_testkit::proc_stat;
use bankconnect_testkit::process;
use bankconnect_testkit::schema;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bankconnect_sim::{Scenario, SessionScript, SimConfig, Simulator};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_bankconnect");
const DELIVER_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn line(name: &str, unit: &str, ours: f64, baseline: f64) {
    println!(
        "bench {name}: ours={ours:.2} baseline={baseline:.2} unit={unit} ratio={:.2}",
        ours / baseline.max(1e-9)
    );
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "bankconnect-bench-{name}-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running `bankconnect serve`.
struct Service {
    child: Child,
    base: String,
}

impl Service {
    fn start(api: &str, store: &str, extra: &[&str]) -> Self {
        Self::start_bin(BIN, api, store, extra)
    }

    fn start_bin(bin: &str, api: &str, store: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--store", store])
            .args(extra)
            .env("BANKCONNECT_BASE_URL", api)
            .env("BANKCONNECT_API_KEY", "sim-api-key")
            .env("BANKCONNECT_SERVER_HASH", "sim-server-hash")
            .env("BANKCONNECT_DELIVER_SECRET", DELIVER_SECRET)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = process::listening_on(&mut child);
        Self { child, base }
    }

    fn cpu_ms(&self) -> f64 {
        proc_stat::cpu_ms(Some(self.child.id()))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn post(agent: &ureq::Agent, url: &str, body: &str) -> u16 {
    let mut response = agent
        .post(url)
        .header("content-type", "application/json")
        .send(body)
        .unwrap();
    let _ = response.body_mut().read_to_vec();
    response.status().as_u16()
}

/// Adds `ids` in one batch at the service at `base` (each new: 202).
fn add_batch(agent: &ureq::Agent, base: &str, ids: &[String]) {
    let sessions: Vec<Value> = ids.iter().map(|id| json!({"session_id": id})).collect();
    let body = json!({ "sessions": sessions }).to_string();
    assert_eq!(post(agent, &format!("{base}/v1/sessions"), &body), 202);
}

fn get(agent: &ureq::Agent, url: &str) -> Value {
    let mut response = agent.get(url).call().unwrap();
    serde_json::from_slice(&response.body_mut().read_to_vec().unwrap()).unwrap_or(Value::Null)
}

/// The baseline: a bare axum handler that parses the JSON body and inserts one row into the
/// `sessions` table of serve's own SQLite file (the same single-row insert serve's add makes,
/// with the same table, indexes and settings: WAL, `synchronous = FULL`), answering 202. Runs
/// on a runtime of its own; returns its URL.
fn bare_handler(db: &Path) -> String {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;")
        .unwrap();
    let conn = Arc::new(Mutex::new(conn));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let app = axum::Router::new().route(
                "/insert",
                axum::routing::post(move |body: axum::body::Bytes| {
                    let conn = Arc::clone(&conn);
                    async move {
                        let Ok(value) = serde_json::from_slice::<Value>(&body) else {
                            return axum::http::StatusCode::BAD_REQUEST;
                        };
                        let id = value["session_id"].as_str().unwrap_or_default().to_owned();
                        let now = SystemTime::now()
                            .duration_since(SystemTime::UNIX_EPOCH)
                            .unwrap()
                            .as_millis() as i64;
                        tokio::task::block_in_place(|| {
                            conn.lock()
                                .unwrap()
                                .prepare_cached(
                                    "INSERT INTO sessions (session_id, state, added_at_ms, updated_at_ms) \
                                     VALUES (?1, 'tracking', ?2, ?2) ON CONFLICT (session_id) DO NOTHING",
                                )
                                .unwrap()
                                .execute(rusqlite::params![id, now])
                                .unwrap();
                        });
                        axum::http::StatusCode::ACCEPTED
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{}/insert", rx.recv().unwrap())
}

/// Mean milliseconds per request of `ours` and `baseline`, sent in alternating blocks.
fn alternate(
    requests: usize,
    mut ours: impl FnMut(usize),
    mut baseline: impl FnMut(usize),
) -> (f64, f64) {
    const BLOCK: usize = 50;
    let (mut ours_total, mut base_total) = (Duration::ZERO, Duration::ZERO);
    let mut i = 0;
    while i < requests {
        let end = (i + BLOCK).min(requests);
        let started = Instant::now();
        for k in i..end {
            ours(k);
        }
        ours_total += started.elapsed();
        let started = Instant::now();
        for k in i..end {
            baseline(k);
        }
        base_total += started.elapsed();
        i = end;
    }
    let per = |total: Duration| total.as_secs_f64() * 1000.0 / requests as f64;
    (per(ours_total), per(base_total))
}

/// An in-process simulator of these sessions, each scripted by `script` (never webhooked).
fn sim_of(
    runtime: &tokio::runtime::Runtime,
    ids: &[String],
    script: impl Fn(SessionScript) -> SessionScript,
) -> Simulator {
    runtime
        .block_on(Simulator::start(SimConfig {
            scenario: Scenario {
                sessions: ids
                    .iter()
                    .map(|id| script(SessionScript::new(id).without_webhook()))
                    .collect(),
                ..Scenario::default()
            },
            ..SimConfig::default()
        }))
        .unwrap()
}

fn add_and_intake(runtime: &tokio::runtime::Runtime, requests: usize) {
    let dir = temp_dir("intake");
    let ids: Vec<String> = (0..requests).map(|i| format!("add-{i}")).collect();
    // Processing for an hour: the first poll of each is all the tracking there is.
    let sim = sim_of(runtime, &ids, |s| {
        s.complete_after(Duration::from_secs(3600))
    });
    let db = dir.join("serve.db");
    let store = format!("sqlite:{}", db.display());
    let serve = Service::start(&sim.base_url(), &store, &["--interval", "1h"]);
    let bare = bare_handler(&db);
    let agent = agent();
    let sessions = format!("{}/v1/sessions", serve.base);
    let (serve_cpu, own_cpu) = (serve.cpu_ms(), proc_stat::cpu_ms(None));
    let (ours, baseline) = alternate(
        requests,
        |i| {
            let body = json!({"session_id": ids[i]}).to_string();
            assert_eq!(post(&agent, &sessions, &body), 202);
        },
        |i| {
            let body = json!({"session_id": format!("bare-add-{i}")}).to_string();
            assert_eq!(post(&agent, &bare, &body), 202);
        },
    );
    line("serve_add_session", "ms", ours, baseline);
    println!(
        "serve_add_session: CPU per add: serve {:.3} ms; this process (client, bare handler, simulator) {:.3} ms per request",
        (serve.cpu_ms() - serve_cpu) / requests as f64,
        (proc_stat::cpu_ms(None) - own_cpu) / (2 * requests) as f64
    );
    let hooks = format!("{}/webhooks/bankconnect", serve.base);
    let (ours, baseline) = alternate(
        requests,
        |i| {
            let body = json!({"session_id": ids[i], "event_name": "ENRICHMENT_NOTIFICATION", "accounts": []}).to_string();
            assert_eq!(post(&agent, &hooks, &body), 200);
        },
        |i| {
            let body = json!({"session_id": format!("bare-hook-{i}"), "event_name": "ENRICHMENT_NOTIFICATION", "accounts": []}).to_string();
            assert_eq!(post(&agent, &bare, &body), 202);
        },
    );
    line("serve_webhook_intake", "ms", ours, baseline);
    drop(serve);
    let _ = std::fs::remove_dir_all(&dir);
}

fn restart(runtime: &tokio::runtime::Runtime, sessions: usize) {
    let dir = temp_dir("restart");
    let url = format!("sqlite:{}", dir.join("serve.db").display());
    runtime.block_on(async {
        let store = bankconnect_store::Store::open(&url).await.unwrap();
        let now = SystemTime::now();
        for chunk in (0..sessions).collect::<Vec<_>>().chunks(1000) {
            let batch = chunk
                .iter()
                .map(|i| {
                    bankconnect_store::NewSession::new(
                        bankconnect_core::SessionId::new(format!("r-{i}")).unwrap(),
                    )
                })
                .collect();
            store.add_sessions(batch, now).await.unwrap();
        }
    });
    // The API: a bare listener; the time of the first request line is what counts.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let api = format!("http://{}/bank-connect/v1", listener.local_addr().unwrap());
    let started = Instant::now();
    let serve = Service::start(&api, &url, &["--interval", "1h"]);
    let (mut stream, _) = listener.accept().unwrap();
    let mut first = [0u8; 64];
    let _ = stream.read(&mut first);
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    assert!(
        String::from_utf8_lossy(&first).contains("GET "),
        "a request"
    );
    line("serve_restart_100k", "ms", ms, 3000.0);
    println!(
        "serve_restart_100k: {ms:.0} ms from process start on {sessions} tracking sessions to the first progress request (goal under 3000 ms)"
    );
    drop(serve);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Webhook in → delivery out, one session at a time.
fn notice_latency(runtime: &tokio::runtime::Runtime, sessions: usize) {
    let dir = temp_dir("notice");
    let ids: Vec<String> = (0..sessions).map(|i| format!("n-{i}")).collect();
    let sim = sim_of(runtime, &ids, |s| {
        s.complete_after(Duration::from_millis(200))
    });
    // The lender's endpoint: each delivery's session id, as it arrives.
    let (delivered_tx, delivered) = mpsc::channel::<String>();
    let delivered_tx = Arc::new(Mutex::new(delivered_tx));
    let receiver = runtime.block_on(async {
        let app = axum::Router::new().route(
            "/deliveries",
            axum::routing::post(move |body: axum::body::Bytes| {
                let tx = Arc::clone(&delivered_tx);
                async move {
                    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    if let Some(id) = value["data"]["session_id"].as_str() {
                        let _ = tx.lock().unwrap().send(id.to_owned());
                    }
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/deliveries")
    });
    let store = format!("sqlite:{}", dir.join("serve.db").display());
    let serve = Service::start(
        &sim.base_url(),
        &store,
        &["--interval", "1h", "--deliver-to", &receiver],
    );
    let agent = agent();
    for chunk in ids.chunks(1000) {
        add_batch(&agent, &serve.base, chunk);
    }
    // Every session polled once (processing), then complete at the API; the next poll would
    // come only in an hour, so each delivery follows its webhook.
    let deadline = Instant::now() + Duration::from_secs(60);
    while sim.requests().len() < sessions && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1200)); // past the webhook confirmation spacing
    let hooks = format!("{}/webhooks/bankconnect", serve.base);
    let mut latencies = Vec::with_capacity(sessions);
    for id in &ids {
        let body =
            json!({"session_id": id, "event_name": "ENRICHMENT_NOTIFICATION", "accounts": []});
        let sent = Instant::now();
        assert_eq!(post(&agent, &hooks, &body.to_string()), 200);
        loop {
            let got = delivered
                .recv_timeout(Duration::from_secs(30))
                .expect("a delivery");
            if got == *id {
                break;
            }
        }
        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    let (p50, p99) = (at(0.5), at(0.99));
    line("serve_notice_latency_p99", "ms", p99, 50.0);
    println!(
        "serve_notice_latency: webhook in to delivery received over {sessions} sessions: p50 {p50:.1} ms, p99 {p99:.1} ms, max {:.1} ms (goal p99 <= 50 ms)",
        latencies.last().copied().unwrap_or_default()
    );
    drop(serve);
    let _ = std::fs::remove_dir_all(&dir);
}

/// CPU milliseconds of `replicas` replicas per 1 000 sessions tracked to the end.
fn fleet_run(
    runtime: &tokio::runtime::Runtime,
    base: &str,
    replicas: usize,
    sessions: usize,
    round: usize,
) -> f64 {
    let prefix = format!("f{replicas}-{round}");
    let ids: Vec<String> = (0..sessions).map(|i| format!("{prefix}-{i}")).collect();
    let sim = sim_of(runtime, &ids, |s| s.complete_after_polls(3));
    let schema = schema::Schema::create(base, "bc_bench").unwrap();
    let fleet: Vec<Service> = (0..replicas)
        .map(|_| {
            Service::start(
                &sim.base_url(),
                &schema.url(),
                &[
                    "--interval",
                    "100ms",
                    "--lease",
                    "3s",
                    "--no-accounts",
                    "--concurrency",
                    "64",
                ],
            )
        })
        .collect();
    let agent = agent();
    // Every replica counts the others before the load comes.
    std::thread::sleep(Duration::from_millis(1200));
    let before: f64 = fleet.iter().map(Service::cpu_ms).sum();
    for (k, chunk) in ids.chunks(500).enumerate() {
        add_batch(&agent, &fleet[k % replicas].base, chunk);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let page = get(
            &agent,
            &format!("{}/v1/sessions?state=tracking&limit=1", fleet[0].base),
        );
        if page["sessions"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(Instant::now() < deadline, "the fleet did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    let after: f64 = fleet.iter().map(Service::cpu_ms).sum();
    drop(fleet);
    (after - before) * 1000.0 / sessions as f64
}

fn fleet_scaling(runtime: &tokio::runtime::Runtime, sessions: usize, rounds: usize) {
    let Some(base) = schema::postgres_url() else {
        println!("fleet_scaling: skipped (set BANKCONNECT_TEST_POSTGRES)");
        return;
    };
    let (mut one, mut three) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        one.push(fleet_run(runtime, &base, 1, sessions, round));
        three.push(fleet_run(runtime, &base, 3, sessions, round));
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (one, three) = (median(one), median(three));
    line("fleet_scaling", "cpu_ms_per_1000_sessions", three, one);
    println!(
        "fleet_scaling: {sessions} sessions (3 polls each, 100 ms interval): {three:.0} CPU ms per 1000 with 3 replicas, {one:.0} with 1: {:.2}x the work per CPU second per replica (goal >= 0.8x)",
        one / three.max(1e-9)
    );
}

/// A local receiver that answers 200 at once, counting what it got.
fn counting_receiver(
    runtime: &tokio::runtime::Runtime,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&count);
    let url = runtime.block_on(async move {
        let app = axum::Router::new().route(
            "/deliveries",
            axum::routing::post(move |_body: axum::body::Bytes| {
                let counted = Arc::clone(&counted);
                async move {
                    counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/deliveries")
    });
    (url, count)
}

/// Waits until `count` reaches `want`; the time from its first to its last increment.
fn time_to(count: &std::sync::atomic::AtomicUsize, want: usize, from: usize) -> Duration {
    use std::sync::atomic::Ordering;
    let deadline = Instant::now() + Duration::from_secs(300);
    while count.load(Ordering::Relaxed) <= from {
        assert!(Instant::now() < deadline, "no delivery");
        std::thread::sleep(Duration::from_micros(200));
    }
    let first = Instant::now();
    while count.load(Ordering::Relaxed) < from + want {
        assert!(
            Instant::now() < deadline,
            "deliveries stalled at {}",
            count.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    first.elapsed()
}

fn delivery_throughput(runtime: &tokio::runtime::Runtime, sessions: usize, rounds: usize) {
    const CONCURRENCY: usize = 64;
    let (url, count) = counting_receiver(runtime);
    let sim = sim_of(runtime, &[], |s| s);
    let ids: Vec<String> = (0..sessions).map(|i| format!("d-{i:06}")).collect();
    // Finished sessions with their deliveries due, as a restart after an outage finds them.
    let outcome = json!({"session_id": "x", "outcome": "completed", "notified_by": "poll",
        "polls": 3, "retries": 0, "elapsed_ms": 4000, "accounts": [], "error": null});
    // The baseline: the same signed bodies, the same concurrency, a bare reqwest loop.
    let secret = bankconnect_webhook_verify::WebhookSecret::standard(DELIVER_SECRET).unwrap();
    let bodies: Arc<Vec<(String, String, String)>> = Arc::new(
        ids.iter()
            .map(|id| {
                let body = json!({"type": "session.finished", "timestamp": "2026-12-01T00:00:00.000Z",
                    "data": {"session_id": id, "reference": null, "state": "finished",
                    "outcome": outcome, "delivery": {"state": "pending", "attempts": 0, "last_error": null}}})
                .to_string();
                let webhook_id = format!("msg_{id}");
                let signature = bankconnect_webhook_verify::sign_standard(&secret, &webhook_id, 1_764_547_200, body.as_bytes());
                (webhook_id, signature, body)
            })
            .collect(),
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap();
    // Rounds alternate serve and the baseline; the line reports the medians (one round on
    // this machine varies by a quarter either way).
    let mut ours = Vec::new();
    let mut baseline = Vec::new();
    let mut serve_cpu = Vec::new();
    for round in 0..rounds {
        let dir = temp_dir(&format!("delivery-{round}"));
        let store_url = format!("sqlite:{}", dir.join("serve.db").display());
        runtime.block_on(async {
            let store = bankconnect_store::Store::open(&store_url).await.unwrap();
            let now = SystemTime::now();
            for chunk in ids.chunks(1000) {
                let batch = chunk
                    .iter()
                    .map(|id| {
                        bankconnect_store::NewSession::new(
                            bankconnect_core::SessionId::new(id).unwrap(),
                        )
                    })
                    .collect();
                store.add_sessions(batch, now).await.unwrap();
            }
            for id in &ids {
                let session = bankconnect_core::SessionId::new(id).unwrap();
                store
                    .finish_session_delivering_at(&session, &outcome, format!("msg_{id}"), now, now)
                    .await
                    .unwrap();
            }
        });
        // Builds of serve compared side by side on copies of this round's store (a change
        // measured against its parent in one run, not across runs of a noisy machine).
        if let Ok(bins) = std::env::var("BENCH_SERVE_BINS") {
            let mut out = String::new();
            for (i, bin) in bins.split(',').enumerate() {
                let copy = dir.join(format!("ab-{i}"));
                std::fs::create_dir_all(&copy).unwrap();
                for f in std::fs::read_dir(&dir).unwrap() {
                    let f = f.unwrap();
                    if f.file_type().unwrap().is_file() {
                        std::fs::copy(f.path(), copy.join(f.file_name())).unwrap();
                    }
                }
                let url_i = format!("sqlite:{}", copy.join("serve.db").display());
                let from = count.load(std::sync::atomic::Ordering::Relaxed);
                let serve =
                    Service::start_bin(bin, &sim.base_url(), &url_i, &["--deliver-to", &url]);
                let took = time_to(&count, sessions, from);
                let cpu = serve.cpu_ms();
                drop(serve);
                out += &format!(
                    " [{i}] {:.0}/s {:.1}us",
                    sessions as f64 / took.as_secs_f64(),
                    cpu * 1000.0 / sessions as f64
                );
            }
            println!("serve builds, round {round}:{out} (deliveries/s, serve CPU per delivery)");
        }
        let from = count.load(std::sync::atomic::Ordering::Relaxed);
        let serve = Service::start(&sim.base_url(), &store_url, &["--deliver-to", &url]);
        ours.push(time_to(&count, sessions, from));
        serve_cpu.push(serve.cpu_ms());
        drop(serve);
        let from = count.load(std::sync::atomic::Ordering::Relaxed);
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let workers: Vec<_> = (0..CONCURRENCY)
            .map(|_| {
                let (bodies, next, client, url) = (
                    Arc::clone(&bodies),
                    Arc::clone(&next),
                    client.clone(),
                    url.clone(),
                );
                runtime.spawn(async move {
                    loop {
                        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((id, signature, body)) = bodies.get(n) else {
                            return;
                        };
                        let _ = client
                            .post(&url)
                            .header("content-type", "application/json")
                            .header("webhook-id", id)
                            .header("webhook-timestamp", "1764547200")
                            .header("webhook-signature", signature)
                            .body(body.clone())
                            .send()
                            .await;
                    }
                })
            })
            .collect();
        baseline.push(time_to(&count, sessions, from));
        for worker in workers {
            runtime.block_on(worker).unwrap();
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    let per = |d: &Duration| d.as_secs_f64() * 1e6 / sessions as f64;
    let rate = |d: &Duration| sessions as f64 / d.as_secs_f64();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    line(
        "serve_delivery_throughput",
        "us_per_delivery",
        median(ours.iter().map(per).collect()),
        median(baseline.iter().map(per).collect()),
    );
    let shown = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.0}/s", rate(d)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "serve_delivery_throughput: {sessions} deliveries at concurrency {CONCURRENCY}, {rounds} rounds: serve {} (median {:.0} ms CPU), bare reqwest loop {}",
        shown(&ours),
        median(serve_cpu),
        shown(&baseline),
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // Other plain arguments pick the cases to run by a part of their name (all when none).
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted =
        |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if wanted("serve_add_session serve_webhook_intake") {
        add_and_intake(&runtime, if quick { 200 } else { 600 });
    }
    if wanted("serve_restart_100k") {
        restart(&runtime, if quick { 20_000 } else { 100_000 });
    }
    if wanted("serve_notice_latency") {
        notice_latency(&runtime, if quick { 200 } else { 1000 });
    }
    if wanted("serve_delivery_throughput") {
        delivery_throughput(
            &runtime,
            std::env::var("BENCH_DELIVERIES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(if quick { 2000 } else { 10_000 }),
            std::env::var("BENCH_ROUNDS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(if quick { 1 } else { 5 }),
        );
    }
    if wanted("fleet_scaling") {
        fleet_scaling(
            &runtime,
            if quick { 1000 } else { 3000 },
            if quick { 1 } else { 3 },
        );
    }
}
