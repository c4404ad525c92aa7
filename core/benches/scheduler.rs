//! Scheduler cost per decision at 1 000, 10 000 and 100 000 sessions, and bytes per tracked
//! session with two statements. Run with `cargo bench -p bankconnect-core --bench scheduler`
//! (add `-- --quick` for a shorter run).
//!
//! A "decision" is one full turn for one session: `poll_request` hands out its progress request
//! (built), the answer is fed to `handle_response` (classified, rescheduled) and `poll_timeout`
//! is asked for the next wake-up. Virtual time jumps to each wake-up; nothing sleeps.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use bankconnect_core::{
    Api, BaseUrl, Credentials, PollPolicy, Scheduler, SchedulerConfig, SessionId,
};

fn body(id: &str) -> Vec<u8> {
    format!(
        r#"{{"session_id": "{id}", "session_progress": "processing", "progress": [
        {{"statement_id": "4164bc05-7b3f-4a5c-8e31-ca3c2648ec6b", "source": "pdf", "message": null, "identity_status": "completed", "transaction_status": "completed", "processing_status": "processing", "fraud_status": "processing"}},
        {{"statement_id": "bd90d1c9-7b1a-4300-9987-3c6c20bbe71d", "source": "pdf", "message": null, "identity_status": "completed", "transaction_status": "completed", "processing_status": "processing", "fraud_status": "processing"}}]}}"#
    )
    .into_bytes()
}

fn session_id(i: usize) -> String {
    format!("bfb98ac5-7224-401b-a643-{i:012}")
}

fn scheduler() -> Scheduler {
    let api = Api::new(
        BaseUrl::parse("http://127.0.0.1:9/bank-connect/v1").unwrap(),
        Credentials::new("key", "hash").unwrap(),
    );
    let policy = PollPolicy {
        max_wait: Duration::from_secs(10 * 365 * 86_400),
        ..PollPolicy::default()
    };
    let config = SchedulerConfig {
        max_in_flight: 1,
        ..SchedulerConfig::default()
    };
    Scheduler::new(api, policy, config, 7).unwrap()
}

/// Nanoseconds per decision with `n` sessions tracked, over `decisions` decisions.
fn per_decision(n: usize, decisions: usize) -> f64 {
    let mut scheduler = scheduler();
    let t0 = Instant::now();
    let bodies: Vec<Vec<u8>> = (0..n).map(|i| body(&session_id(i))).collect();
    let mut index = std::collections::HashMap::new();
    for i in 0..n {
        let id = session_id(i);
        scheduler.add(t0, SessionId::new(&id).unwrap()).unwrap();
        index.insert(id, i);
    }
    let mut now = t0;
    // Warm up: one round over every session, so all carry two statements.
    let run = |count: usize, scheduler: &mut Scheduler, now: &mut Instant| {
        let mut done = 0;
        while done < count {
            match scheduler.poll_request(*now) {
                Some(scheduled) => {
                    let i = index[scheduled.ticket.session_id().as_str()];
                    let response = http::Response::builder()
                        .status(200)
                        .body(bodies[i].clone())
                        .unwrap();
                    scheduler.handle_response(*now, scheduled.ticket, Ok(response));
                    done += 1;
                }
                None => {
                    *now = scheduler.poll_timeout(*now).unwrap().max(*now);
                }
            }
            black_box(scheduler.poll_timeout(*now));
        }
    };
    run(n, &mut scheduler, &mut now);
    let started = Instant::now();
    run(decisions, &mut scheduler, &mut now);
    started.elapsed().as_nanos() as f64 / decisions as f64
}

fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Resident bytes per tracked session after each has seen a report with two statements.
fn bytes_per_session(n: usize) -> Option<f64> {
    let t0 = Instant::now();
    let mut scheduler = scheduler();
    let before = rss_bytes()?;
    for i in 0..n {
        scheduler
            .add(t0, SessionId::new(session_id(i)).unwrap())
            .unwrap();
    }
    let mut now = t0;
    let mut done = 0;
    while done < n {
        match scheduler.poll_request(now) {
            Some(scheduled) => {
                let body = body(scheduled.ticket.session_id().as_str());
                let response = http::Response::builder().status(200).body(body).unwrap();
                scheduler.handle_response(now, scheduled.ticket, Ok(response));
                done += 1;
            }
            None => now = scheduler.poll_timeout(now).unwrap().max(now),
        }
    }
    let after = rss_bytes()?;
    black_box(&scheduler);
    Some(after.saturating_sub(before) as f64 / n as f64)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let decisions = if quick { 100_000 } else { 500_000 };
    // Memory first, while the allocator holds nothing from earlier runs.
    let bytes = bytes_per_session(100_000);
    let sizes = [1_000usize, 10_000, 100_000];
    let mut costs = Vec::new();
    for n in sizes {
        // Best of three runs, to shed noise from the shared machine.
        let best = (0..3)
            .map(|_| per_decision(n, decisions))
            .fold(f64::INFINITY, f64::min);
        println!("scheduler: sessions={n} ns_per_decision={best:.0}");
        costs.push(best);
    }
    println!(
        "bench scheduler_decision_10k_vs_1k: ours={:.0} baseline={:.0} unit=ns ratio={:.2}",
        costs[1],
        costs[0],
        costs[1] / costs[0]
    );
    println!(
        "bench scheduler_decision_100k_vs_1k: ours={:.0} baseline={:.0} unit=ns ratio={:.2}",
        costs[2],
        costs[0],
        costs[2] / costs[0]
    );
    match bytes {
        Some(bytes) => println!(
            "bench scheduler_bytes_per_session: ours={bytes:.0} baseline=1024 unit=bytes ratio={:.2}",
            bytes / 1024.0
        ),
        None => println!("scheduler: bytes per session not measured (no /proc/self/statm)"),
    }
}
