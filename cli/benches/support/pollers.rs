//! The hand-written polling loops the drivers are measured against: what a competent user would
//! write without this SDK (no policy, retries or scheduler; `serde_json::Value` directly).
//! Shared by the in-process `drivers` bench and the `throughput` bench, which runs them as a
//! process of their own.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// A tokio task per session, reqwest, and a semaphore capping requests in flight at `cap`.
/// `done` is called with each session as it completes.
pub(crate) async fn poll_async(
    base: String,
    ids: Vec<String>,
    interval: Duration,
    cap: usize,
    done: Arc<dyn Fn(&str) + Send + Sync>,
) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(cap)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let permits = Arc::new(tokio::sync::Semaphore::new(cap));
    let mut tasks = tokio::task::JoinSet::new();
    for id in ids {
        let (client, permits, base, done) = (
            client.clone(),
            Arc::clone(&permits),
            base.clone(),
            Arc::clone(&done),
        );
        tasks.spawn(async move {
            loop {
                let permit = permits.acquire().await.unwrap();
                let body = client
                    .get(format!("{base}/session_data/{id}/progress/"))
                    .header("x-api-key", "sim-api-key")
                    .header("server-hash", "sim-server-hash")
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                drop(permit);
                let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
                if value["session_progress"] == "completed" {
                    done(&id);
                    return;
                }
                tokio::time::sleep(interval).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// `threads` threads, each owning 1/`threads` of the sessions in a due-ordered queue: it polls
/// what is due and sleeps until the next due time. ureq with per-phase timeouts and a
/// connection pool sized to the threads. `done` is called with each session as it completes.
pub(crate) fn poll_blocking(
    base: &str,
    ids: &[String],
    interval: Duration,
    threads: usize,
    done: &(dyn Fn(&str) + Sync),
) {
    let phase = Some(Duration::from_secs(30));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_idle_connections(threads)
        .max_idle_connections_per_host(threads)
        .timeout_connect(phase)
        .timeout_send_request(phase)
        .timeout_recv_response(phase)
        .timeout_recv_body(phase)
        .build()
        .into();
    let shares: Vec<Vec<String>> = (0..threads)
        .map(|k| ids.iter().skip(k).step_by(threads).cloned().collect())
        .collect();
    std::thread::scope(|scope| {
        for share in shares {
            let agent = agent.clone();
            scope.spawn(move || {
                // (due, id), earliest first.
                let mut queue: std::collections::BinaryHeap<std::cmp::Reverse<(Instant, String)>> =
                    share
                        .into_iter()
                        .map(|id| std::cmp::Reverse((Instant::now(), id)))
                        .collect();
                while let Some(std::cmp::Reverse((due, id))) = queue.pop() {
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    let sent = Instant::now();
                    let url = format!("{base}/session_data/{id}/progress/");
                    let mut response = agent
                        .get(&url)
                        .header("x-api-key", "sim-api-key")
                        .header("server-hash", "sim-server-hash")
                        .call()
                        .unwrap();
                    let body = response.body_mut().read_to_vec().unwrap();
                    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    if value["session_progress"] == "completed" {
                        done(&id);
                    } else {
                        queue.push(std::cmp::Reverse((sent + interval, id)));
                    }
                }
            });
        }
    });
}
