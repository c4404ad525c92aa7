//! The chaos run behind `cargo xtask chaos` (a tool of its own: the fleet in `fleet.rs`, the lossy
//! webhook front in `front.rs`, the flaky and slow receiver in `receiver.rs`): a fleet of `bankconnect serve` replicas on one
//! PostgreSQL schema, killed with SIGKILL and restarted at random while sessions flow.
//!
//! - The simulator (in this process) plays FinBox: the session mix of `bankconnect_testkit::mix`, transient
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
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod dice;
mod fleet;
mod front;
mod receiver;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bankconnect_core::Outcome;
use bankconnect_sim::{FaultKind, FaultRates, Scenario, SimConfig, Simulator};
use bankconnect_testkit::mix::{correct, plan, Expect};
use bankconnect_testkit::schema::{self, Schema};
use serde_json::Value;

use dice::Dice;
use fleet::{add_all, free_port, kill_loop, list, sender, Fleet, Replica};
use front::{front, Front};
use receiver::{receive, serve_on, Deliveries, Receiving};

pub(crate) const DELIVER_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);
pub(crate) const LEASE: Duration = Duration::from_secs(3);

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
            // target/<profile>/chaos → target/<profile>/bankconnect
            None => std::env::current_exe()
                .map_err(|err| err.to_string())?
                .parent()
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
