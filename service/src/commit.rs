//! The commit worker: each outcome the tracker learns is committed with its delivery in one
//! transaction, retried with backoff while the store fails. It runs beside the tracking task,
//! behind a bounded queue, so that a stalled store delays commits and never stops polling.
//! Progress the tracker saw comes through the same queue, so a session's history keeps the
//! order things happened in: its progress events are written before its outcome.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bankconnect_core::{Outcome, SessionId};
use bankconnect_store::{Finish, NewEvent, Store};
use tokio::sync::{mpsc, watch, Notify};

use crate::metrics::Metrics;

/// Outcomes queued for the commit worker before the tracking task holds them itself.
pub(crate) const QUEUE: usize = 1024;
/// Longest the worker goes on committing what is queued once shutdown begins.
const LAST_ROUND: Duration = Duration::from_secs(3);
/// How long progress waits for more before it is written: sessions added one by one each
/// bring their first poll's progress, and a commit (an fsync) for each doubled an add's cost.
/// An outcome never waits: the progress before it is written first.
const EVENTS_LINGER: Duration = Duration::from_millis(50);

/// What the tracking task hands the commit worker, in the order it happened.
#[derive(Debug)]
pub(crate) enum Commit {
    /// An outcome (never dropped).
    Outcome(Finished),
    /// An event the tracker saw (progress, API errors) for a session's history (an
    /// observation: dropped when the queue is full rather than waited for).
    Event(SessionId, NewEvent),
}

/// An outcome to commit.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) outcome: Outcome,
    /// When the end was first signalled (an authenticated webhook), for the latency histogram.
    pub(crate) first_sign: Option<Instant>,
    /// When the tracker learnt the outcome.
    pub(crate) learnt: Instant,
}

/// What the commit worker woke up to.
// Held for one match, as the queue's item itself is: boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Woken {
    /// The next item, or `None` once the queue is closed (or the last round is over).
    Queue(Option<Commit>),
    Shutdown,
    Linger,
}

/// The commit worker's settings.
pub(crate) struct Committer {
    pub(crate) store: Store,
    /// Delay of the first delivery attempt, when deliveries are on.
    pub(crate) deliver_first: Option<Duration>,
    pub(crate) delivery_wake: Arc<Notify>,
    pub(crate) metrics: Arc<Metrics>,
}

impl Committer {
    /// Commits until the queue closes, or until shutdown plus a last round for what is queued.
    pub(crate) async fn run(
        self,
        mut queue: mpsc::Receiver<Commit>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut deadline: Option<tokio::time::Instant> = None;
        let mut events: Vec<(SessionId, NewEvent)> = Vec::new();
        // When the progress gathered so far is written, unless an outcome comes first.
        let mut events_due = tokio::time::Instant::now();
        loop {
            let woken = match deadline {
                None => tokio::select! {
                    next = queue.recv() => Woken::Queue(next),
                    _ = shutdown.wait_for(|stop| *stop) => Woken::Shutdown,
                    () = tokio::time::sleep_until(events_due), if !events.is_empty() => Woken::Linger,
                },
                Some(at) => Woken::Queue(
                    tokio::time::timeout_at(at, queue.recv())
                        .await
                        .ok()
                        .flatten(),
                ),
            };
            let mut item = match woken {
                Woken::Queue(Some(item)) => item,
                Woken::Queue(None) => {
                    self.write_events(&mut events).await;
                    return;
                }
                Woken::Shutdown => {
                    deadline = Some(tokio::time::Instant::now() + LAST_ROUND);
                    self.write_events(&mut events).await;
                    continue;
                }
                // The linger is over: what was gathered goes in one write.
                Woken::Linger => {
                    self.write_events(&mut events).await;
                    continue;
                }
            };
            // What is queued goes in order: progress gathered into one write, written before
            // any outcome that follows it.
            loop {
                match item {
                    Commit::Event(session, event) => {
                        if events.is_empty() {
                            events_due = tokio::time::Instant::now() + EVENTS_LINGER;
                        }
                        events.push((session, event));
                    }
                    Commit::Outcome(finished) => {
                        self.write_events(&mut events).await;
                        if !self.commit(&finished, deadline).await {
                            return;
                        }
                    }
                }
                match queue.try_recv() {
                    Ok(next) if events.len() < QUEUE => item = next,
                    Ok(next) => {
                        self.write_events(&mut events).await;
                        item = next;
                    }
                    Err(_) => break,
                }
            }
            if deadline.is_some() {
                self.write_events(&mut events).await;
            }
        }
    }

