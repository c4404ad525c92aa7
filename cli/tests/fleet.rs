//! Several `serve` replicas on one PostgreSQL database (a schema of this test's own): sessions
//! added at any replica end once, no session is polled by two replicas at once, and a replica
//! killed with SIGKILL has its sessions taken over. Skipped, saying so, without
//! `BANKCONNECT_TEST_POSTGRES`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use bankconnect_sim::SessionScript;
use common::*;
use serde_json::{json, Value};

fn postgres() -> Option<String> {
    std::env::var("BANKCONNECT_TEST_POSTGRES")
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// A schema of its own, dropped afterwards.
struct Schema {
    base: String,
    name: String,
}

impl Schema {
    fn new(base: &str) -> Self {
        let name = format!(
            "bc_fleet_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let output = std::process::Command::new("psql")
            .args([base, "-Atqc", &format!("CREATE SCHEMA {name}")])
            .output()
            .expect("psql");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self {
            base: base.to_owned(),
            name,
        }
    }

    fn url(&self) -> String {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-csearch_path%3D{}",
            self.base, self.name
        )
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args([
                &self.base,
                "-Atqc",
                &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
            ])
            .output();
    }
}

struct Replica {
    child: Child,
    addr: String,
}

impl Replica {
    fn start(sim: &Sim, store: &str) -> Self {
        let mut child = bankconnect(
            Some(&sim.sim),
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--store",
                store,
                "--interval",
                "300ms",
                "--lease",
                "3s",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let addr = first
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("{first}"))
            .to_owned();
        std::thread::spawn(move || for _ in lines {});
        Self { child, addr }
    }

    fn request(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let json = text
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        (status, json)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Progress requests of one session closer together than `min` (two replicas polling it).
fn too_close(sim: &Sim, session: &str, min: u64) -> Option<(u64, u64)> {
    let times: Vec<u64> = sim
        .sim
        .requests_for(session)
        .iter()
        .filter(|r| r.path.ends_with("/progress/"))
        .map(|r| r.at_ms)
        .collect();
    times
        .windows(2)
        .find(|w| w[1] - w[0] < min)
        .map(|w| (w[0], w[1]))
}

fn wait_all_finished(replica: &Replica, ids: &[String], within: Duration) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let records: Vec<Value> = ids
            .iter()
            .map(|id| replica.request("GET", &format!("/v1/sessions/{id}"), "").1)
            .collect();
        if records.iter().all(|r| r["state"] == "finished") {
            return records;
        }
        assert!(started.elapsed() < within, "not all finished: {records:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn replicas_share_the_sessions_and_take_over_a_killed_one() {
    let Some(base) = postgres() else {
        eprintln!("SKIPPED: set BANKCONNECT_TEST_POSTGRES to run the fleet tests");
        return;
    };
    let ids: Vec<String> = (0..24).map(|i| format!("f{i:02}")).collect();
    let sim = sim(ids
        .iter()
        .map(|id| {
            SessionScript::new(id)
                .complete_after(Duration::from_secs(6))
                .without_webhook()
        })
        .collect());
    let schema = Schema::new(&base);
    let store = schema.url();
    let a = Replica::start(&sim, &store);
    let b = Replica::start(&sim, &store);
    let c = Replica::start(&sim, &store);
    // Sessions added at every replica.
    for (i, id) in ids.iter().enumerate() {
        let replica = [&a, &b, &c][i % 3];
        let (status, _) = replica.request(
            "POST",
            "/v1/sessions",
            &json!({"session_id": id}).to_string(),
        );
        assert_eq!(status, 202);
    }
    // Let them spread, then kill one replica holding leases.
    std::thread::sleep(Duration::from_millis(2500));
    let holders: Vec<String> = ids
        .iter()
        .filter_map(|id| {
            a.request("GET", &format!("/v1/sessions/{id}"), "").1["lease"]["replica"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    let distinct: std::collections::HashSet<_> = holders.iter().collect();
    assert!(distinct.len() >= 2, "sessions did not spread: {holders:?}");
    let killed_at = Instant::now();
    let mut c = c;
    c.child.kill().unwrap(); // SIGKILL
    c.child.wait().unwrap();
    let records = wait_all_finished(&a, &ids, Duration::from_secs(30));
    for record in &records {
        assert_eq!(record["outcome"]["outcome"], "completed", "{record}");
    }
    assert!(killed_at.elapsed() < Duration::from_secs(20));
    // Never two replicas on one session: polls at least most of an interval apart.
    for id in &ids {
        assert_eq!(too_close(&sim, id, 200), None, "{id} polled twice at once");
    }
    drop((a, b));
}
