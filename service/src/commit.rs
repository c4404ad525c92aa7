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
        loop {
            let next = match deadline {
                None => tokio::select! {
                    next = queue.recv() => next,
                    _ = shutdown.wait_for(|stop| *stop) => {
                        deadline = Some(tokio::time::Instant::now() + LAST_ROUND);
                        continue;
                    }
                },
                Some(at) => tokio::time::timeout_at(at, queue.recv())
                    .await
                    .ok()
                    .flatten(),
            };
            let Some(mut item) = next else {
                self.write_events(&mut events).await;
                return;
            };
            // What is queued goes in order: progress gathered into one write, written before
            // any outcome that follows it.
            loop {
                match item {
                    Commit::Event(session, event) => events.push((session, event)),
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
            self.write_events(&mut events).await;
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
