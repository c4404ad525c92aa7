//! The tracking task: the async driver's tracker over the sessions this replica holds leases
//! on, fed by the API (adds, cancels) and the webhook intake, committing each outcome with its
//! delivery in one transaction.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bankconnect_core::{Outcome, SessionId, TrackError, TrackerEvent, WebhookHint};
use bankconnect_http_async::Tracker;
use bankconnect_store::{Finish, SessionRecord, Store};
use tokio::sync::{mpsc, watch, Notify};

use super::metrics::{label, Metrics};

/// What the API and the intake ask of the tracking task.
#[derive(Debug)]
pub(crate) enum Command {
    /// A session committed to the store: track it (with the webhooks kept for it).
    Add(Box<SessionRecord>, Vec<WebhookHint>),
    /// A session cancelled in the store: stop polling it.
    Cancel(SessionId),
    /// A webhook committed to the store for a session that may be tracked here.
    Webhook(WebhookHint),
}

/// The tracking task's settings.
pub(crate) struct Tracking {
    pub(crate) store: Store,
    pub(crate) client: bankconnect_http_async::Client,
    pub(crate) replica: String,
    pub(crate) lease: Duration,
    /// Delay of the first delivery attempt, when deliveries are on.
    pub(crate) deliver_first: Option<Duration>,
    pub(crate) delivery_wake: Arc<Notify>,
    pub(crate) metrics: Arc<Metrics>,
}

/// Largest batch of sessions claimed at once.
const CLAIM_BATCH: usize = 1000;

impl Tracking {
    /// Runs until `shutdown` turns true, then releases this replica's leases.
    pub(crate) async fn run(
        self,
        mut commands: mpsc::Receiver<Command>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tracker = match self.client.tracker() {
            Ok(tracker) => tracker,
            Err(err) => {
                tracing::error!(error = %err, "cannot start the tracker");
                return;
            }
        };
        // When a session's end was first signalled (a webhook), for the latency histogram.
        let mut first_sign: HashMap<SessionId, Instant> = HashMap::new();
        self.claim(&mut tracker).await;
        self.replay_webhooks(&mut tracker).await;
        let mut renew = tokio::time::interval(self.lease / 3);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                Some(command) = commands.recv() => match command {
                    Command::Add(record, hints) => {
                        self.track(&mut tracker, &record);
                        for hint in hints {
                            first_sign.entry(hint.session_id.clone()).or_insert_with(Instant::now);
                            tracker.handle_webhook(hint);
                        }
                    }
                    Command::Cancel(session) => {
                        let _ = tracker.remove(&session);
                        first_sign.remove(&session);
                    }
                    Command::Webhook(hint) => {
                        first_sign.entry(hint.session_id.clone()).or_insert_with(Instant::now);
                        tracker.handle_webhook(hint);
                    }
                },
                _ = renew.tick() => {
                    if let Err(err) = self.store.renew_leases(&self.replica, SystemTime::now(), self.lease).await {
                        tracing::warn!(error = %err, "cannot renew leases");
                    }
                    self.claim(&mut tracker).await;
                    self.count_sessions().await;
                }
                event = tracker.next_event(), if !tracker.is_empty() => {
                    if let Some(TrackerEvent::Outcome(outcome)) = event {
                        let sign = first_sign.remove(&outcome.session_id);
                        self.finish(outcome, sign, &mut shutdown).await;
                    }
                }
            }
        }
        match self.store.release_leases(&self.replica).await {
            Ok(released) => tracing::info!(released, "leases released"),
            Err(err) => tracing::warn!(error = %err, "cannot release leases"),
        }
    }

    /// Starts polling a stored session, counting the time since it was added.
    fn track(&self, tracker: &mut Tracker, record: &SessionRecord) {
        let elapsed = SystemTime::now()
            .duration_since(record.added_at)
            .unwrap_or_default();
        match tracker.add_started(record.session_id.clone(), elapsed, record.max_wait) {
            Ok(()) | Err(TrackError::Duplicate(_)) => {}
            Err(err) => tracing::warn!(session = %record.session_id, error = %err, "cannot track"),
        }
    }

    /// Takes leases on unheld tracking sessions and tracks them.
    async fn claim(&self, tracker: &mut Tracker) {
        loop {
            let claimed = match self
                .store
                .claim_sessions(&self.replica, SystemTime::now(), self.lease, CLAIM_BATCH)
                .await
            {
                Ok(claimed) => claimed,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot claim sessions");
                    return;
                }
            };
            let full = claimed.len() == CLAIM_BATCH;
            for record in &claimed {
                self.track(tracker, record);
            }
            if !full {
                return;
            }
        }
    }

    /// Feeds the accepted webhooks of tracked sessions again, so that a webhook accepted
    /// before a crash keeps its effect.
    async fn replay_webhooks(&self, tracker: &mut Tracker) {
        match self.store.tracking_webhooks().await {
            Ok(webhooks) => {
                for (_, event) in webhooks {
                    if let Ok(hint) = serde_json::from_value::<WebhookHint>(event) {
                        tracker.handle_webhook(hint);
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot read accepted webhooks"),
        }
    }

    async fn count_sessions(&self) {
        if let Ok(counts) = self.store.count_sessions().await {
            for (state, n) in [
                ("tracking", counts.tracking),
                ("finished", counts.finished),
                ("cancelled", counts.cancelled),
            ] {
                self.metrics
                    .sessions
                    .get_or_create(&label("state", state))
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
    }

    /// Commits an outcome with its delivery, retrying while the store is unreachable (a
    /// crash meanwhile loses nothing: the session is still tracking in the store).
    async fn finish(
        &self,
        outcome: Outcome,
        first_sign: Option<Instant>,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let learnt = Instant::now();
        let value = match serde_json::to_value(&outcome) {
            Ok(value) => value,
            Err(err) => {
                tracing::error!(session = %outcome.session_id, error = %err, "cannot serialize an outcome");
                return;
            }
        };
        let mut delay = Duration::from_millis(100);
        loop {
            let now = SystemTime::now();
            let result = match self.deliver_first {
                Some(first) => {
                    let webhook_id = format!("msg_{}", outcome.session_id);
                    self.store
                        .finish_session_delivering_at(
                            &outcome.session_id,
                            &value,
                            webhook_id,
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
                    tracing::info!(session = %outcome.session_id, outcome = outcome.outcome.as_str(), "finished");
                    self.metrics
                        .outcomes
                        .get_or_create(&vec![
                            ("outcome", outcome.outcome.as_str().to_owned()),
                            ("notified_by", notified_by(&outcome).to_owned()),
                        ])
                        .inc();
                    let since = first_sign.unwrap_or(learnt);
                    self.metrics
                        .outcome_latency
                        .observe(since.elapsed().as_secs_f64());
                    self.delivery_wake.notify_one();
                    return;
                }
                Ok(_) => return, // Cancelled meanwhile, or finished elsewhere.
                Err(err) => {
                    tracing::warn!(session = %outcome.session_id, error = %err, "cannot commit an outcome; retrying");
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

fn notified_by(outcome: &Outcome) -> &'static str {
    match outcome.notified_by {
        bankconnect_core::NotifiedBy::Webhook => "webhook",
        _ => "poll",
    }
}
