//! Both drivers against hand-written polling loops, side by side in one run, on the simulator.
//!
//! Each side tracks the same N sessions (completing after 4 polls) with the same interval and
//! the same cap on requests in flight; the hand-written loops (`bankconnect-bench-peers`) use
//! reqwest / ureq and parse the answer into the structs a user would declare, with no policy,
//! retries or scheduler. Wall time and CPU time (the whole process, simulator included, which
//! serves the same requests for both) are reported as `bench NAME: ours=X baseline=Y unit=U
//! ratio=R` lines.
//!
//! Run: `cargo bench -p bankconnect-cli --bench drivers` (`-- --quick` for a short run).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use bankconnect_bench_peers::{poll_async, poll_blocking, Target};
use bankconnect_testkit::proc_stat;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bankconnect_core::SchedulerConfig;
use bankconnect_core::{Api, BaseUrl, Credentials, PollPolicy, SessionId};
use bankconnect_sim::{Scenario, SessionScript, SimConfig, Simulator};

const POLLS: u32 = 4;
const CAP: usize = 16;

struct Measure {
    wall_ms: f64,
    cpu_ms: f64,
}

fn measure(f: impl FnOnce()) -> Measure {
    let cpu = proc_stat::cpu_ms(None);
    let started = Instant::now();
    f();
    Measure {
        wall_ms: started.elapsed().as_secs_f64() * 1000.0,
        cpu_ms: proc_stat::cpu_ms(None) - cpu,
    }
}

fn reset(sim: &Simulator, ids: &[String]) {
    for id in ids {
        sim.add_session(SessionScript::new(id).complete_after_polls(POLLS));
    }
}

fn api(sim: &Simulator) -> Api {
    Api::new(
        BaseUrl::parse(&sim.base_url()).unwrap(),
        Credentials::new("sim-api-key", "sim-server-hash").unwrap(),
    )
}

fn policy(interval: Duration) -> PollPolicy {
    PollPolicy {
        interval,
        interval_jitter: 0.0,
        fetch_accounts: false,
        ..PollPolicy::default()
    }
}

fn limits() -> SchedulerConfig {
    SchedulerConfig {
        max_in_flight: CAP,
        ..SchedulerConfig::default()
    }
}

fn line(name: &str, unit: &str, ours: f64, baseline: f64) {
    println!(
        "bench {name}: ours={ours:.0} baseline={baseline:.0} unit={unit} ratio={:.2}",
        ours / baseline.max(1e-9)
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let sessions = if quick { 200 } else { 600 };
    // CPU time is counted in 10 ms ticks and a run takes 50-90 ms of it: one tick either way
    // moved a single run's ratio by a fifth. Summed over ten runs the ticks average out to a
    // few percent.
    let rounds = if quick { 2 } else { 10 };
    let interval = Duration::from_millis(50);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sim = runtime
        .block_on(Simulator::start(SimConfig {
            scenario: Scenario::default(),
            ..SimConfig::default()
        }))
        .unwrap();
    let ids: Vec<String> = (0..sessions).map(|i| format!("bench-{i}")).collect();
    let session_ids: Vec<SessionId> = ids.iter().map(|id| SessionId::new(id).unwrap()).collect();
    let target = Target {
        base: sim.base_url(),
        api_key: "sim-api-key".into(),
        server_hash: "sim-server-hash".into(),
        interval,
    };
    let async_ours = || {
        reset(&sim, &ids);
        measure(|| {
            runtime.block_on(async {
                let client = bankconnect_http_async::Client::from_settings(
                    bankconnect_core::ClientSettings::new(api(&sim), 7)
                        .with_policy(policy(interval))
                        .with_limits(limits()),
                );
                let mut tracker = client.track_many(session_ids.clone()).unwrap();
                while let Some(outcome) = tracker.next_outcome().await {
                    assert!(outcome.outcome.is_completed());
                }
            })
        })
    };
    let async_baseline = || {
        reset(&sim, &ids);
        measure(|| {
            runtime.block_on(poll_async(
                Arc::new(target.clone()),
                ids.clone(),
                CAP,
                |ended| assert_eq!(ended.outcome, "completed", "{ended:?}"),
            ))
        })
    };
    let blocking_ours = || {
        reset(&sim, &ids);
        let before = sim.connections();
        let m = measure(|| {
            let client = bankconnect_http_blocking::Client::from_settings(
                bankconnect_core::ClientSettings::new(api(&sim), 7)
                    .with_policy(policy(interval))
                    .with_limits(limits()),
            );
            let mut tracker = client.track_many(session_ids.clone()).unwrap();
            while let Some(outcome) = tracker.next_outcome() {
                assert!(outcome.outcome.is_completed());
            }
        });
        println!(
            "drivers: blocking ours opened {} connections",
            sim.connections() - before
        );
        m
    };
    let blocking_baseline = || {
        reset(&sim, &ids);
        let before = sim.connections();
        let m = measure(|| {
            poll_blocking(&target, ids.clone(), CAP, |ended| {
                assert_eq!(ended.outcome, "completed", "{ended:?}");
            });
        });
        println!(
            "drivers: blocking baseline opened {} connections",
            sim.connections() - before
        );
        m
    };
    // Rounds alternate between the two sides of a pair. Each side keeps its best wall time
    // (shedding the shared machine's noise) and its mean CPU time (a minimum of tick counts
    // would pick the runs whose ticks fell luckiest).
    let pair = |ours: &dyn Fn() -> Measure, baseline: &dyn Fn() -> Measure| {
        let mut sides = [(f64::INFINITY, 0.0); 2];
        for _ in 0..rounds {
            for (side, run) in sides.iter_mut().zip([ours, baseline]) {
                let m = run();
                *side = (side.0.min(m.wall_ms), side.1 + m.cpu_ms / rounds as f64);
            }
        }
        (sides[0], sides[1])
    };
    let (ao, ab) = pair(&async_ours, &async_baseline);
    let (bo, bb) = pair(&blocking_ours, &blocking_baseline);
    println!("drivers: sessions={sessions} polls_each={POLLS} interval_ms=50 in_flight={CAP}");
    line("driver_async_wall", "ms", ao.0, ab.0);
    line("driver_async_cpu", "ms", ao.1, ab.1);
    line("driver_blocking_wall", "ms", bo.0, bb.0);
    line("driver_blocking_cpu", "ms", bo.1, bb.1);
}
