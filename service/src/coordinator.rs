//! The coordinator task: this replica's leases and heartbeat, claims and hand-backs as the
//! fleet policy ([`crate::fleet`]) plans them, and the webhooks other replicas accepted for
//! sessions polled here (notices, with a periodic scan as the fallback). It does the store IO;
//! the tracking task hears the result as commands.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bankconnect_core::{SessionId, WebhookHint};
use bankconnect_store::{SessionState, Store, StoredWebhook, WebhookNotice, WebhookNotices};
use tokio::sync::{mpsc, watch};

use crate::fleet::{self, FleetCount, CLAIM_BATCH};
use crate::metrics::{label, Metrics};
use crate::tracking::{polled, Command, Polled};

/// How long a webhook's dedupe record is kept: a copy FinBox (or a replay) sends later is new.
const DEDUPE_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// A replica without a heartbeat this long is forgotten.
const REPLICA_GONE: Duration = Duration::from_secs(3600);
/// How often records are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The coordinator's settings.
pub(crate) struct Coordinator {
    pub(crate) store: Store,
    pub(crate) replica: String,
    pub(crate) lease: Duration,
    /// How long a lease lasts ([`crate::fleet::hold`]); renewed every third of it.
    pub(crate) hold: Duration,
    /// The poll interval: a session handed to another replica waits this long before it may
    /// be claimed (it may just have been polled here).
    pub(crate) interval: Duration,
    pub(crate) polled: Polled,
    pub(crate) tracking: mpsc::Sender<Command>,
    pub(crate) metrics: Arc<Metrics>,
    /// Whether the last heartbeat failed (a line is logged when this changes, not each time).
    pub(crate) store_down: std::sync::atomic::AtomicBool,
}

