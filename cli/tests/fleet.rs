//! Several `serve` replicas on one PostgreSQL database (a schema of this test's own): sessions
//! added at any replica end once, no session is polled by two replicas at once, and a replica
//! killed with SIGKILL has its sessions taken over. Without
//! `BANKCONNECT_TEST_POSTGRES` the tests are listed as ignored, with a line saying so.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use bankconnect_testkit::process;
use bankconnect_testkit::schema;

use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use bankconnect_sim::SessionScript;
use common::*;
use serde_json::{json, Value};

fn postgres() -> Option<String> {
    schema::postgres_url()
}

struct Schema(schema::Schema);

impl Schema {
    fn new(base: &str) -> Self {
        Self(schema::Schema::create(base, "bc_fleet").expect("a schema of its own"))
    }

    fn url(&self) -> String {
        self.0.url()
    }
}

struct Replica {
    child: Child,
    addr: String,
}

impl Replica {
    fn start(sim: &Sim, store: &str) -> Self {
        Self::start_with(sim, store, &["--interval", "300ms", "--lease", "3s"])
    }

    fn start_with(sim: &Sim, store: &str, extra: &[&str]) -> Self {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--store", store];
        args.extend_from_slice(extra);
        let mut child = bankconnect(Some(&sim.sim), &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = process::listening_on(&mut child);
        let addr = url.trim_start_matches("http://").to_owned();
        Self { child, addr }
    }

    fn request(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        http_request(&self.addr, method, path, Some(body), &[])
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The simulator's clock now (milliseconds since it started), read off a request made to it.
fn sim_now_ms(sim: &Sim) -> u64 {
    let addr = sim.sim.addr().to_string();
    let _ = http_request(&addr, "GET", "/bank-connect/v1/clock-probe", None, &[]);
    sim.sim
        .requests()
        .iter()
        .rev()
        .find(|r| r.path.ends_with("/clock-probe"))
        .map(|r| r.at_ms)
        .expect("the probe is logged")
}

/// Which replica sent a request to the simulator (serve names it in its user agent).
fn sender(request: &bankconnect_sim::LoggedRequest) -> Option<&str> {
    request
        .headers
        .iter()
        .find(|(name, _)| name == "user-agent")
        .and_then(|(_, agent)| agent.split("replica/").nth(1))
}

/// Two progress requests of one session from different replicas closer together than `min`
/// (two replicas polling it at once).
fn too_close(sim: &Sim, session: &str, min: u64) -> Option<(u64, u64)> {
    let polls: Vec<(u64, String)> = sim
        .sim
        .requests_for(session)
        .iter()
        .filter(|r| r.path.ends_with("/progress/"))
        .map(|r| {
            (
                r.at_ms,
                sender(r).expect("serve names its replica").to_owned(),
            )
        })
        .collect();
    polls
        .windows(2)
        .find(|w| w[0].1 != w[1].1 && w[1].0 - w[0].0 < min)
        .map(|w| (w[0].0, w[1].0))
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

fn replicas_share_the_sessions_and_take_over_a_killed_one() {
    let Some(base) = postgres() else {
        return; // Listed as ignored by main without the variable.
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
    let c_id = c.request("GET", "/readyz", "").1["replica"]
        .as_str()
        .unwrap()
        .to_owned();
    let held_by_c: Vec<&String> = ids
        .iter()
        .zip(&holders)
        .filter(|(_, holder)| **holder == c_id)
        .map(|(id, _)| id)
        .collect();
    assert!(!held_by_c.is_empty(), "c held nothing: {holders:?}");
    let mut c = c;
    c.child.kill().unwrap(); // SIGKILL
    c.child.wait().unwrap();
    let killed_ms = sim_now_ms(&sim);
    let records = wait_all_finished(&a, &ids, Duration::from_secs(30));
    for record in &records {
        assert_eq!(record["outcome"]["outcome"], "completed", "{record}");
    }
    // Taken over within one lease (3 s) and one interval (300 ms), plus scheduling slack.
    for id in held_by_c {
        let next = sim
            .sim
            .requests_for(id)
            .iter()
            .filter(|r| r.path.ends_with("/progress/") && r.at_ms > killed_ms)
            .find(|r| sender(r) != Some(c_id.as_str()))
            .map(|r| r.at_ms)
            .unwrap_or_else(|| panic!("{id} never polled after the kill"));
        assert!(
            next - killed_ms <= 3_300 + 1_000,
            "{id} taken over {} ms after the kill",
            next - killed_ms
        );
    }
    // Never two replicas on one session within one interval.
    for id in &ids {
        assert_eq!(
            too_close(&sim, id, 300),
            None,
            "{id} polled by two replicas at once"
        );
    }
    drop((a, b));
}

fn a_webhook_at_any_replica_wakes_the_one_polling_the_session() {
    let Some(base) = postgres() else {
        return; // Listed as ignored by main without the variable.
    };
    let ids: Vec<String> = (0..6).map(|i| format!("w{i:02}")).collect();
    let sim = sim(ids
        .iter()
        .map(|id| {
            SessionScript::new(id)
                .complete_after(Duration::from_millis(500))
                .without_webhook()
        })
        .collect());
    let schema = Schema::new(&base);
    let store = schema.url();
    // A long interval and lease: neither the next poll nor the store scan on lease renewal
    // (every 10 s) comes within the 4 s the sessions have to end.
    let slow = ["--interval", "60s", "--lease", "30s"];
    let a = Replica::start_with(&sim, &store, &slow);
    let b = Replica::start_with(&sim, &store, &slow);
    let ids_of = |replica: &Replica| replica.request("GET", "/readyz", "").1["replica"].clone();
    let (a_id, b_id) = (ids_of(&a), ids_of(&b));
    assert_ne!(a_id, b_id);
    for id in &ids {
        let (status, _) = a.request(
            "POST",
            "/v1/sessions",
            &json!({"session_id": id}).to_string(),
        );
        assert_eq!(status, 202);
    }
    // Each session's first poll (still processing) is done; then they complete.
    std::thread::sleep(Duration::from_millis(1500));
    let sent_at = Instant::now();
    for id in &ids {
        let record = a.request("GET", &format!("/v1/sessions/{id}"), "").1;
        let owner = record["lease"]["replica"].clone();
        assert!(owner == a_id || owner == b_id, "{record}");
        // The webhook goes to the replica that does not poll the session.
        let other = if owner == a_id { &b } else { &a };
        let event =
            json!({"session_id": id, "event_name": "ENRICHMENT_NOTIFICATION", "accounts": []});
        let (status, _) = other.request("POST", "/webhooks/bankconnect", &event.to_string());
        assert_eq!(status, 200);
    }
    let records = wait_all_finished(&b, &ids, Duration::from_secs(4));
    for record in &records {
        assert_eq!(record["outcome"]["outcome"], "completed", "{record}");
        assert_eq!(record["outcome"]["notified_by"], "webhook", "{record}");
    }
    assert!(sent_at.elapsed() < Duration::from_secs(4));
    drop((a, b));
}

/// A TCP proxy to PostgreSQL that the test can cut (every connection closed, new ones refused)
/// and restore.
struct Proxy {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(upstream: &str) -> Self {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::<TcpStream>::new()));
        let (cut2, open2, upstream) = (cut.clone(), open.clone(), upstream.to_owned());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if cut2.load(Ordering::SeqCst) {
                    drop(client); // refused, in effect
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                {
                    let mut open = open2.lock().unwrap();
                    open.push(client.try_clone().unwrap());
                    open.push(server.try_clone().unwrap());
                }
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Self { port, cut, open }
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// `base` (postgres://USER@HOST:PORT/DB…) with HOST:PORT replaced by the proxy's.
fn through(base: &str, port: u16) -> (String, String) {
    let (scheme, rest) = base.split_once("://").unwrap();
    let (authority, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((user, hostport)) => (format!("{user}@"), hostport),
        None => (String::new(), authority),
    };
    let upstream = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:5432")
    };
    (
        format!("{scheme}://{user}127.0.0.1:{port}/{tail}"),
        upstream,
    )
}

fn wait_for_status(replica: &Replica, path: &str, want: u16, within: Duration) {
    let started = Instant::now();
    loop {
        let (status, body) = replica.request("GET", path, "");
        if status == want {
            return;
        }
        assert!(
            started.elapsed() < within,
            "{path} still {status} {body} after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn postgres_unreachable_means_not_ready_nothing_half_done_and_work_resumes() {
    let Some(base) = postgres() else {
        return; // Listed as ignored by main without the variable.
    };
    let ids: Vec<String> = (0..6).map(|i| format!("p{i:02}")).collect();
    let sim = sim(ids
        .iter()
        .map(|id| {
            SessionScript::new(id)
                .complete_after(Duration::from_secs(3))
                .without_webhook()
        })
        .collect());
    let schema = Schema::new(&base);
    let (_, upstream) = through(&base, 0);
    let proxy = Proxy::start(&upstream);
    let (proxied, _) = through(&schema.url(), proxy.port);
    let replica = Replica::start(&sim, &proxied);
    wait_for_status(&replica, "/readyz", 200, Duration::from_secs(5));
    for id in &ids {
        let (status, _) = replica.request(
            "POST",
            "/v1/sessions",
            &json!({"session_id": id}).to_string(),
        );
        assert_eq!(status, 202);
    }
    // PostgreSQL goes away (the sessions complete at the API meanwhile).
    proxy.cut();
    wait_for_status(&replica, "/readyz", 503, Duration::from_secs(10));
    assert_eq!(replica.request("GET", "/healthz", "").0, 200);
    let (status, body) = replica.request(
        "POST",
        "/v1/sessions",
        &json!({"session_id": "during-outage"}).to_string(),
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "STORE_UNAVAILABLE", "{body}");
    let event =
        json!({"session_id": "p00", "event_name": "ENRICHMENT_NOTIFICATION", "accounts": []});
    let (status, _) = replica.request("POST", "/webhooks/bankconnect", &event.to_string());
    assert_eq!(status, 503, "a webhook not committed is not acknowledged");
    std::thread::sleep(Duration::from_secs(4));
    // It comes back: ready again, and every session ends right; nothing of the refused add.
    proxy.restore();
    wait_for_status(&replica, "/readyz", 200, Duration::from_secs(15));
    let records = wait_all_finished(&replica, &ids, Duration::from_secs(30));
    for record in &records {
        assert_eq!(record["outcome"]["outcome"], "completed", "{record}");
    }
    assert_eq!(
        replica.request("GET", "/v1/sessions/during-outage", "").0,
        404
    );
    // Still serving: a new session is taken and ends.
    let (status, _) = replica.request(
        "POST",
        "/v1/sessions",
        &json!({"session_id": "p00"}).to_string(),
    );
    assert_eq!(status, 200, "known already");
}

fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let skip = postgres().is_none();
    if skip {
        eprintln!(
            "fleet: SKIPPED, listed as ignored (set BANKCONNECT_TEST_POSTGRES, e.g. postgres://postgres@127.0.0.1:5432/test)"
        );
    }
    let tests: [(&str, fn()); 3] = [
        (
            "replicas_share_the_sessions_and_take_over_a_killed_one",
            replicas_share_the_sessions_and_take_over_a_killed_one,
        ),
        (
            "a_webhook_at_any_replica_wakes_the_one_polling_the_session",
            a_webhook_at_any_replica_wakes_the_one_polling_the_session,
        ),
        (
            "postgres_unreachable_means_not_ready_nothing_half_done_and_work_resumes",
            postgres_unreachable_means_not_ready_nothing_half_done_and_work_resumes,
        ),
    ];
    let trials = tests
        .into_iter()
        .map(|(name, test)| {
            libtest_mimic::Trial::test(name, move || {
                test();
                Ok(())
            })
            .with_ignored_flag(skip)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
