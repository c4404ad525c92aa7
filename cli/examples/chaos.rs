//! The chaos run behind `cargo xtask chaos`: a fleet of `bankconnect serve` replicas on one
//! PostgreSQL schema, killed with SIGKILL and restarted at random while sessions flow.
//!
//! - The simulator (in this process) plays FinBox: the session mix of `support/mix.rs`, transient
//!   API faults at a rate, webhooks (duplicated and delayed by some scripts) posted to…
//! - …a front (in this process) that plays the load balancer: each webhook goes to a random live
//!   replica, some are lost, some duplicated to two replicas, some delayed.
//! - A delivery receiver (in this process) verifies each delivery's signature, answers 5xx at
//!   random, and hangs past the 15 s attempt timeout on a few attempts (a slow back end, which
//!   must hold up only those).
//! - Sessions are added in batches at random replicas during the first half of the run; every
//!   few seconds a random replica is killed with SIGKILL and restarted on the same port.
//!
//! After the set time the killing stops, and the run waits until every acknowledged session has
//! finished and been delivered (or a drain timeout passes), then prints exactly one line:
//!
//! `chaos: sessions=N finished=F correct=C wrong=W lost=L delivered=D duplicate_deliveries=X double_polled=P takeover_max_ms=T`
//!
//! and exits non-zero unless every session finished correctly, none was lost, every finished
//! session was delivered, and no session was polled by two replicas within one interval.
//!
//! With `--single`, one replica on a SQLite file instead, killed and restarted in place (the
//! embedded default's crash safety under the same load).
//!
//! Run: `cargo xtask chaos [--seconds 60] [--sessions 2000]`, which builds the binary and this
//! example, passes `--bin`, and runs the fleet and then `--single`. The fleet needs PostgreSQL:
//! `BANKCONNECT_TEST_POSTGRES` or `--store`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

#[path = "support/mix.rs"]
mod mix;
use bankconnect_testkit::process;
use bankconnect_testkit::schema;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use bankconnect_core::Outcome;
use bankconnect_sim::{FaultKind, FaultRates, LoggedRequest, Scenario, SimConfig, Simulator};
use mix::{correct, plan, Expect};
use schema::Schema;
use serde_json::{json, Value};

const DELIVER_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const INTERVAL: Duration = Duration::from_secs(1);
const LEASE: Duration = Duration::from_secs(3);

/// Settings from the command line.
struct Settings {
    seconds: u64,
    sessions: usize,
    replicas: usize,
    bin: PathBuf,
    store: String,
    seed: u64,
    drain: Duration,
    /// One replica on SQLite, restarted in place.
    single: bool,
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].parse().ok())
}

impl Settings {
    fn from_args() -> Result<Self, String> {
        let args: Vec<String> = std::env::args().collect();
        let bin = match arg::<PathBuf>(&args, "--bin") {
            Some(bin) => bin,
            // target/<profile>/examples/chaos → target/<profile>/bankconnect
            None => std::env::current_exe()
                .map_err(|err| err.to_string())?
                .parent()
                .and_then(|examples| examples.parent())
                .map(|profile| profile.join("bankconnect"))
                .ok_or("cannot find the bankconnect binary; pass --bin")?,
        };
        if !bin.exists() {
            return Err(format!("no binary at {}; pass --bin", bin.display()));
        }
        let single = args.iter().any(|arg| arg == "--single");
        let store = if single {
            String::new() // a SQLite file of the run's own
        } else {
            arg::<String>(&args, "--store")
                .filter(|url| !url.trim().is_empty())
                .or_else(schema::postgres_url)
                .ok_or(
                    "needs PostgreSQL: set BANKCONNECT_TEST_POSTGRES or pass --store postgres://… (or --single for SQLite)",
                )?
        };
        Ok(Self {
            seconds: arg(&args, "--seconds").unwrap_or(60),
            sessions: arg(&args, "--sessions").unwrap_or(2000),
            replicas: if single {
                1
            } else {
                arg(&args, "--replicas").unwrap_or(3)
            },
            bin,
            store,
            seed: arg(&args, "--seed").unwrap_or(7),
            drain: Duration::from_secs(arg(&args, "--drain-seconds").unwrap_or(120)),
            single,
        })
    }
}

