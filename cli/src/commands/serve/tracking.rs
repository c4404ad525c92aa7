//! The tracking task: the async driver's tracker over the sessions this replica holds leases
//! on, fed by the API (adds, cancels) and the webhook intake, committing each outcome with its
//! delivery in one transaction.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bankconnect_core::{Outcome, SessionId, TrackError, TrackerEvent, WebhookHint};
use bankconnect_http_async::Tracker;
use bankconnect_store::{
    Finish, SessionRecord, SessionState, Store, StoredWebhook, WebhookNotice, WebhookNotices,
};
use tokio::sync::{mpsc, watch, Notify};

use super::metrics::{label, Metrics};

/// What the API and the intake ask of the tracking task.
#[derive(Debug)]
pub(crate) enum Command {
    /// Sessions committed to the store, leased to this replica, with the webhooks kept for
    /// them: track.
    Added(Vec<SessionRecord>, Vec<WebhookHint>),
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
    /// The poll interval: a session handed to another replica waits this long before it may
    /// be claimed (it may just have been polled here).
    pub(crate) interval: Duration,
    /// Delay of the first delivery attempt, when deliveries are on.
    pub(crate) deliver_first: Option<Duration>,
    pub(crate) delivery_wake: Arc<Notify>,
    pub(crate) metrics: Arc<Metrics>,
}

