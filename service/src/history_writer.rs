//! The history writer: events the tracking task sees (progress that changed) appended to the
//! sessions' histories in batches, one transaction per batch. Changes the store makes itself
//! (adds, webhooks, outcomes, deliveries, operators' actions) are written in their own
//! transactions; these are observations, so under pressure they are dropped (and counted)
//! rather than allowed to slow the polling.

use std::time::{Duration, SystemTime};

use bankconnect_core::SessionId;
use bankconnect_store::{NewEvent, Store};
use tokio::sync::{mpsc, watch};

/// Events queued for the writer; beyond this they are dropped.
pub(crate) const QUEUE: usize = 4096;
/// Most events in one transaction.
const BATCH: usize = 512;
/// Longest an event waits for others to share its commit.
const WAIT: Duration = Duration::from_millis(100);

/// Writes until the queue closes or shutdown, then what is queued.
pub(crate) async fn run(
    store: Store,
    mut events: mpsc::Receiver<(SessionId, NewEvent)>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let stop = tokio::select! {
            n = events.recv_many(&mut batch, BATCH) => n == 0,
            _ = shutdown.wait_for(|stop| *stop) => true,
        };
        if !stop && batch.len() < BATCH {
            // A little longer, so that a burst shares one commit.
            let _ = tokio::time::timeout(WAIT, async {
                while batch.len() < BATCH {
                    let room = BATCH - batch.len();
                    if events.recv_many(&mut batch, room).await == 0 {
                        break;
                    }
                }
            })
            .await;
        }
        if stop {
            while let Ok(event) = events.try_recv() {
                batch.push(event);
            }
        }
        if !batch.is_empty() {
            if let Err(err) = store
                .append_events(std::mem::take(&mut batch), SystemTime::now())
                .await
            {
                tracing::warn!(error = %err, "cannot write history events; dropped");
            }
        }
        if stop {
            return;
        }
    }
}
