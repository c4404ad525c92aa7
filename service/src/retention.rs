//! Retention (River's cleaner, as a small service): at start and every interval, finished and
//! cancelled sessions unchanged for longer than the retention, with nothing left to deliver,
//! are deleted with their history, in batches of at most 5 000 rows per transaction so that
//! adds and webhooks keep their latency meanwhile. In a fleet one replica prunes at a time
//! (the store's lock); the others skip the round.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bankconnect_store::Store;
use tokio::sync::watch;

use crate::metrics::{label, Metrics};

/// Most sessions deleted per transaction where writers run side by side (PostgreSQL's row
/// locks: a batch holds up no add).
pub(crate) const BATCH: usize = 5_000;
/// Most sessions deleted per transaction where one writer goes at a time (SQLite): every add
/// waits for a batch in progress, so a batch stays within a few milliseconds.
pub(crate) const SMALL_BATCH: usize = 200;
/// Pause between two batches, so that other writers go first.
const BETWEEN_BATCHES: Duration = Duration::from_millis(20);

/// The retention task's settings.
pub(crate) struct Retention {
    pub(crate) store: Store,
    pub(crate) retention: Duration,
    pub(crate) every: Duration,
    pub(crate) metrics: Arc<Metrics>,
}

impl Retention {
    /// Prunes at start and every interval until shutdown.
    pub(crate) async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                _ = tick.tick() => {}
            }
            self.round(&shutdown).await;
        }
    }

    /// One round: batches until one finds less than a batch.
    async fn round(&self, shutdown: &watch::Receiver<bool>) {
        let Some(before) = SystemTime::now().checked_sub(self.retention) else {
            return;
        };
        let batch = if self.store.capabilities().several_processes {
            BATCH
        } else {
            SMALL_BATCH
        };
        let mut total = 0;
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.store.prune_sessions(before, batch).await {
                Ok(pruned) if pruned.skipped => return,
                Ok(pruned) => {
                    total += pruned.sessions;
                    self.metrics
                        .pruned
                        .get_or_create(&label("kind", "sessions"))
                        .inc_by(pruned.sessions);
                    if pruned.sessions < batch as u64 {
                        break;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot prune old sessions; next round");
                    return;
                }
            }
            tokio::time::sleep(BETWEEN_BATCHES).await;
        }
        if total > 0 {
            tracing::info!(sessions = total, "old sessions pruned");
        }
    }
}
