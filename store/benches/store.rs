//! Store benchmarks, ours side by side with a bare baseline on the same engine, in interleaved
//! rounds (medians):
//! - `store_{sqlite,postgres}_finish`: finishing a session with its outbox row, against a bare
//!   single-row insert in its own transaction (the cost of one durable commit);
//! - `store_{sqlite,postgres}_claim_100k`: claiming 1 000 due sessions out of 100 000 tracked,
//!   against a bare indexed `SELECT … LIMIT 1000` on the same table;
//! - `store_sqlite_open_100k`: opening a store of 100 000 tracking sessions and loading them for
//!   tracking, against reading the same rows raw.
//!
//! PostgreSQL runs when `BANKCONNECT_TEST_POSTGRES` names a server (the bench uses a schema of
//! its own and drops it).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant, SystemTime};

use bankconnect_core::SessionId;
use bankconnect_store::{NewSession, Store};

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn report(name: &str, ours: f64, baseline: f64, unit: &str) {
    println!(
        "bench {name}: ours={ours:.1} baseline={baseline:.1} unit={unit} ratio={:.2}",
        ours / baseline
    );
}

fn outcome(i: usize) -> serde_json::Value {
    serde_json::json!({
        "session_id": format!("s{i:06}"), "outcome": "completed", "error": null,
        "statements": [{"statement_id": "st-1", "source": "pdf", "identity_status": "completed",
            "transaction_status": "completed", "processing_status": "completed", "fraud_status": "completed"}],
        "accounts": [{"account_id": "acc-1", "bank_name": "sbi", "account_status": "completed"}],
        "notified_by": "webhook", "polls": 3, "retries": 0, "elapsed_ms": 61234
    })
}

fn new_sessions(range: std::ops::Range<usize>) -> Vec<NewSession> {
    range
        .map(|i| NewSession::new(SessionId::new(format!("s{i:06}")).unwrap()))
        .collect()
}

async fn seed(store: &Store, n: usize) {
    let now = SystemTime::now();
    for start in (0..n).step_by(1000) {
        store
            .add_sessions(new_sessions(start..(start + 1000).min(n)), now)
            .await
            .unwrap();
    }
}

/// Engine-specific baselines.
enum Bare {
    Sqlite(rusqlite::Connection),
    Postgres(tokio_postgres::Client, Vec<tokio_postgres::Statement>),
}

impl Bare {
    async fn prepare(&mut self) {
        let sql =
            "CREATE TABLE IF NOT EXISTS bench_bare (id BIGINT PRIMARY KEY, payload TEXT NOT NULL)";
        match self {
            Self::Sqlite(conn) => conn.execute_batch(sql).unwrap(),
            Self::Postgres(client, statements) => {
                client.batch_execute(sql).await.unwrap();
                // Prepared once, as a competent baseline would.
                statements.clear();
                for text in [
                    "INSERT INTO bench_bare (id, payload) VALUES ($1, $2)",
                    "SELECT seq, session_id FROM sessions WHERE state = 'tracking' AND lease_until_ms <= $1 \
                     ORDER BY lease_until_ms, seq LIMIT 1000",
                ] {
                    statements.push(client.prepare(text).await.unwrap());
                }
            }
        }
    }

    /// One row inserted in its own transaction.
    async fn insert(&mut self, id: i64, payload: &str) {
        match self {
            Self::Sqlite(conn) => {
                let tx = conn.transaction().unwrap();
                tx.prepare_cached("INSERT INTO bench_bare (id, payload) VALUES (?1, ?2)")
                    .unwrap()
                    .execute(rusqlite::params![id, payload])
                    .unwrap();
                tx.commit().unwrap();
            }
            Self::Postgres(client, statements) => {
                let tx = client.transaction().await.unwrap();
                tx.execute(&statements[0], &[&id, &payload]).await.unwrap();
                tx.commit().await.unwrap();
            }
        }
    }

    /// The indexed select a claim replaces: 1 000 due tracking sessions.
    async fn select_due(&mut self, now: i64) -> usize {
        match self {
            Self::Sqlite(conn) => {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT seq, session_id FROM sessions WHERE state = 'tracking' AND lease_until_ms <= ?1 \
                         ORDER BY lease_until_ms, seq LIMIT 1000",
                    )
                    .unwrap();
                let rows = stmt
                    .query_map([now], |row| {
                        Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                    })
                    .unwrap();
                rows.map(Result::unwrap).count()
            }
            Self::Postgres(client, statements) => {
                client.query(&statements[1], &[&now]).await.unwrap().len()
            }
        }
    }
}

