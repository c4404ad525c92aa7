//! `serve_add_during_prune_p99`: the latency of adds (`POST /v1/sessions` through the
//! service's router, each committed before its answer) while retention prunes 100 000 expired
//! sessions with their histories, against the same adds with retention off, in one run on the
//! same kind of store (SQLite). Goal: within 2x.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use bankconnect_core::{Api, BaseUrl, Credentials};
use bankconnect_service::{Service, ServiceConfig};
use bankconnect_sim::{SimConfig, Simulator};
use bankconnect_store::Store;
use tower::ServiceExt;

fn p99(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let at = (values.len() * 99).div_ceil(100).saturating_sub(1);
    values.get(at).copied().unwrap_or(f64::NAN)
}

/// A store holding `expired` finished sessions last changed two hours ago, each with three
/// history events.
async fn seeded(dir: &std::path::Path, expired: usize) -> String {
    let url = format!("sqlite:{}", dir.join("s.db").display());
    drop(Store::open(&url).await.unwrap());
    let old = i64::try_from(
        (SystemTime::now() - Duration::from_secs(7200))
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let conn = rusqlite::Connection::open(dir.join("s.db")).unwrap();
    conn.execute_batch(&format!(
        "BEGIN;
         WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < {expired})
         INSERT INTO sessions (session_id, reference, state, added_at_ms, updated_at_ms, outcome, outcome_kind, finished_at_ms, events_seq)
         SELECT printf('old%07d', n), 'loan-' || n, 'finished', {old}, {old}, '{{\"outcome\":\"completed\"}}', 'completed', {old}, 3 FROM c;
         INSERT INTO session_events (session_id, seq, at_ms, kind, replica, body)
         SELECT session_id, k.k, {old}, 'progress', 'r', '{{\"session_progress\":\"PROCESSING\",\"statements\":{{}},\"polls\":1}}'
         FROM sessions, (SELECT 1 AS k UNION ALL SELECT 2 UNION ALL SELECT 3) AS k;
         COMMIT;"
    ))
    .unwrap();
    url
}

/// `adds` sequential adds through the router; their latencies in ms, and how many expired
/// sessions were left when the last one was answered.
async fn measure(name: &str, retention: Option<Duration>, adds: usize) -> (Vec<f64>, i64) {
    let dir = std::env::temp_dir().join(format!("bc_bench_prune_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = seeded(&dir, 100_000).await;
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let api = Api::new(
        BaseUrl::parse(&sim.base_url()).unwrap(),
        Credentials::new(
            bankconnect_sim::DEFAULT_API_KEY,
            bankconnect_sim::DEFAULT_SERVER_HASH,
        )
        .unwrap(),
    );
    let client = bankconnect_http_async::Client::new(api);
    let store = Store::open(&url).await.unwrap();
    let config = ServiceConfig {
        retention,
        interval: Duration::from_secs(60),
        ..ServiceConfig::default()
    };
    let (service, tasks) = Service::start(config, store, client).await.unwrap();
    let router = service.router();
    let mut times = Vec::with_capacity(adds);
    for i in 0..adds {
        let body = format!(r#"{{"session_id": "new{i:06}", "reference": "loan-{i}"}}"#);
        let request = http::Request::post("/v1/sessions")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let start = Instant::now();
        let response = router.clone().oneshot(request).await.unwrap();
        times.push(start.elapsed().as_secs_f64() * 1e3);
        assert_eq!(response.status(), 202);
    }
    let left: i64 = rusqlite::Connection::open(dir.join("s.db"))
        .unwrap()
        .query_row(
            "SELECT count(*) FROM sessions WHERE session_id LIKE 'old%'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    tasks.shutdown(Duration::from_secs(5)).await;
    let _ = std::fs::remove_dir_all(&dir);
    (times, left)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let adds = if quick { 300 } else { 1500 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (quiet, _) = measure("quiet", None, adds).await;
        let started = Instant::now();
        let (pruning, left) = measure("pruning", Some(Duration::from_secs(3600)), adds).await;
        let took = started.elapsed();
        let (ours, base) = (p99(pruning), p99(quiet));
        println!(
            "bench serve_add_during_prune_p99: ours={ours:.2} baseline={base:.2} unit=ms ratio={:.2}",
            ours / base
        );
        println!(
            "serve_add_during_prune_p99: {adds} adds, p99 {ours:.2} ms while 100 000 expired sessions (300 000 history events) were pruned against {base:.2} ms with retention off; {left} expired left when the last add was answered ({:.1} s)",
            took.as_secs_f64()
        );
    });
}
