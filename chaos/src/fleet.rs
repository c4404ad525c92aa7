//! The fleet: replica slots, starting one (and waiting until ready), SIGKILL, the kill loop, and
//! the client calls the run makes to whichever replica is live.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bankconnect_sim::LoggedRequest;
use bankconnect_testkit::process;
use serde_json::{json, Value};

use crate::dice::Dice;
use crate::{DELIVER_SECRET, INTERVAL, LEASE};

/// One replica slot: a port, and the process on it when it runs.
pub(crate) struct Replica {
    pub(crate) port: u16,
    pub(crate) child: Option<Child>,
    /// The running process's replica id (from `/readyz`).
    pub(crate) id: Option<String>,
}

/// The fleet of replicas and how to start one.
pub(crate) struct Fleet {
    pub(crate) slots: Mutex<Vec<Replica>>,
    pub(crate) bin: PathBuf,
    pub(crate) store: String,
    pub(crate) sim_url: String,
    pub(crate) deliver_to: String,
    pub(crate) logs: PathBuf,
    pub(crate) http: reqwest::Client,
}

impl Fleet {
    /// Starts the replica in slot `index` and waits until it is ready.
    pub(crate) async fn start(&self, index: usize) {
        let port = self.slots.lock().unwrap()[index].port;
        for attempt in 0..20 {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.logs.join(format!("replica-{index}.log")))
                .unwrap();
            let mut child = Command::new(&self.bin)
                .args([
                    "serve",
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                    "--store",
                    &self.store,
                    "--interval",
                    &humantime(INTERVAL),
                    "--lease",
                    &humantime(LEASE),
                    "--max-wait",
                    "10m",
                    "--deliver-to",
                    &self.deliver_to,
                    "--delivery-schedule",
                    "0s,200ms,500ms,1s,1s,1s,1s,1s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s",
                ])
                .env("BANKCONNECT_BASE_URL", &self.sim_url)
                .env("BANKCONNECT_API_KEY", "sim-api-key")
                .env("BANKCONNECT_SERVER_HASH", "sim-server-hash")
                .env("BANKCONNECT_DELIVER_SECRET", DELIVER_SECRET)
                .env("RUST_LOG", "info")
                .stdout(Stdio::piped())
                .stderr(Stdio::from(log))
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let listening = tokio::task::spawn_blocking(move || process::listening_line(stdout))
                .await
                .unwrap();
            if listening.is_ok() {
                let id = self.ready_id(port).await;
                let mut slots = self.slots.lock().unwrap();
                slots[index].child = Some(child);
                slots[index].id = id;
                return;
            }
            // The port may still be held for a moment by the killed process's sockets.
            let _ = child.kill();
            let _ = child.wait();
            tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
        }
        panic!("replica {index} would not start; see its log");
    }

    pub(crate) async fn ready_id(&self, port: u16) -> Option<String> {
        for _ in 0..100 {
            if let Ok(answer) = self
                .http
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await
            {
                if answer.status() == 200 {
                    let body: Value =
                        serde_json::from_slice(&answer.bytes().await.unwrap_or_default())
                            .unwrap_or(Value::Null);
                    return body["replica"].as_str().map(str::to_owned);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// Kills the replica in slot `index` with SIGKILL; returns its replica id.
    pub(crate) fn kill(&self, index: usize) -> Option<String> {
        let mut slots = self.slots.lock().unwrap();
        let slot = &mut slots[index];
        if let Some(mut child) = slot.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
        slot.id.take()
    }

    /// Ports of the replicas running now.
    pub(crate) fn live(&self) -> Vec<u16> {
        self.slots
            .lock()
            .unwrap()
            .iter()
            .filter(|slot| slot.child.is_some())
            .map(|slot| slot.port)
            .collect()
    }

    pub(crate) fn stop_all(&self) {
        let count = self.slots.lock().unwrap().len();
        for index in 0..count {
            self.kill(index);
        }
    }
}

pub(crate) fn humantime(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A JSON request to a replica: the status and body (`None` if it did not answer).
pub(crate) async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let mut request = http.request(method, url).timeout(Duration::from_secs(10));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let answer = request.send().await.ok()?;
    let status = answer.status().as_u16();
    let bytes = answer.bytes().await.ok()?;
    Some((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// Every record in `state`, paged through whichever replica answers.
pub(crate) async fn list(fleet: &Fleet, state: &str) -> Option<Vec<Value>> {
    let mut records = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let live = fleet.live();
        let port = *live.first()?;
        let mut url = format!("http://127.0.0.1:{port}/v1/sessions?state={state}&limit=1000");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let (status, page) = call(&fleet.http, reqwest::Method::GET, url, None).await?;
        if status != 200 {
            return None;
        }
        records.extend(page["sessions"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Some(records),
        }
    }
}

/// Adds `ids` in batches at random live replicas over `window`, retrying each batch until one
/// acknowledges it. Returns the acknowledged ids.
pub(crate) async fn add_all(
    fleet: Arc<Fleet>,
    dice: Arc<Dice>,
    ids: Vec<String>,
    window: Duration,
) -> Vec<String> {
    const BATCH: usize = 25;
    let batches: Vec<Vec<String>> = ids.chunks(BATCH).map(<[String]>::to_vec).collect();
    let pause = window / u32::try_from(batches.len().max(1)).unwrap_or(u32::MAX);
    let mut acknowledged = Vec::new();
    for batch in batches {
        let body = json!({"sessions": batch.iter().map(|id| json!({"session_id": id})).collect::<Vec<_>>()});
        let started = Instant::now();
        loop {
            let live = fleet.live();
            if !live.is_empty() {
                let port = live[dice.below(live.len() as u64) as usize];
                let answer = call(
                    &fleet.http,
                    reqwest::Method::POST,
                    format!("http://127.0.0.1:{port}/v1/sessions"),
                    Some(body.clone()),
                )
                .await;
                if matches!(answer, Some((200 | 202, _))) {
                    acknowledged.extend(batch.iter().cloned());
                    break;
                }
            }
            if started.elapsed() > Duration::from_secs(60) {
                eprintln!("chaos: a batch was never acknowledged");
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(pause).await;
    }
    acknowledged
}

/// One kill: when (simulator milliseconds), whose, and the sessions it held then.
pub(crate) struct Kill {
    pub(crate) at_ms: u64,
    pub(crate) victim: String,
    pub(crate) held: Vec<String>,
}

/// Kills a random replica every 2–5 s until `until`, restarting it after up to 1.5 s.
pub(crate) async fn kill_loop(
    fleet: Arc<Fleet>,
    dice: Arc<Dice>,
    until: Instant,
    sim_started: Instant,
) -> Vec<Kill> {
    let mut kills = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_millis(2000 + dice.below(3000))).await;
        if Instant::now() >= until {
            return kills;
        }
        let count = fleet.slots.lock().unwrap().len();
        let index = dice.below(count as u64) as usize;
        let victim = fleet.slots.lock().unwrap()[index].id.clone();
        // What it holds, as the store says just before (from another replica).
        let held: Vec<String> = list(&fleet, "tracking")
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| victim.is_some() && r["lease"]["replica"].as_str() == victim.as_deref())
            .filter_map(|r| r["session_id"].as_str().map(str::to_owned))
            .collect();
        let at_ms = sim_started.elapsed().as_millis() as u64;
        let victim = fleet.kill(index).unwrap_or_default();
        kills.push(Kill {
            at_ms,
            victim,
            held,
        });
        tokio::time::sleep(Duration::from_millis(300 + dice.below(1200))).await;
        fleet.start(index).await;
    }
}

/// The replica that sent a simulator request (serve names it in its user agent).
pub(crate) fn sender(request: &LoggedRequest) -> Option<&str> {
    request
        .headers
        .iter()
        .find(|(name, _)| name == "user-agent")
        .and_then(|(_, agent)| agent.split("replica/").nth(1))
}