    /// Commits one outcome, retrying while the store fails; `false` when the last round's
    /// deadline passed first (the session stays tracking in the store: nothing is lost).
    async fn commit(&self, finished: &Finished, deadline: Option<tokio::time::Instant>) -> bool {
        let outcome = &finished.outcome;
        let value = match serde_json::to_value(outcome) {
            Ok(value) => value,
            Err(err) => {
                tracing::error!(session = %outcome.session_id, error = %err, "cannot serialize an outcome");
                return true;
            }
        };
        let mut delay = Duration::from_millis(100);
        loop {
            let now = SystemTime::now();
            let result = match self.deliver_first {
                Some(first) => {
                    self.store
                        .finish_session_delivering_at(
                            &outcome.session_id,
                            &value,
                            crate::delivery::webhook_base(&outcome.session_id),
                            now + first,
                            now,
                        )
                        .await
                }
                None => {
                    self.store
                        .finish_session(&outcome.session_id, &value, None, now)
                        .await
                }
            };
            match result {
                Ok(Finish::Finished) => {
                    self.finished(finished);
                    return true;
                }
                Ok(_) => return true, // Cancelled meanwhile, or finished elsewhere.
                Err(err) => {
                    tracing::warn!(session = %outcome.session_id, error = %err, "cannot commit an outcome; retrying");
                    let wake = tokio::time::Instant::now() + delay;
                    if deadline.is_some_and(|at| wake > at) {
                        return false;
                    }
                    tokio::time::sleep_until(wake).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Writes gathered progress events in one transaction, once (they are observations: on a
    /// failure they are dropped, the next poll's change is written).
    async fn write_events(&self, events: &mut Vec<(SessionId, NewEvent)>) {
        if events.is_empty() {
            return;
        }
        let batch = std::mem::take(events);
        if let Err(err) = self.store.append_events(batch, SystemTime::now()).await {
            tracing::debug!(error = %err, "cannot write progress events; dropped");
        }
    }

    fn finished(&self, finished: &Finished) {
        let outcome = &finished.outcome;
        tracing::debug!(session = %outcome.session_id, outcome = outcome.outcome.as_str(), "finished");
        self.metrics
            .outcomes
            .get_or_create(&vec![
                ("outcome", outcome.outcome.as_str().to_owned()),
                ("notified_by", outcome.notified_by.as_str().to_owned()),
            ])
            .inc();
        // A webhook's sign counts only when the outcome credits it (a hint the poll contradicted
        // earns nothing).
        let since = match finished.first_sign {
            Some(sign) if outcome.notified_by == bankconnect_core::NotifiedBy::Webhook => sign,
            _ => finished.learnt,
        };
        self.metrics
            .outcome_latency
            .observe(since.elapsed().as_secs_f64());
        self.delivery_wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use bankconnect_store::NewSession;

    async fn committer(name: &str) -> (Committer, SessionId) {
        let dir = bankconnect_testkit::temp_dir(name);
        let store = Store::open(&format!("sqlite:{}", dir.join("s.db").display()))
            .await
            .unwrap();
        let id = SessionId::new("p1").unwrap();
        store
            .add_session(NewSession::new(id.clone()), SystemTime::now())
            .await
            .unwrap();
        let committer = Committer {
            store,
            deliver_first: None,
            delivery_wake: Arc::new(Notify::new()),
            metrics: Arc::new(Metrics::new("test")),
        };
        (committer, id)
    }

    fn progress(polls: u32) -> NewEvent {
        NewEvent::progress(Some("processing"), serde_json::json!({}), polls)
    }

    async fn progress_times(store: &Store, id: &SessionId) -> Vec<SystemTime> {
        let page = store.session_events(id, 100, None).await.unwrap().unwrap();
        page.events
            .iter()
            .filter(|e| e.kind == "progress")
            .map(|e| e.at)
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn progress_arriving_one_by_one_is_written_in_one_transaction() {
        let (committer, id) = committer("commit_linger").await;
        let store = committer.store.clone();
        let (tx, rx) = mpsc::channel(QUEUE);
        let (_stop, shutdown) = watch::channel(false);
        let worker = tokio::spawn(committer.run(rx, shutdown));
        for polls in 1..=4 {
            tx.send(Commit::Event(id.clone(), progress(polls)))
                .await
                .unwrap();
            // Apart enough that each would have been written alone, well within the linger.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(EVENTS_LINGER * 4).await;
        let times = progress_times(&store, &id).await;
        // One write stamps every event it carries with one time.
        assert_eq!(times.len(), 4, "{times:?}");
        assert!(times.iter().all(|t| *t == times[0]), "{times:?}");
        drop(tx);
        worker.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn progress_still_lingering_is_written_at_shutdown() {
        let (committer, id) = committer("commit_shutdown").await;
        let store = committer.store.clone();
        let (tx, rx) = mpsc::channel(QUEUE);
        let (stop, shutdown) = watch::channel(false);
        let worker = tokio::spawn(committer.run(rx, shutdown));
        tx.send(Commit::Event(id.clone(), progress(1)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        stop.send(true).unwrap();
        // Written when shutdown begins, not at the end of the last round (the queue stays
        // open, so that would be LAST_ROUND away).
        let begun = std::time::Instant::now();
        while progress_times(&store, &id).await.is_empty() {
            assert!(begun.elapsed() < LAST_ROUND / 3, "not written at shutdown");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(tx);
        worker.await.unwrap();
    }
}
