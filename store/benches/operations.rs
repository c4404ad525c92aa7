//! Benchmarks of the operators' side of the store (docs/operations.md):
//! - `store_{sqlite,postgres}_list_filter_1m_p99`: a page of 100 with each listing filter (and
//!   the page after it), one million sessions stored; p99 in ms against the 50 ms budget;
//! - `store_size_steady`: retention under a steady load (adds, webhooks, outcomes, deliveries,
//!   in virtual time): the SQLite file's bytes after three retention periods against after one
//!   (flat is 1.0).
//!
//! The million rows are written by SQL in bulk (the bench measures reading them, not adding).
//! PostgreSQL runs when `BANKCONNECT_TEST_POSTGRES` names a server (a schema of its own, dropped).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant, SystemTime};

use bankconnect_core::SessionId;
use bankconnect_store::{
    Attempt, AttemptDetail, DeliveryState, NewSession, Order, Route, SessionFilter, SessionState,
    Store,
};

fn report(name: &str, ours: f64, baseline: f64, unit: &str) {
    println!(
        "bench {name}: ours={ours:.1} baseline={baseline:.1} unit={unit} ratio={:.2}",
        ours / baseline
    );
}

fn p99(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let at = (values.len() * 99).div_ceil(100).saturating_sub(1);
    values.get(at).copied().unwrap_or(f64::NAN)
}

/// The filters an operator uses, each with a name.
fn filters() -> Vec<(&'static str, SessionFilter)> {
    let mut out = Vec::new();
    out.push(("all", SessionFilter::all()));
    let mut f = SessionFilter::all();
    f.order = Order::Desc;
    out.push(("all_desc", f));
    out.push((
        "state",
        SessionFilter::in_state(Some(SessionState::Tracking)),
    ));
    let mut f = SessionFilter::all();
    f.delivery = Some(DeliveryState::GivenUp);
    out.push(("delivery_given_up", f));
    let mut f = SessionFilter::all();
    f.delivery = Some(DeliveryState::None);
    out.push(("delivery_none", f));
    let mut f = SessionFilter::all();
    f.outcome = Some("timed_out".into());
    out.push(("outcome", f));
    let mut f = SessionFilter::all();
    f.error_code = Some("INCOMPLETE_MONTHS".into());
    out.push(("error_code", f));
    let mut f = SessionFilter::all();
    f.reference = Some("loan-777777".into());
    out.push(("reference", f));
    let mut f = SessionFilter::all();
    f.prefix = Some("loan-12345".into());
    out.push(("q_reference_prefix", f));
    let mut f = SessionFilter::all();
    f.prefix = Some("s09999".into());
    out.push(("q_id_prefix", f));
    let mut f = SessionFilter::all();
    // The last hour of a month's sessions.
    f.added_after = Some(SystemTime::now() - Duration::from_secs(3600));
    out.push(("added_after", f));
    let mut f = SessionFilter::all();
    f.added_before = Some(SystemTime::now() - Duration::from_secs(29 * 86_400));
    out.push(("added_before", f));
    let mut f = SessionFilter::in_state(Some(SessionState::Finished));
    f.delivery = Some(DeliveryState::Failing);
    f.order = Order::Desc;
    out.push(("finished_failing_desc", f));
    out
}

