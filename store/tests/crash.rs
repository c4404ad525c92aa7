//! Crash safety: a child process adds and finishes sessions in a loop, reporting each commit; it
//! is killed with SIGKILL mid-write, and the store reopened must hold every reported commit whole
//! and nothing half-written (a finished session always has its outcome and its delivery).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use bankconnect_core::SessionId;
use bankconnect_store::{DeliveryState, NewSession, SessionState, Store};
use serde_json::json;
use support::{block_on, Backend, Fixture};

const CHILD_ENV: &str = "BANKCONNECT_STORE_CRASH_URL";

fn outcome(i: u64) -> serde_json::Value {
    json!({"session_id": format!("k{i}"), "outcome": "completed", "polls": i, "note": "x".repeat(300)})
}

/// The child's loop; does nothing unless run as the child.
fn crash_child() {
    let Ok(url) = std::env::var(CHILD_ENV) else {
        return;
    };
    block_on(async move {
        let store = Store::open(&url).await.unwrap();
        let mut out = std::io::stdout().lock();
        for i in 0u64.. {
            let id = SessionId::new(format!("k{i}")).unwrap();
            // Every third add is a batch of two, to crash inside batches too.
            let mut batch = vec![NewSession::new(id.clone()).with_reference(format!("ref-{i}"))];
            if i % 3 == 0 {
                batch.push(NewSession::new(
                    SessionId::new(format!("k{i}-pair")).unwrap(),
                ));
            }
            store.add_sessions(batch, SystemTime::now()).await.unwrap();
            writeln!(out, "added {i}").unwrap();
            out.flush().unwrap();
            store
                .finish_session(
                    &id,
                    &outcome(i),
                    Some(format!("msg_k{i}")),
                    SystemTime::now(),
                )
                .await
                .unwrap();
            writeln!(out, "finished {i}").unwrap();
            out.flush().unwrap();
        }
    });
}

fn crash_and_check(backend: Backend) {
    let fixture = block_on(Fixture::new(backend));
    // Create the schema before the child starts, so the kill lands among data writes.
    drop(block_on(fixture.open()));
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &fixture.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let (mut added, mut finished) = (Vec::new(), Vec::new());
    let started = Instant::now();
    // Kill at a moment that varies from run to run, well inside the writing.
    let target = 150 + (started.elapsed().as_nanos() as usize % 200);
    while finished.len() < target && started.elapsed() < Duration::from_secs(60) {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(i) = line.strip_prefix("added ") {
            added.push(i.parse::<u64>().unwrap());
        } else if let Some(i) = line.strip_prefix("finished ") {
            finished.push(i.parse::<u64>().unwrap());
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        finished.len() >= 100,
        "the child wrote too little: {}",
        finished.len()
    );

    block_on(async {
        let store = fixture.open().await;
        for i in &added {
            let record = store
                .get_session(&SessionId::new(format!("k{i}")).unwrap())
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("committed session k{i} lost"));
            assert_eq!(record.reference, Some(format!("ref-{i}")));
            if i % 3 == 0 {
                let pair = SessionId::new(format!("k{i}-pair")).unwrap();
                assert!(
                    store.get_session(&pair).await.unwrap().is_some(),
                    "half a batch"
                );
            }
        }
        for i in &finished {
            let record = store
                .get_session(&SessionId::new(format!("k{i}")).unwrap())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(record.state, SessionState::Finished);
            assert_eq!(record.outcome, Some(outcome(*i)));
        }
        // Whatever the kill caught in flight is whole or absent: every finished session has its
        // outcome and its delivery, every batch both of its sessions.
        let mut cursor: Option<String> = None;
        loop {
            let page = store
                .list_sessions(Some(SessionState::Finished), 500, cursor.as_deref())
                .await
                .unwrap();
            for record in &page.sessions {
                let i: u64 = record.session_id.as_str()[1..].parse().unwrap();
                assert_eq!(record.outcome, Some(outcome(i)));
                assert_eq!(record.delivery.state, DeliveryState::Pending);
                assert_eq!(record.delivery.webhook_id, Some(format!("msg_k{i}")));
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let tracking = store.tracking_sessions().await.unwrap();
        for record in tracking {
            assert_eq!(record.delivery.state, DeliveryState::None);
            let id = record.session_id.as_str();
            if let Some(i) = id.strip_suffix("-pair") {
                let i: u64 = i[1..].parse().unwrap();
                let main = SessionId::new(format!("k{i}")).unwrap();
                assert!(
                    store.get_session(&main).await.unwrap().is_some(),
                    "half a batch"
                );
            }
        }
    });
    if backend == Backend::Sqlite {
        let path = fixture.url.trim_start_matches("sqlite:");
        let conn = rusqlite::Connection::open(path).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }
}

fn sqlite_survives_sigkill_mid_write() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    crash_and_check(Backend::Sqlite);
}

fn postgres_survives_sigkill_mid_write() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    crash_and_check(Backend::Postgres);
}

fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let skip = support::postgres_url().is_none();
    if skip && std::env::var(CHILD_ENV).is_err() {
        eprintln!(
            "crash: the PostgreSQL half is SKIPPED, listed as ignored (set BANKCONNECT_TEST_POSTGRES)"
        );
    }
    let trial = |name: &'static str, test: fn()| {
        libtest_mimic::Trial::test(name, move || {
            test();
            Ok(())
        })
    };
    let trials = vec![
        trial("crash_child", crash_child),
        trial(
            "sqlite_survives_sigkill_mid_write",
            sqlite_survives_sigkill_mid_write,
        ),
        trial(
            "postgres_survives_sigkill_mid_write",
            postgres_survives_sigkill_mid_write,
        )
        .with_ignored_flag(skip),
    ];
    libtest_mimic::run(&args, trials).exit();
}