impl Coordinator {
    /// Runs until `shutdown` turns true and the tracking task has stopped (`tracking_done`),
    /// then releases this replica's leases.
    pub(crate) async fn run(
        self,
        mut shutdown: watch::Receiver<bool>,
        tracking_done: impl std::future::Future<Output = ()>,
    ) {
        // A store several processes share (PostgreSQL) is what makes a fleet.
        let several = self.store.capabilities().several_processes;
        // Heartbeat first, so that the fair share counts this replica.
        self.heartbeat(true).await;
        let renew_every = self.hold / 3;
        let mut renewed = tokio::time::Instant::now();
        let mut fleet = self.count_fleet().await;
        // Listening starts before the first claim, so that no webhook falls between the two.
        let mut notices = self.store.listen_webhooks(&self.replica);
        let mut more_to_claim = self.claim(fleet::share(fleet, several)).await;
        let mut scanned = SystemTime::now();
        // The first renewal one period on (everything was just claimed).
        let period = self.lease / 3;
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // In a fleet, lapsed leases (a dead replica's) are looked for every interval too, so
        // that a takeover comes within one lease and one interval, not a renewal later.
        let look_every = self.interval.min(period);
        let mut look =
            tokio::time::interval_at(tokio::time::Instant::now() + look_every, look_every);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut prune = tokio::time::interval(PRUNE_EVERY);
        prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                Some(notice) = next_notice(&mut notices) => match notice {
                    WebhookNotice::Webhook(session) if polled(&self.polled).contains(&session) => {
                        self.feed_webhooks(&[session]).await;
                    }
                    WebhookNotice::PollRequested(session) if polled(&self.polled).contains(&session) => {
                        let _ = self.tracking.send(Command::PollNow(vec![session])).await;
                    }
                    WebhookNotice::Missed => self.scan_webhooks(&mut scanned).await,
                    _ => {}
                },
                _ = renew.tick() => {
                    // Leases are renewed (and held sessions checked) every third of the hold;
                    // the heartbeat beats every third of the lease. In a fleet both are one.
                    let due = renewed.elapsed() + period / 2 >= renew_every;
                    if due {
                        renewed = tokio::time::Instant::now();
                    }
                    if self.heartbeat(due).await && due {
                        fleet = self.count_fleet().await;
                        let share = fleet::share(fleet, several);
                        self.sync_held().await;
                        self.hand_back(share).await;
                        more_to_claim = self.claim(share).await;
                        if several {
                            // The fallback, should a notice have gone missing unnoticed.
                            self.scan_webhooks(&mut scanned).await;
                        }
                    }
                    self.count_sessions().await;
                }
                _ = look.tick(), if several => {
                    more_to_claim = self.claim(fleet::share(fleet, several)).await;
                }
                _ = prune.tick() => self.prune().await,
                () = std::future::ready(()), if more_to_claim => {
                    more_to_claim = self.claim(fleet::share(fleet, several)).await;
                }
            }
        }
        // Leases go once the tracking task stopped (it polls nothing more).
        tracking_done.await;
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

    /// Records this replica's heartbeat, and renews its leases if `renew`; `false` if the
    /// store did not answer.
    async fn heartbeat(&self, renew: bool) -> bool {
        let now = SystemTime::now();
        let beat = if renew {
            self.store
                .renew_leases(&self.replica, now, self.hold)
                .await
                .map(|_| ())
        } else {
            self.store.heartbeat(&self.replica, now).await
        };
        match beat {
            Ok(()) => {
                if self
                    .store_down
                    .swap(false, std::sync::atomic::Ordering::Relaxed)
                {
                    tracing::warn!("store reachable again");
                }
                true
            }
            Err(err) => {
                if !self
                    .store_down
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    tracing::error!(error = %err, "store unreachable; polling goes on, commits wait");
                } else {
                    tracing::debug!(error = %err, "cannot renew leases");
                }
                false
            }
        }
    }

    /// The live replicas and the tracking sessions, as the store says.
    async fn count_fleet(&self) -> Option<FleetCount> {
        // Live: heartbeat within two renewals. A replica that missed two is most likely dead.
        let since = SystemTime::now().checked_sub(self.lease * 2 / 3)?;
        let live = self.store.live_replicas(since).await.ok()?.len().max(1);
        let tracking = usize::try_from(self.store.count_sessions().await.ok()?.tracking).ok()?;
        Some(FleetCount { live, tracking })
    }

    /// Claims one batch as the plan says and hands it to the tracking task; `true` if there
    /// may be more to claim now (the batch was full).
    async fn claim(&self, share: Option<usize>) -> bool {
        let held = polled(&self.polled).len();
        let room = fleet::plan(share, held).claim;
        if room == 0 {
            return false;
        }
        let claimed = match self
            .store
            .claim_sessions(&self.replica, SystemTime::now(), self.hold, room)
            .await
        {
            Ok(claimed) => claimed,
            Err(err) => {
                tracing::warn!(error = %err, "cannot claim sessions");
                return false;
            }
        };
        if claimed.is_empty() {
            return false;
        }
        tracing::info!(claimed = claimed.len(), "sessions taken over");
        self.metrics
            .leases
            .get_or_create(&label("change", "taken_over"))
            .inc_by(claimed.len() as u64);
        let full = claimed.len() == room;
        // Webhooks accepted for them before (by any replica, before any crash) still count.
        let ids: Vec<SessionId> = claimed.iter().map(|r| r.session_id.clone()).collect();
        let hints = self.hints_of(&ids).await;
        let _ = self.tracking.send(Command::Track(claimed, hints)).await;
        full
    }

    /// Brings what this replica polls in line with the leases the store says it holds.
    async fn sync_held(&self) {
        // What was polled before the store is read: a session added meanwhile is not lost.
        let before: HashSet<SessionId> = polled(&self.polled).clone();
        let Ok(held) = self.store.held_sessions(&self.replica).await else {
            return;
        };
        let held: HashSet<SessionId> = held.into_iter().collect();
        let lost: Vec<SessionId> = before.difference(&held).cloned().collect();
        if !lost.is_empty() {
            tracing::info!(lost = lost.len(), "leases lost; other replicas poll them");
            let _ = self.tracking.send(Command::Untrack(lost)).await;
        }
        let unpolled: Vec<SessionId> = {
            let now = polled(&self.polled);
            held.iter()
                .filter(|s| !now.contains(*s))
                .take(CLAIM_BATCH)
                .cloned()
                .collect()
        };
        let mut records = Vec::new();
        for session in &unpolled {
            if let Ok(Some(record)) = self.store.get_session(session).await {
                if record.state == SessionState::Tracking {
                    records.push(record);
                }
            }
        }
        if !records.is_empty() {
            let hints = self.hints_of(&unpolled).await;
            let _ = self.tracking.send(Command::Track(records, hints)).await;
        }
    }

    /// Hands back what the plan says is beyond this replica's fair share.
    async fn hand_back(&self, share: Option<usize>) {
        let handed: Vec<SessionId> = {
            let set = polled(&self.polled);
            let excess = fleet::plan(share, set.len()).hand_back;
            set.iter().take(excess).cloned().collect()
        };
        if handed.is_empty() {
            return;
        }
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
                tracing::info!(released, "sessions handed back to other replicas");
                self.metrics
                    .leases
                    .get_or_create(&label("change", "handed_back"))
                    .inc_by(released as u64);
                let _ = self.tracking.send(Command::Untrack(handed)).await;
            }
            Err(err) => tracing::warn!(error = %err, "cannot hand sessions back"),
        }
    }

    async fn hints_of(&self, sessions: &[SessionId]) -> Vec<WebhookHint> {
        match self.store.webhooks_of(sessions).await {
            Ok(webhooks) => hints(webhooks),
            Err(err) => {
                tracing::warn!(error = %err, "cannot read accepted webhooks");
                Vec::new()
            }
        }
    }

    /// Feeds the accepted webhooks of these sessions to the tracking task.
    async fn feed_webhooks(&self, sessions: &[SessionId]) {
        let hints = self.hints_of(sessions).await;
        if !hints.is_empty() {
            let _ = self.tracking.send(Command::Webhooks(hints)).await;
        }
    }

    /// Feeds the webhooks accepted (anywhere) for the sessions this replica holds since a
    /// little before the last scan: what notices would have brought. The margin covers clocks
    /// of replicas that disagree.
    async fn scan_webhooks(&self, scanned: &mut SystemTime) {
        let now = SystemTime::now();
        let since = scanned.checked_sub(self.lease).unwrap_or(*scanned);
        match self.store.leased_webhooks(&self.replica, since).await {
            Ok(webhooks) => {
                let hints = hints(webhooks);
                if !hints.is_empty() {
                    let _ = self.tracking.send(Command::Webhooks(hints)).await;
                }
                *scanned = now;
            }
            Err(err) => tracing::warn!(error = %err, "cannot read accepted webhooks"),
        }
    }

    /// Forgets dedupe records past their window (and beyond the store's bounds) and the
    /// heartbeats of replicas long gone.
    async fn prune(&self) {
        let now = SystemTime::now();
        let (Some(before), Some(replicas_before)) = (
            now.checked_sub(DEDUPE_WINDOW),
            now.checked_sub(REPLICA_GONE.max(self.lease * 10)),
        ) else {
            return;
        };
        match self.store.prune_webhooks(before, replicas_before).await {
            Ok(pruned) if pruned.dedupe + pruned.replicas > 0 => {
                tracing::debug!(dedupe = pruned.dedupe, replicas = pruned.replicas, "pruned");
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "cannot prune webhook records"),
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
        // The store-wide delivery gauges (the switch, the backlog, its age).
        if let Ok(overview) = self.store.delivery_overview().await {
            self.metrics.delivery_seen(&overview, SystemTime::now());
        }
    }
}

/// Stored webhooks as hints for the tracker.
fn hints(webhooks: Vec<StoredWebhook>) -> Vec<WebhookHint> {
    webhooks
        .into_iter()
        .filter_map(|webhook| serde_json::from_value::<WebhookHint>(webhook.event).ok())
        .collect()
}

/// The next webhook notice, or never when the store has none (SQLite).
async fn next_notice(notices: &mut Option<WebhookNotices>) -> Option<WebhookNotice> {
    match notices {
        Some(notices) => notices.recv().await,
        None => std::future::pending().await,
    }
}