/// A shared source of reproducible randomness (splitmix64 over a counter).
struct Dice(AtomicU64);

impl Dice {
    fn next(&self) -> u64 {
        let mut z = self
            .0
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability `p`.
    fn chance(&self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// One replica slot: a port, and the process on it when it runs.
struct Replica {
    port: u16,
    child: Option<Child>,
    /// The running process's replica id (from `/readyz`).
    id: Option<String>,
}

/// The fleet of replicas and how to start one.
struct Fleet {
    slots: Mutex<Vec<Replica>>,
    bin: PathBuf,
    store: String,
    sim_url: String,
    deliver_to: String,
    logs: PathBuf,
    http: reqwest::Client,
}

impl Fleet {
    /// Starts the replica in slot `index` and waits until it is ready.
    async fn start(&self, index: usize) {
        let port = self.slots.lock().unwrap()[index].port;
        for attempt in 0..20 {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.logs.join(format!("replica-{index}.log")))
                .unwrap();
            let mut child = Command::new(&self.bin)
                .args([
                    "serve",
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                    "--store",
                    &self.store,
                    "--interval",
                    &humantime(INTERVAL),
                    "--lease",
                    &humantime(LEASE),
                    "--max-wait",
                    "10m",
                    "--deliver-to",
                    &self.deliver_to,
                    "--delivery-schedule",
                    "0s,200ms,500ms,1s,1s,1s,1s,1s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s",
                ])
                .env("BANKCONNECT_BASE_URL", &self.sim_url)
                .env("BANKCONNECT_API_KEY", "sim-api-key")
                .env("BANKCONNECT_SERVER_HASH", "sim-server-hash")
                .env("BANKCONNECT_DELIVER_SECRET", DELIVER_SECRET)
                .env("RUST_LOG", "info")
                .stdout(Stdio::piped())
                .stderr(Stdio::from(log))
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let listening = tokio::task::spawn_blocking(move || process::listening_line(stdout))
                .await
                .unwrap();
            if listening.is_ok() {
                let id = self.ready_id(port).await;
                let mut slots = self.slots.lock().unwrap();
                slots[index].child = Some(child);
                slots[index].id = id;
                return;
            }
            // The port may still be held for a moment by the killed process's sockets.
            let _ = child.kill();
            let _ = child.wait();
            tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
        }
        panic!("replica {index} would not start; see its log");
    }

    async fn ready_id(&self, port: u16) -> Option<String> {
        for _ in 0..100 {
            if let Ok(answer) = self
                .http
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await
            {
                if answer.status() == 200 {
                    let body: Value =
                        serde_json::from_slice(&answer.bytes().await.unwrap_or_default())
                            .unwrap_or(Value::Null);
                    return body["replica"].as_str().map(str::to_owned);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// Kills the replica in slot `index` with SIGKILL; returns its replica id.
    fn kill(&self, index: usize) -> Option<String> {
        let mut slots = self.slots.lock().unwrap();
        let slot = &mut slots[index];
        if let Some(mut child) = slot.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
        slot.id.take()
    }

    /// Ports of the replicas running now.
    fn live(&self) -> Vec<u16> {
        self.slots
            .lock()
            .unwrap()
            .iter()
            .filter(|slot| slot.child.is_some())
            .map(|slot| slot.port)
            .collect()
    }

    fn stop_all(&self) {
        let count = self.slots.lock().unwrap().len();
        for index in 0..count {
            self.kill(index);
        }
    }
}

fn humantime(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The webhook front: FinBox's webhook lands on a random live replica; some are lost, some
/// duplicated to two replicas, some delayed.
struct Front {
    fleet: Arc<Fleet>,
    dice: Arc<Dice>,
    lost: AtomicU64,
    duplicated: AtomicU64,
}

async fn front(State(front): State<Arc<Front>>, request: Request) -> StatusCode {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 1 << 20).await else {
        return StatusCode::BAD_REQUEST;
    };
    let dice = &front.dice;
    if dice.chance(0.1) {
        front.lost.fetch_add(1, Ordering::Relaxed);
        return StatusCode::OK; // FinBox believes it delivered; polling must find the end.
    }
    let copies = if dice.chance(0.1) {
        front.duplicated.fetch_add(1, Ordering::Relaxed);
        2
    } else {
        1
    };
    if dice.chance(0.1) {
        tokio::time::sleep(Duration::from_millis(dice.below(1500))).await;
    }
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let mut status = StatusCode::BAD_GATEWAY;
    for _ in 0..copies {
        let live = front.fleet.live();
        if live.is_empty() {
            break;
        }
        let port = live[dice.below(live.len() as u64) as usize];
        if let Ok(answer) = front
            .fleet
            .http
            .post(format!("http://127.0.0.1:{port}{target}"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
        {
            status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(status);
        }
    }
    status
}

/// What the delivery receiver saw.
#[derive(Default)]
struct Deliveries {
    /// Verified deliveries answered 2xx, by session: (webhook-id, outcome).
    accepted: HashMap<String, Vec<(String, Value)>>,
    /// Attempts answered 5xx on purpose.
    refused: u64,
    /// Deliveries whose signature did not verify.
    bad_signatures: u64,
    /// Attempts left hanging past the attempt timeout on purpose.
    hung: u64,
}

struct Receiving {
    deliveries: Mutex<Deliveries>,
    dice: Arc<Dice>,
    auth: bankconnect_webhook_verify::Authenticator,
}

async fn receive(State(receiving): State<Arc<Receiving>>, request: Request) -> StatusCode {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 8 << 20).await else {
        return StatusCode::BAD_REQUEST;
    };
    if receiving.dice.chance(0.2) {
        receiving.deliveries.lock().unwrap().refused += 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    if receiving.dice.chance(0.02) {
        // A slow back end: past the 15 s attempt timeout, so the attempt fails and is retried;
        // other deliveries must go on meanwhile.
        receiving.deliveries.lock().unwrap().hung += 1;
        tokio::time::sleep(Duration::from_secs(20)).await;
        return StatusCode::OK;
    }
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let verified = receiving.auth.verify(&parts.headers, &body, now);
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let mut deliveries = receiving.deliveries.lock().unwrap();
    match (verified, parsed) {
        (Ok(Some(webhook_id)), Some(value)) => {
            let session = value["data"]["session_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            deliveries
                .accepted
                .entry(session)
                .or_default()
                .push((webhook_id, value["data"]["outcome"].clone()));
            StatusCode::OK
        }
        _ => {
            deliveries.bad_signatures += 1;
            StatusCode::BAD_REQUEST
        }
    }
}

async fn serve_on(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A JSON request to a replica: the status and body (`None` if it did not answer).
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let mut request = http.request(method, url).timeout(Duration::from_secs(10));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let answer = request.send().await.ok()?;
    let status = answer.status().as_u16();
    let bytes = answer.bytes().await.ok()?;
    Some((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// Every record in `state`, paged through whichever replica answers.
async fn list(fleet: &Fleet, state: &str) -> Option<Vec<Value>> {
    let mut records = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let live = fleet.live();
        let port = *live.first()?;
        let mut url = format!("http://127.0.0.1:{port}/v1/sessions?state={state}&limit=1000");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let (status, page) = call(&fleet.http, reqwest::Method::GET, url, None).await?;
        if status != 200 {
            return None;
        }
        records.extend(page["sessions"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Some(records),
        }
    }
}

/// Adds `ids` in batches at random live replicas over `window`, retrying each batch until one
/// acknowledges it. Returns the acknowledged ids.
async fn add_all(
    fleet: Arc<Fleet>,
    dice: Arc<Dice>,
    ids: Vec<String>,
    window: Duration,
) -> Vec<String> {
    const BATCH: usize = 25;
    let batches: Vec<Vec<String>> = ids.chunks(BATCH).map(<[String]>::to_vec).collect();
    let pause = window / u32::try_from(batches.len().max(1)).unwrap_or(u32::MAX);
    let mut acknowledged = Vec::new();
    for batch in batches {
        let body = json!({"sessions": batch.iter().map(|id| json!({"session_id": id})).collect::<Vec<_>>()});
        let started = Instant::now();
        loop {
            let live = fleet.live();
            if !live.is_empty() {
                let port = live[dice.below(live.len() as u64) as usize];
                let answer = call(
                    &fleet.http,
                    reqwest::Method::POST,
                    format!("http://127.0.0.1:{port}/v1/sessions"),
                    Some(body.clone()),
                )
                .await;
                if matches!(answer, Some((200 | 202, _))) {
                    acknowledged.extend(batch.iter().cloned());
                    break;
                }
            }
            if started.elapsed() > Duration::from_secs(60) {
                eprintln!("chaos: a batch was never acknowledged");
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(pause).await;
    }
    acknowledged
}

/// One kill: when (simulator milliseconds), whose, and the sessions it held then.
struct Kill {
    at_ms: u64,
    victim: String,
    held: Vec<String>,
}

/// Kills a random replica every 2–5 s until `until`, restarting it after up to 1.5 s.
async fn kill_loop(
    fleet: Arc<Fleet>,
    dice: Arc<Dice>,
    until: Instant,
    sim_started: Instant,
) -> Vec<Kill> {
    let mut kills = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_millis(2000 + dice.below(3000))).await;
        if Instant::now() >= until {
            return kills;
        }
        let count = fleet.slots.lock().unwrap().len();
        let index = dice.below(count as u64) as usize;
        let victim = fleet.slots.lock().unwrap()[index].id.clone();
        // What it holds, as the store says just before (from another replica).
        let held: Vec<String> = list(&fleet, "tracking")
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| victim.is_some() && r["lease"]["replica"].as_str() == victim.as_deref())
            .filter_map(|r| r["session_id"].as_str().map(str::to_owned))
            .collect();
        let at_ms = sim_started.elapsed().as_millis() as u64;
        let victim = fleet.kill(index).unwrap_or_default();
        kills.push(Kill {
            at_ms,
            victim,
            held,
        });
        tokio::time::sleep(Duration::from_millis(300 + dice.below(1200))).await;
        fleet.start(index).await;
    }
}

/// The replica that sent a simulator request (serve names it in its user agent).
fn sender(request: &LoggedRequest) -> Option<&str> {
    request
        .headers
        .iter()
        .find(|(name, _)| name == "user-agent")
        .and_then(|(_, agent)| agent.split("replica/").nth(1))
}

fn main() -> ExitCode {
    let settings = match Settings::from_args() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("chaos: {err}");
            return ExitCode::from(2);
        }
    };
    let schema = if settings.single {
        None
    } else {
        match Schema::create(&settings.store, "bc_chaos") {
            Ok(schema) => Some(schema),
            Err(err) => {
                eprintln!("chaos: cannot create a schema: {err}");
                return ExitCode::from(2);
            }
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ok = runtime.block_on(run(&settings, schema.as_ref().map(Schema::url)));
    drop(schema);
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn run(settings: &Settings, store: Option<String>) -> bool {
    let dice = Arc::new(Dice(AtomicU64::new(settings.seed)));
    let planned: Vec<_> = (0..settings.sessions).map(|i| plan("chaos", i)).collect();
    let expected: HashMap<String, Expect> =
        planned.iter().map(|(id, _, e)| (id.clone(), *e)).collect();
    let logs = std::env::temp_dir().join(format!("bankconnect-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&logs).unwrap();
    let store = store.unwrap_or_else(|| format!("sqlite:{}", logs.join("chaos.db").display()));

    // The front's address must be known before the simulator starts (it posts webhooks there).
    let front_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front_addr = front_listener.local_addr().unwrap();
    let sim = Simulator::start(SimConfig {
        scenario: Scenario {
            sessions: planned.iter().filter_map(|(_, s, _)| s.clone()).collect(),
            faults: FaultRates {
                rate: 0.05,
                kinds: vec![
                    FaultKind::ServerError,
                    FaultKind::RateLimited,
                    FaultKind::Reset,
                    FaultKind::Html,
                    FaultKind::Truncated,
                ],
                retry_after_secs: 1,
                ..FaultRates::default()
            },
            webhook_url: Some(format!("http://{front_addr}/webhooks/bankconnect")),
            seed: settings.seed,
            ..Scenario::default()
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let sim_started = Instant::now();

    let receiving = Arc::new(Receiving {
        deliveries: Mutex::new(Deliveries::default()),
        dice: Arc::clone(&dice),
        auth: bankconnect_webhook_verify::Authenticator::standard_webhooks(&[DELIVER_SECRET])
            .unwrap(),
    });
    let receiver_addr = serve_on(
        axum::Router::new()
            .route("/deliveries", axum::routing::post(receive))
            .with_state(Arc::clone(&receiving)),
    )
    .await;

    let fleet = Arc::new(Fleet {
        slots: Mutex::new(
            (0..settings.replicas)
                .map(|_| Replica {
                    port: free_port(),
                    child: None,
                    id: None,
                })
                .collect(),
        ),
        bin: settings.bin.clone(),
        store,
        sim_url: sim.base_url(),
        deliver_to: format!("http://{receiver_addr}/deliveries"),
        logs: logs.clone(),
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap(),
    });
    let front_state = Arc::new(Front {
        fleet: Arc::clone(&fleet),
        dice: Arc::clone(&dice),
        lost: AtomicU64::new(0),
        duplicated: AtomicU64::new(0),
    });
    let front_app = axum::Router::new()
        .fallback(front)
        .with_state(Arc::clone(&front_state));
    tokio::spawn(async move { axum::serve(front_listener, front_app).await });

    for index in 0..settings.replicas {
        fleet.start(index).await;
    }
    let started = Instant::now();
    let until = started + Duration::from_secs(settings.seconds);
    let ids: Vec<String> = planned.iter().map(|(id, _, _)| id.clone()).collect();
    let adding = tokio::spawn(add_all(
        Arc::clone(&fleet),
        Arc::clone(&dice),
        ids,
        Duration::from_secs(settings.seconds) / 2,
    ));
    let killing = tokio::spawn(kill_loop(
        Arc::clone(&fleet),
        Arc::clone(&dice),
        until,
        sim_started,
    ));
    let acknowledged = adding.await.unwrap();
    let kills = killing.await.unwrap();

    // Drain: every acknowledged session finished and delivered, or the drain timeout.
    let drain_until = Instant::now() + settings.drain;
    let mut finished: Vec<Value> = Vec::new();
    loop {
        if let Some(records) = list(&fleet, "finished").await {
            finished = records;
        }
        let delivered = receiving.deliveries.lock().unwrap().accepted.len();
        if finished.len() >= acknowledged.len() && delivered >= finished.len() {
            break;
        }
        if Instant::now() >= drain_until {
            eprintln!(
                "chaos: drain timeout with {} of {} finished, {delivered} delivered",
                finished.len(),
                acknowledged.len()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    fleet.stop_all();

    // The verdicts.
    let acknowledged: HashSet<String> = acknowledged.into_iter().collect();
    let mut correct_count = 0usize;
    let mut wrong = 0usize;
    let mut outcomes: HashMap<String, Value> = HashMap::new();
    for record in &finished {
        let id = record["session_id"].as_str().unwrap_or_default().to_owned();
        let outcome = serde_json::from_value::<Outcome>(record["outcome"].clone());
        match (outcome, expected.get(&id)) {
            (Ok(outcome), Some(expect)) if correct(&outcome, *expect) => correct_count += 1,
            _ => {
                wrong += 1;
                if wrong <= 5 {
                    eprintln!("chaos: wrong: {record}");
                }
            }
        }
        outcomes.insert(id, record["outcome"].clone());
    }
    let lost = acknowledged
        .iter()
        .filter(|id| !outcomes.contains_key(*id))
        .count();
    let deliveries = receiving.deliveries.lock().unwrap();
    let mut delivered = 0usize;
    let mut duplicate_deliveries = 0usize;
    for (id, outcome) in &outcomes {
        let Some(got) = deliveries.accepted.get(id) else {
            continue;
        };
        let same_id = got.iter().all(|(webhook_id, _)| *webhook_id == got[0].0);
        if same_id && got.iter().all(|(_, delivered)| delivered == outcome) {
            delivered += 1;
        } else if wrong <= 5 {
            eprintln!("chaos: delivery of {id} differs from its record: {got:?}");
        }
        duplicate_deliveries += got.len() - 1;
    }

    // Polls: never two replicas on one session within one interval; takeover after a kill.
    let requests = sim.requests();
    let mut polls: HashMap<&str, Vec<(u64, &str)>> = HashMap::new();
    for request in &requests {
        if !request.path.ends_with("/progress/") {
            continue;
        }
        if let (Some(session), Some(replica)) = (request.session_id.as_deref(), sender(request)) {
            polls
                .entry(session)
                .or_default()
                .push((request.at_ms, replica));
        }
    }
    let interval_ms = INTERVAL.as_millis() as u64;
    let mut double_polled = 0usize;
    for (session, times) in &mut polls {
        times.sort_unstable();
        if settings.single {
            // One process at a time: a restarted one polls at once what the dead one polled
            // last, which is no double polling.
            continue;
        }
        if let Some(pair) = times
            .windows(2)
            .find(|w| w[0].1 != w[1].1 && w[1].0 - w[0].0 < interval_ms)
        {
            double_polled += 1;
            if double_polled <= 5 {
                eprintln!("chaos: {session} polled by two replicas at once: {pair:?}");
            }
        }
    }
    let mut takeover_max_ms = 0u64;
    for kill in &kills {
        for session in &kill.held {
            // The first poll by another replica after the kill (none if it ended meanwhile
            // by a webhook confirmed elsewhere, or finished before).
            let next = polls.get(session.as_str()).and_then(|times| {
                times
                    .iter()
                    .find(|(at, replica)| *at > kill.at_ms && *replica != kill.victim)
            });
            if let Some((at, _)) = next {
                if outcomes.contains_key(session) {
                    takeover_max_ms = takeover_max_ms.max(at - kill.at_ms);
                }
            }
        }
    }
    println!(
        "chaos-detail: store={} seconds={} replicas={} kills={} api_requests={} webhooks_lost={} webhooks_duplicated={} deliveries_refused={} deliveries_hung={} bad_signatures={} logs={}",
        if settings.single { "sqlite" } else { "postgres" },
        settings.seconds,
        settings.replicas,
        kills.len(),
        requests.len(),
        front_state.lost.load(Ordering::Relaxed),
        front_state.duplicated.load(Ordering::Relaxed),
        deliveries.refused,
        deliveries.hung,
        deliveries.bad_signatures,
        logs.display()
    );
    let sessions = acknowledged.len();
    println!(
        "chaos: sessions={sessions} finished={} correct={correct_count} wrong={wrong} lost={lost} delivered={delivered} duplicate_deliveries={duplicate_deliveries} double_polled={double_polled} takeover_max_ms={takeover_max_ms}",
        outcomes.len()
    );
    let ok = sessions == settings.sessions
        && wrong == 0
        && lost == 0
        && correct_count == sessions
        && delivered == outcomes.len()
        && double_polled == 0
        && deliveries.bad_signatures == 0;
    if ok {
        let _ = std::fs::remove_dir_all(&logs);
    }
    ok
}