fn unix_ms(time: SystemTime) -> i64 {
    i64::try_from(
        time.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

async fn finish(engine: &str, store: &Store, bare: &mut Bare, rounds: usize, per_round: usize) {
    bare.prepare().await;
    seed(store, rounds * per_round).await;
    let payload = outcome(0).to_string();
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let start = Instant::now();
        for i in round * per_round..(round + 1) * per_round {
            let id = SessionId::new(format!("s{i:06}")).unwrap();
            store
                .finish_session(
                    &id,
                    &outcome(i),
                    Some(format!("msg_{i}")),
                    SystemTime::now(),
                )
                .await
                .unwrap();
        }
        ours.push(start.elapsed().as_secs_f64() * 1e6 / per_round as f64);
        let start = Instant::now();
        for i in round * per_round..(round + 1) * per_round {
            bare.insert(i64::try_from(i).unwrap(), &payload).await;
        }
        base.push(start.elapsed().as_secs_f64() * 1e6 / per_round as f64);
    }
    report(
        &format!("store_{engine}_finish"),
        median(ours),
        median(base),
        "us/op",
    );
}

async fn claim(engine: &str, store: &Store, bare: &mut Bare, rounds: usize) {
    seed(store, 100_000).await;
    bare.prepare().await;
    let lease = Duration::from_millis(1);
    let mut now = SystemTime::now();
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        // Every earlier lease has lapsed: 1 000 sessions are always due.
        now += Duration::from_secs(1);
        let start = Instant::now();
        let claimed = store
            .claim_sessions("bench", now, lease, 1000)
            .await
            .unwrap();
        ours.push(start.elapsed().as_secs_f64() * 1e3);
        assert_eq!(claimed.len(), 1000);
        let start = Instant::now();
        let selected = bare.select_due(unix_ms(now)).await;
        base.push(start.elapsed().as_secs_f64() * 1e3);
        assert_eq!(selected, 1000);
    }
    report(
        &format!("store_{engine}_claim_100k"),
        median(ours),
        median(base),
        "ms/claim",
    );
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("bankconnect_bench_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sqlite_bare(path: &std::path::Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

async fn sqlite(quick: bool) {
    let (rounds, per_round) = if quick { (3, 50) } else { (15, 300) };
    let dir = temp_dir("finish");
    let path = dir.join("store.db");
    let store = Store::open(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    let mut bare = Bare::Sqlite(sqlite_bare(&path));
    finish("sqlite", &store, &mut bare, rounds, per_round).await;
    drop((store, bare));
    let _ = std::fs::remove_dir_all(&dir);

    let dir = temp_dir("claim");
    let path = dir.join("store.db");
    let url = format!("sqlite:{}", path.display());
    let store = Store::open(&url).await.unwrap();
    let mut bare = Bare::Sqlite(sqlite_bare(&path));
    claim("sqlite", &store, &mut bare, if quick { 5 } else { 21 }).await;
    drop((store, bare));

    // Open a store of 100 000 tracking sessions (leases released) and load them.
    let conn = sqlite_bare(&path);
    conn.execute(
        "UPDATE sessions SET lease_owner = NULL, lease_until_ms = 0",
        [],
    )
    .unwrap();
    drop(conn);
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for _ in 0..if quick { 3 } else { 5 } {
        let start = Instant::now();
        let store = Store::open(&url).await.unwrap();
        let loaded = store.tracking_sessions().await.unwrap();
        ours.push(start.elapsed().as_secs_f64() * 1e3);
        assert_eq!(loaded.len(), 100_000);
        drop((store, loaded));
        let start = Instant::now();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT seq, session_id, reference, state, added_at_ms, updated_at_ms, max_wait_ms, \
                 outcome, tracker_state, lease_owner, lease_until_ms FROM sessions WHERE state = 'tracking' ORDER BY seq",
            )
            .unwrap();
        type Raw = (
            i64,
            String,
            Option<String>,
            String,
            i64,
            i64,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<String>,
            i64,
        );
        let rows: Vec<Raw> = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    r.get(10)?,
                ))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        base.push(start.elapsed().as_secs_f64() * 1e3);
        assert_eq!(rows.len(), 100_000);
    }
    let ours_ms = median(ours);
    report("store_sqlite_open_100k", ours_ms, median(base), "ms");
    println!("store_sqlite_open_100k: {ours_ms:.0} ms to open and load 100 000 sessions (goal under 2000 ms)");
    let _ = std::fs::remove_dir_all(&dir);
}

async fn postgres(base_url: &str, quick: bool) {
    let (admin, connection) = match tokio_postgres::connect(base_url, tokio_postgres::NoTls).await {
        Ok(connected) => connected,
        Err(err) => {
            println!("store: PostgreSQL benchmarks skipped (no server at BANKCONNECT_TEST_POSTGRES: {err})");
            return;
        }
    };
    tokio::spawn(connection);
    let separator = if base_url.contains('?') { '&' } else { '?' };
    for bench in ["finish", "claim"] {
        let schema = format!("bc_bench_{bench}_{}", std::process::id());
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
            ))
            .await
            .unwrap();
        let url = format!("{base_url}{separator}options=-csearch_path%3D{schema}");
        let store = Store::open(&url).await.unwrap();
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let mut bare = Bare::Postgres(client, Vec::new());
        if bench == "finish" {
            let (rounds, per_round) = if quick { (3, 50) } else { (15, 300) };
            finish("postgres", &store, &mut bare, rounds, per_round).await;
        } else {
            claim("postgres", &store, &mut bare, if quick { 5 } else { 21 }).await;
        }
        drop((store, bare));
        admin
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .unwrap();
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        sqlite(quick).await;
        match std::env::var("BANKCONNECT_TEST_POSTGRES") {
            Ok(url) if !url.trim().is_empty() => postgres(&url, quick).await,
            _ => println!("store: PostgreSQL benchmarks skipped (set BANKCONNECT_TEST_POSTGRES)"),
        }
    });
}
