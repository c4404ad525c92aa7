//! The hand-written pollers: no policy, retries or scheduler; the answer parsed into the
//! structs a user would declare from FinBox's docs; one line per session as it ends.

use std::collections::VecDeque;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Where the pollers poll, with which credentials, how often.
#[derive(Debug, Clone)]
#[allow(clippy::exhaustive_structs)] // plain data for this crate's own binaries and benches
pub struct Target {
    /// The API's base URL, e.g. `http://127.0.0.1:PORT/bank-connect/v1`.
    pub base: String,
    /// Sent as `x-api-key`.
    pub api_key: String,
    /// Sent as `server-hash`.
    pub server_hash: String,
    /// Between one answer and the session's next poll.
    pub interval: Duration,
}

impl Target {
    fn progress_url(&self, session: &str) -> String {
        format!(
            "{}/session_data/{session}/progress/",
            self.base.trim_end_matches('/')
        )
    }
}

/// How one session ended.
#[derive(Debug, Serialize)]
#[allow(clippy::exhaustive_structs)] // plain data for this crate's own binaries and benches
pub struct Ended {
    /// The session.
    pub session_id: String,
    /// `completed`, or `error` (then `error` says why).
    pub outcome: &'static str,
    /// Polls made.
    pub polls: u32,
    /// Why it ended in an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Ended {
    /// Its JSON line (without the newline).
    pub fn line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    fn completed(session_id: String, polls: u32) -> Self {
        Self {
            session_id,
            outcome: "completed",
            polls,
            error: None,
        }
    }

    fn error(session_id: String, polls: u32, error: String) -> Self {
        Self {
            session_id,
            outcome: "error",
            polls,
            error: Some(error),
        }
    }
}

#[allow(dead_code)] // declared as documented; only `session_progress` decides
#[derive(Deserialize)]
struct Progress {
    session_id: String,
    session_progress: String,
    #[serde(default)]
    progress: Vec<Statement>,
}

#[allow(dead_code)]
#[derive(Deserialize)]
struct Statement {
    statement_id: String,
    source: Option<String>,
    identity_status: String,
    transaction_status: String,
    processing_status: String,
    fraud_status: String,
    message: Option<String>,
}

/// Whether an answer's body says the session completed.
fn completed(body: &[u8]) -> Result<bool, String> {
    serde_json::from_slice::<Progress>(body)
        .map(|progress| progress.session_progress == "completed")
        .map_err(|err| err.to_string())
}

/// A tokio task per session on one reqwest client, a semaphore keeping `cap` requests in
/// flight; `done` gets each session as it ends, in the order they end.
pub async fn poll_async(
    target: Arc<Target>,
    sessions: Vec<String>,
    cap: usize,
    mut done: impl FnMut(Ended),
) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
    {
        Ok(client) => client,
        Err(err) => {
            for session in sessions {
                done(Ended::error(session, 0, err.to_string()));
            }
            return;
        }
    };
    let permits = Arc::new(tokio::sync::Semaphore::new(cap.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for session in sessions {
        let (client, permits, target) = (client.clone(), Arc::clone(&permits), Arc::clone(&target));
        tasks.spawn(poll_session(client, permits, target, session));
    }
    while let Some(joined) = tasks.join_next().await {
        if let Ok(ended) = joined {
            done(ended);
        }
    }
}

/// Polls one session until it completes or fails.
async fn poll_session(
    client: reqwest::Client,
    permits: Arc<tokio::sync::Semaphore>,
    target: Arc<Target>,
    session: String,
) -> Ended {
    let url = target.progress_url(&session);
    let mut polls = 0;
    loop {
        let answer = {
            let Ok(_permit) = permits.acquire().await else {
                return Ended::error(session, polls, "no permits".into());
            };
            polls += 1;
            let sent = client
                .get(&url)
                .header("x-api-key", &target.api_key)
                .header("server-hash", &target.server_hash)
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => {
                    response.bytes().await.map_err(|err| err.to_string())
                }
                Ok(response) => Err(format!("http {}", response.status().as_u16())),
                Err(err) => Err(err.to_string()),
            }
        };
        match answer.and_then(|body| completed(&body)) {
            Ok(true) => return Ended::completed(session, polls),
            Ok(false) => tokio::time::sleep(target.interval).await,
            Err(err) => return Ended::error(session, polls, err),
        }
    }
}

/// `threads` threads on one ureq agent (its pool sized to them), each owning an equal share of
/// the sessions in a due-ordered queue: it polls what is due, queues it again an interval after
/// the answer, and sleeps until the next is due. `done` gets each session as it ends, on the
/// calling thread.
pub fn poll_blocking(
    target: &Target,
    sessions: Vec<String>,
    threads: usize,
    mut done: impl FnMut(Ended),
) {
    let threads = threads.max(1);
    let phase = Some(Duration::from_secs(30));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_idle_connections(threads.max(10))
        .max_idle_connections_per_host(threads)
        .timeout_connect(phase)
        .timeout_send_request(phase)
        .timeout_recv_response(phase)
        .timeout_recv_body(phase)
        .build()
        .into();
    let mut shares: Vec<Vec<String>> = vec![Vec::new(); threads];
    for (n, session) in sessions.into_iter().enumerate() {
        if let Some(share) = shares.get_mut(n % threads) {
            share.push(session);
        }
    }
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|scope| {
        for share in shares {
            let (agent, tx) = (agent.clone(), tx.clone());
            scope.spawn(move || poll_share(&agent, target, share, &tx));
        }
        drop(tx);
        for ended in rx {
            done(ended);
        }
    });
}

fn poll_share(agent: &ureq::Agent, target: &Target, share: Vec<String>, tx: &mpsc::Sender<Ended>) {
    let start = Instant::now();
    // With one interval for all, first in is first due.
    let mut queue: VecDeque<(Instant, String, u32)> = share
        .into_iter()
        .map(|session| (start, session, 0))
        .collect();
    while let Some((due, session, polls)) = queue.pop_front() {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let polls = polls + 1;
        let answer = agent
            .get(&target.progress_url(&session))
            .header("x-api-key", &target.api_key)
            .header("server-hash", &target.server_hash)
            .call()
            .map_err(|err| err.to_string())
            .and_then(|mut response| {
                // Read whole, so the connection goes back to the pool.
                let body = response
                    .body_mut()
                    .read_to_vec()
                    .map_err(|err| err.to_string())?;
                if response.status().is_success() {
                    Ok(body)
                } else {
                    Err(format!("http {}", response.status().as_u16()))
                }
            });
        let ended = match answer.and_then(|body| completed(&body)) {
            Ok(false) => {
                queue.push_back((Instant::now() + target.interval, session, polls));
                continue;
            }
            Ok(true) => Ended::completed(session, polls),
            Err(err) => Ended::error(session, polls, err),
        };
        if tx.send(ended).is_err() {
            return;
        }
    }
}
