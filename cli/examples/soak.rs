//! The fault soak behind `cargo xtask soak`: N sessions through the simulator with a fault rate
//! over every request (5xx, 429, slow, truncated, reset, garbage, HTML) plus duplicate, delayed
//! and missing webhooks, tracked by one driver with a webhook receiver feeding it. Every session
//! must reach its scripted outcome, nothing may panic, and no session may run past its max wait
//! by more than one request timeout.
//!
//! Run: `cargo run --release -p bankconnect-cli --example soak -- [--sessions N] [--fault-rate F]
//! [--transport async|blocking]`. Ends with exactly one line:
//! `soak: sessions=N correct=C wrong=W panics=P max_overrun_ms=M polls=Q retries=R`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bankconnect_core::{Api, BaseUrl, Credentials, PollPolicy, SessionId};
use bankconnect_core::{ClientSettings, SchedulerConfig};
use bankconnect_sim::{FaultRates, Scenario, SimConfig, Simulator};
use bankconnect_webhook_verify::{Receiver, ReceiverConfig, Reception};

use bankconnect_testkit::mix;
use mix::{correct, plan, Expect};

static PANICS: AtomicU64 = AtomicU64::new(0);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(default)
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> ExitCode {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::Relaxed);
        default_hook(info);
    }));
    let args: Vec<String> = std::env::args().collect();
    let sessions: usize = arg(&args, "--sessions", 10_000);
    let fault_rate: f64 = arg(&args, "--fault-rate", 0.2);
    let transport: String = arg(&args, "--transport", "async".to_owned());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let planned: Vec<_> = (0..sessions).map(|i| plan("soak", i)).collect();
    let expected: HashMap<String, Expect> =
        planned.iter().map(|(id, _, e)| (id.clone(), *e)).collect();

    // The tracker is created first so the receiver can feed it; the sim needs the receiver's URL.
    let policy = PollPolicy {
        interval: Duration::from_millis(100),
        max_wait: Duration::from_secs(180),
        retry_budget: 14,
        retry_after_cap: Duration::from_secs(1),
        backoff: bankconnect_core::Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(1),
            multiplier: 2.0,
        },
        ..PollPolicy::default()
    };
    let limits = SchedulerConfig {
        max_in_flight: 64,
        ..SchedulerConfig::default()
    };
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let receiver_addr: SocketAddr = listener.local_addr().unwrap();
    let sim = runtime
        .block_on(Simulator::start(SimConfig {
            scenario: Scenario {
                sessions: planned.iter().filter_map(|(_, s, _)| s.clone()).collect(),
                faults: FaultRates {
                    rate: fault_rate,
                    retry_after_secs: 1,
                    slow_ms: 300,
                    ..FaultRates::default()
                },
                webhook_url: Some(format!("http://{receiver_addr}/")),
                seed: 42,
                ..Scenario::default()
            },
            ..SimConfig::default()
        }))
        .unwrap();
    let api = Api::new(
        BaseUrl::parse(&sim.base_url()).unwrap(),
        Credentials::new("sim-api-key", "sim-server-hash").unwrap(),
    );
    let ids: Vec<SessionId> = planned
        .iter()
        .map(|(id, _, _)| SessionId::new(id).unwrap())
        .collect();

    let mut outcomes = Vec::with_capacity(sessions);
    let serve = |feed: Arc<dyn Fn(bankconnect_core::WebhookHint) + Send + Sync>| {
        let app = bankconnect_webhook_verify::axum_handler::router(
            Arc::new(Receiver::new(ReceiverConfig::default())),
            move |reception| {
                if let Reception::Accepted(delivery) = reception {
                    if let Some(hint) = delivery.hint() {
                        feed(hint);
                    }
                }
            },
        );
        runtime.spawn(async move { axum::serve(listener, app).await.ok() });
    };
    if transport == "blocking" {
        let client = bankconnect_http_blocking::Client::with_settings(
            ClientSettings::new(api, 7)
                .with_policy(policy.clone())
                .with_limits(limits),
            bankconnect_http_blocking::UreqTransport::new(REQUEST_TIMEOUT),
        );
        let mut tracker = client.track_many(ids).unwrap();
        let feed = tracker.webhook_feed();
        serve(Arc::new(move |hint| {
            feed.send(hint);
        }));
        while let Some(outcome) = tracker.next_outcome() {
            outcomes.push(outcome);
        }
    } else {
        let client = bankconnect_http_async::Client::with_settings(
            ClientSettings::new(api, 7)
                .with_policy(policy.clone())
                .with_limits(limits),
            bankconnect_http_async::ReqwestTransport::new(REQUEST_TIMEOUT),
        );
        let mut tracker = client.track_many(ids).unwrap();
        let feed = tracker.webhook_feed();
        serve(Arc::new(move |hint| {
            feed.send(hint);
        }));
        runtime.block_on(async {
            while let Some(outcome) = tracker.next_outcome().await {
                outcomes.push(outcome);
            }
        });
    }

    let mut correct_count = 0usize;
    let mut wrong = 0usize;
    let mut max_overrun = 0u64;
    let (mut polls, mut retries) = (0u64, 0u64);
    let max_wait_ms = policy.max_wait.as_millis() as u64;
    for outcome in &outcomes {
        polls += u64::from(outcome.polls);
        retries += u64::from(outcome.retries);
        max_overrun = max_overrun.max(outcome.elapsed_ms.saturating_sub(max_wait_ms));
        match expected.get(outcome.session_id.as_str()) {
            Some(expect) if correct(outcome, *expect) => correct_count += 1,
            _ => {
                wrong += 1;
                if wrong <= 5 {
                    eprintln!(
                        "wrong: {}",
                        serde_json::to_string(outcome).unwrap_or_default()
                    );
                }
            }
        }
    }
    wrong += sessions.saturating_sub(outcomes.len());
    let panics = PANICS.load(Ordering::Relaxed);
    let attempts = sim.webhook_attempts();
    println!(
        "soak-detail: transport={transport} fault_rate={fault_rate} requests={} webhook_deliveries={} peak_rss_kib={}",
        sim.requests().len(),
        attempts.len(),
        peak_rss_kib()
    );
    println!(
        "soak: sessions={sessions} correct={correct_count} wrong={wrong} panics={panics} max_overrun_ms={max_overrun} polls={polls} retries={retries}"
    );
    let ok = wrong == 0
        && panics == 0
        && max_overrun <= REQUEST_TIMEOUT.as_millis() as u64
        && correct_count == sessions;
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