/// Largest batch of sessions claimed at once.
const CLAIM_BATCH: usize = 1000;
/// Sessions a replica may hold beyond an even share before it hands some back.
const SHARE_SLACK: usize = 8;

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
        // The sessions this replica polls (it holds their leases).
        let mut polled: HashSet<SessionId> = HashSet::new();
        // Heartbeat first, so that the fair share counts this replica.
        self.heartbeat().await;
        // The fleet is counted on each renewal, not on each add (it counts every session);
        // adds in between raise the estimate, so claims between renewals use a current share.
        let mut fleet = self.count_fleet().await;
        // Listening starts before the first claim, so that no webhook falls between the two.
        // Only a shared store (PostgreSQL) has notices, which is what makes this a fleet.
        let mut notices = self.store.listen_webhooks(&self.replica);
        let fleet_mode = notices.is_some();
        // Claims feed the claimed sessions' accepted webhooks, those accepted before a crash too.
        // One batch now; the rest between requests, so that polling starts at once even on a
        // store of 100 000 sessions.
        let mut more_to_claim = self.claim(&mut tracker, &mut polled, share(fleet)).await;
        let mut scanned = SystemTime::now();
        // The first renewal one period on (everything was just claimed): an immediate tick
        // would renew every lease before the first poll goes out.
        let mut renew =
            tokio::time::interval_at(tokio::time::Instant::now() + self.lease / 3, self.lease / 3);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // In a fleet, lapsed leases (a dead replica's) are looked for every interval too, so
        // that a takeover comes within one lease and one interval, not a renewal later.
        let look_every = self.interval.min(self.lease / 3);
        let mut look =
            tokio::time::interval_at(tokio::time::Instant::now() + look_every, look_every);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                Some(command) = commands.recv() => match command {
                    Command::Added(records, hints) => {
                        for record in &records {
                            self.track(&mut tracker, &mut polled, record);
                        }
                        if let Some(fleet) = &mut fleet {
                            fleet.tracking += records.len();
                        }
                        for hint in hints {
                            first_sign.entry(hint.session_id.clone()).or_insert_with(Instant::now);
                            tracker.handle_webhook(hint);
                        }
                    }
                    Command::Cancel(session) => {
                        let _ = tracker.remove(&session);
                        polled.remove(&session);
                        first_sign.remove(&session);
                    }
                    Command::Webhook(hint) => {
                        first_sign.entry(hint.session_id.clone()).or_insert_with(Instant::now);
                        tracker.handle_webhook(hint);
                    }
                },
                Some(notice) = next_notice(&mut notices) => match notice {
                    // Another replica accepted a webhook for a session that may be polled here.
                    WebhookNotice::Webhook(session) if polled.contains(&session) => {
                        first_sign.entry(session.clone()).or_insert_with(Instant::now);
                        self.feed_webhooks(&mut tracker, &[session]).await;
                    }
                    WebhookNotice::Missed => self.scan_webhooks(&mut tracker, &mut scanned).await,
                    _ => {}
                },
                _ = renew.tick() => {
                    if self.heartbeat().await {
                        fleet = self.count_fleet().await;
                        self.sync_held(&mut tracker, &mut polled).await;
                        self.rebalance(&mut tracker, &mut polled, share(fleet)).await;
                        more_to_claim = self.claim(&mut tracker, &mut polled, share(fleet)).await;
                        if fleet_mode {
                            // The fallback, should a notice have gone missing unnoticed.
                            self.scan_webhooks(&mut tracker, &mut scanned).await;
                        }
                    }
                    self.count_sessions().await;
                }
                _ = look.tick(), if fleet_mode => {
                    more_to_claim = self.claim(&mut tracker, &mut polled, share(fleet)).await;
                }
                event = tracker.next_event(), if !tracker.is_empty() => {
                    if let Some(TrackerEvent::Outcome(outcome)) = event {
                        polled.remove(&outcome.session_id);
                        let sign = first_sign.remove(&outcome.session_id);
                        self.finish(outcome, sign, &mut shutdown).await;
                    }
                }
                // Last: only when nothing else is ready (the tracker has just sent what is due).
                () = std::future::ready(()), if more_to_claim => {
                    more_to_claim = self.claim(&mut tracker, &mut polled, share(fleet)).await;
                }
            }
        }
        // Claimable by others one interval on: this replica may have just polled them.
        let claimable_from = SystemTime::now() + self.interval;
        match self
            .store
            .release_leases(&self.replica, claimable_from)
            .await
        {
            Ok(released) => tracing::info!(released, "leases released"),
            Err(err) => tracing::warn!(error = %err, "cannot release leases"),
        }
    }

    /// Renews this replica's leases and heartbeat; `false` if the store did not answer (then
    /// nothing is claimed or dropped on stale information).
    async fn heartbeat(&self) -> bool {
        match self
            .store
            .renew_leases(&self.replica, SystemTime::now(), self.lease)
            .await
        {
            Ok(_) => true,
            Err(err) => {
                tracing::warn!(error = %err, "cannot renew leases");
                false
            }
        }
    }

    /// Starts polling a stored session, counting the time since it was added.
    fn track(
        &self,
        tracker: &mut Tracker,
        polled: &mut HashSet<SessionId>,
        record: &SessionRecord,
    ) {
        let elapsed = SystemTime::now()
            .duration_since(record.added_at)
            .unwrap_or_default();
        match tracker.add_started(record.session_id.clone(), elapsed, record.max_wait) {
            Ok(()) | Err(TrackError::Duplicate(_)) => {
                polled.insert(record.session_id.clone());
            }
            Err(err) => tracing::warn!(session = %record.session_id, error = %err, "cannot track"),
        }
    }

    /// The live replicas and the tracking sessions, as the store says (`None` if it did not
    /// answer: then nothing is claimed or handed back on stale information).
    async fn count_fleet(&self) -> Option<FleetCount> {
        // Live: heartbeat within two renewals. A replica that missed two is most likely dead;
        // counting it would keep the others from taking its sessions over once its leases
        // lapse (should it be alive after all, rebalancing evens things out).
        let since = SystemTime::now().checked_sub(self.lease * 2 / 3)?;
        let live = self.store.live_replicas(since).await.ok()?.len().max(1);
        let tracking = usize::try_from(self.store.count_sessions().await.ok()?.tracking).ok()?;
        Some(FleetCount { live, tracking })
    }

    /// Takes leases on unheld tracking sessions, up to the fair share, and tracks them, one
    /// batch of [`CLAIM_BATCH`]; `true` if there may be more to claim now (the batch was full),
    /// which the loop claims between sending requests.
    async fn claim(
        &self,
        tracker: &mut Tracker,
        polled: &mut HashSet<SessionId>,
        share: Option<usize>,
    ) -> bool {
        let Some(share) = share else {
            return false;
        };
        let room = share.saturating_sub(polled.len()).min(CLAIM_BATCH);
        if room == 0 {
            return false;
        }
        let claimed = match self
            .store
            .claim_sessions(&self.replica, SystemTime::now(), self.lease, room)
            .await
        {
            Ok(claimed) => claimed,
            Err(err) => {
                tracing::warn!(error = %err, "cannot claim sessions");
                return false;
            }
        };
        for record in &claimed {
            self.track(tracker, polled, record);
        }
        // Webhooks accepted for them before (by any replica, before any crash) still count.
        let ids: Vec<SessionId> = claimed.iter().map(|r| r.session_id.clone()).collect();
        if !ids.is_empty() {
            self.feed_webhooks(tracker, &ids).await;
        }
        claimed.len() == room
    }

    /// Brings what this replica polls in line with the leases the store says it holds: stops
    /// polling a session whose lease it lost (it lapsed and another took it), and polls one it
    /// holds but does not track (leased at an add whose notice to this task never came).
    async fn sync_held(&self, tracker: &mut Tracker, polled: &mut HashSet<SessionId>) {
        let Ok(held) = self.store.held_sessions(&self.replica).await else {
            return;
        };
        let held: HashSet<SessionId> = held.into_iter().collect();
        let lost: Vec<SessionId> = polled.difference(&held).cloned().collect();
        for session in lost {
            tracing::info!(session = %session, "lease lost; another replica polls it");
            let _ = tracker.remove(&session);
            polled.remove(&session);
        }
        let unpolled: Vec<SessionId> = held.difference(polled).take(CLAIM_BATCH).cloned().collect();
        for session in &unpolled {
            if let Ok(Some(record)) = self.store.get_session(session).await {
                if record.state == SessionState::Tracking {
                    self.track(tracker, polled, &record);
                }
            }
        }
        if !unpolled.is_empty() {
            self.feed_webhooks(tracker, &unpolled).await;
        }
    }

    /// Hands back what this replica holds beyond its fair share, so that a replica that joined
    /// later gets work.
    async fn rebalance(
        &self,
        tracker: &mut Tracker,
        polled: &mut HashSet<SessionId>,
        share: Option<usize>,
    ) {
        let Some(share) = share else {
            return;
        };
        let excess = polled.len().saturating_sub(share);
        if excess == 0 {
            return;
        }
        let handed: Vec<SessionId> = polled.iter().take(excess).cloned().collect();
        match self
            .store
            .release_sessions(
                &self.replica,
                handed.clone(),
                SystemTime::now() + self.interval,
            )
            .await
        {
            Ok(released) => {
                tracing::info!(released, "handed sessions to other replicas");
                for session in handed {
                    let _ = tracker.remove(&session);
                    polled.remove(&session);
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot hand sessions over"),
        }
    }

    /// Feeds the accepted webhooks of these sessions to the tracker. Feeding one again is
    /// harmless: only a session's first webhook can hasten a poll.
    async fn feed_webhooks(&self, tracker: &mut Tracker, sessions: &[SessionId]) {
        match self.store.webhooks_of(sessions).await {
            Ok(webhooks) => feed(tracker, webhooks),
            Err(err) => tracing::warn!(error = %err, "cannot read accepted webhooks"),
        }
    }

    /// Feeds the webhooks accepted (anywhere) for the sessions this replica holds since a
    /// little before the last scan: what notices would have brought. The margin covers clocks
    /// of replicas that disagree.
    async fn scan_webhooks(&self, tracker: &mut Tracker, scanned: &mut SystemTime) {
        let now = SystemTime::now();
        let since = scanned.checked_sub(self.lease).unwrap_or(*scanned);
        match self.store.leased_webhooks(&self.replica, since).await {
            Ok(webhooks) => {
                feed(tracker, webhooks);
                *scanned = now;
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
                            ("notified_by", outcome.notified_by.as_str().to_owned()),
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

/// What the fair share is computed from.
#[derive(Debug, Clone, Copy)]
struct FleetCount {
    live: usize,
    tracking: usize,
}

/// This replica's fair share of the tracking sessions: all of them alone, an even part of them
/// (plus a little slack) among live replicas.
fn share(fleet: Option<FleetCount>) -> Option<usize> {
    let fleet = fleet?;
    if fleet.live <= 1 {
        return Some(usize::MAX);
    }
    Some(fleet.tracking.div_ceil(fleet.live) + SHARE_SLACK)
}

/// Feeds stored webhooks to the tracker as hints.
fn feed(tracker: &mut Tracker, webhooks: Vec<StoredWebhook>) {
    for webhook in webhooks {
        if let Ok(hint) = serde_json::from_value::<WebhookHint>(webhook.event) {
            tracker.handle_webhook(hint);
        }
    }
}

/// The next webhook notice, or never when the store has none (SQLite).
async fn next_notice(notices: &mut Option<WebhookNotices>) -> Option<WebhookNotice> {
    match notices {
        Some(notices) => notices.recv().await,
        None => std::future::pending().await,
    }
}