/// p99 over every filter's first and second page, `rounds` times each; prints the slowest
/// filter too.
async fn list_filter_p99(engine: &str, store: &Store, rounds: usize) {
    let mut all = Vec::new();
    let mut worst = ("", 0.0_f64);
    for (name, filter) in filters() {
        let mut times = Vec::new();
        for _ in 0..rounds {
            let start = Instant::now();
            let page = store
                .list_filtered(filter.clone(), 100, None)
                .await
                .unwrap();
            times.push(start.elapsed().as_secs_f64() * 1e3);
            if let Some(cursor) = page.next_cursor.as_deref() {
                let start = Instant::now();
                store
                    .list_filtered(filter.clone(), 100, Some(cursor))
                    .await
                    .unwrap();
                times.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
        let p = p99(times.clone());
        println!("store_{engine}_list_filter_1m_p99: {name:<24} p99 {p:7.1} ms");
        if p > worst.1 {
            worst = (name, p);
        }
        all.extend(times);
    }
    let p = p99(all);
    report(&format!("store_{engine}_list_filter_1m_p99"), p, 50.0, "ms");
    println!(
        "store_{engine}_list_filter_1m_p99: p99 {p:.1} ms over every filter (budget 50 ms); slowest filter {} at {:.1} ms",
        worst.0, worst.1
    );
    let start = Instant::now();
    store
        .stats(SystemTime::now() - Duration::from_secs(86_400))
        .await
        .unwrap();
    println!(
        "store_{engine}_stats_1m: {:.0} ms for /v1/stats over a million sessions",
        start.elapsed().as_secs_f64() * 1e3
    );
}

fn millis(time: SystemTime) -> i64 {
    i64::try_from(
        time.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

async fn sqlite_list(quick: bool) {
    let dir = std::env::temp_dir().join(format!("bc_bench_ops_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("list.db");
    drop(
        Store::open(&format!("sqlite:{}", path.display()))
            .await
            .unwrap(),
    );
    let started = Instant::now();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let generator = "(WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000) SELECT n FROM c)";
        conn.execute_batch(&format!(
            "BEGIN; {} COMMIT;",
            bankconnect_testkit::million::seed_sql(
                generator,
                "printf('s%07d', n)",
                millis(SystemTime::now())
            )
        ))
        .unwrap();
    }
    println!(
        "store_sqlite_list_filter_1m_p99: seeded 1 000 000 sessions in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let store = Store::open(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    list_filter_p99("sqlite", &store, if quick { 5 } else { 30 }).await;
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn postgres_list(base_url: &str, quick: bool) {
    let Ok((admin, connection)) = tokio_postgres::connect(base_url, tokio_postgres::NoTls).await
    else {
        println!("store operations: PostgreSQL benchmarks skipped (no server)");
        return;
    };
    tokio::spawn(connection);
    let schema = format!("bc_bench_ops_{}", std::process::id());
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .await
        .unwrap();
    let separator = if base_url.contains('?') { '&' } else { '?' };
    let url = format!("{base_url}{separator}options=-csearch_path%3D{schema}");
    drop(Store::open(&url).await.unwrap());
    let started = Instant::now();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "BEGIN; {} COMMIT; ANALYZE;",
            bankconnect_testkit::million::seed_sql(
                "generate_series(1, 1000000) AS g(n)",
                "'s' || lpad(CAST(n AS TEXT), 7, '0')",
                millis(SystemTime::now())
            )
        ))
        .await
        .unwrap();
    println!(
        "store_postgres_list_filter_1m_p99: seeded 1 000 000 sessions in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let store = Store::open(&url).await.unwrap();
    list_filter_p99("postgres", &store, if quick { 5 } else { 30 }).await;
    drop(store);
    if std::env::var_os("BC_BENCH_KEEP").is_some() {
        println!("kept schema {schema}");
        return;
    }
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

/// A steady load in virtual time: each hour `per_hour` sessions are added, get a webhook,
/// finish and are delivered (one in ten after a failed attempt); retention is `retention_hours`
/// and prunes every hour. The file's size after one and after three retention periods.
async fn size_steady(quick: bool) {
    let dir = std::env::temp_dir().join(format!("bc_bench_size_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("steady.db");
    let store = Store::open(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    // At least the 24 h dedupe window, as the default retention (30 d) is: both saturate.
    let (per_hour, retention_hours) = if quick { (40, 24) } else { (200, 24) };
    let t0 = SystemTime::now() - Duration::from_secs(3600 * 24 * 30);
    let hour = Duration::from_secs(3600);
    let retention = hour * retention_hours;
    let mut sizes = Vec::new();
    let mut n = 0usize;
    for h in 0..(3 * retention_hours + 1) {
        let now = t0 + hour * h;
        let batch: Vec<NewSession> = (0..per_hour)
            .map(|i| {
                NewSession::new(SessionId::new(format!("s{:08}", n + i)).unwrap())
                    .with_reference(format!("loan-{}", n + i))
            })
            .collect();
        store.add_sessions(batch, now).await.unwrap();
        for i in 0..per_hour {
            let id = SessionId::new(format!("s{:08}", n + i)).unwrap();
            let hint = serde_json::json!({"session_id": id.as_str(), "event_name": "ENRICHMENT_NOTIFICATION", "accounts": [], "authenticated": true});
            store
                .accept_webhook(
                    &format!("k{}", n + i),
                    Some(&id),
                    &hint,
                    Route::Hint {
                        authenticated: true,
                    },
                    "r",
                    now,
                )
                .await
                .unwrap();
            let outcome = serde_json::json!({"session_id": id.as_str(), "outcome": "completed", "notified_by": "webhook", "accounts": [{"account_id": "a", "error_code": null}], "statements": []});
            store
                .finish_session_delivering_at(&id, &outcome, format!("msg_{id}"), now, now)
                .await
                .unwrap();
            let mut results = Vec::new();
            if i % 10 == 0 {
                results.push((
                    id.clone(),
                    Attempt::Failed {
                        error: "HTTP 503".into(),
                        retry_at: now,
                    },
                    AttemptDetail::new(
                        Some(503),
                        Some("http_5xx".into()),
                        Duration::from_millis(20),
                        Some(b"busy"),
                    ),
                ));
            }
            store.record_attempts(results, now).await.unwrap();
            store
                .record_attempts(
                    vec![(
                        id,
                        Attempt::Delivered,
                        AttemptDetail::new(Some(200), None, Duration::from_millis(5), Some(b"ok")),
                    )],
                    now,
                )
                .await
                .unwrap();
        }
        n += per_hour;
        // Hourly: retention and the dedupe window.
        while store
            .prune_sessions(now - retention, 5000)
            .await
            .unwrap()
            .sessions
            > 0
        {}
        store
            .prune_webhooks(now - Duration::from_secs(86_400), now - hour)
            .await
            .unwrap();
        if h == retention_hours || h == 3 * retention_hours {
            // The file and its write-ahead log (pages not checkpointed yet live there).
            let wal = dir.join("steady.db-wal");
            let bytes = std::fs::metadata(&path).unwrap().len()
                + std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
            sizes.push(bytes as f64);
        }
    }
    let (one, three) = (sizes[0], sizes[1]);
    report("store_size_steady", three / 1e6, one / 1e6, "MB");
    println!(
        "store_size_steady: {:.1} MB after one retention period ({retention_hours} h of {per_hour} sessions an hour), {:.1} MB after three",
        one / 1e6,
        three / 1e6
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        size_steady(quick).await;
        sqlite_list(quick).await;
        match std::env::var("BANKCONNECT_TEST_POSTGRES") {
            Ok(url) if !url.trim().is_empty() => postgres_list(&url, quick).await,
            _ => println!(
                "store operations: PostgreSQL benchmarks skipped (set BANKCONNECT_TEST_POSTGRES)"
            ),
        }
    });
}
