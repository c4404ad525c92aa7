//! The tracking task: the async driver's tracker over the sessions this replica holds leases
//! on. It only does what needs no store: commands in (adds, cancels, webhooks, hand-backs from
//! the API and the coordinator), requests out, outcomes to the commit worker. It never waits
//! on the store, so a stalled store delays commits and never stops the polling.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use bankconnect_core::{SessionId, TrackError, TrackerEvent, WebhookHint};
use bankconnect_http_async::Tracker;
use bankconnect_store::SessionRecord;
use tokio::sync::{mpsc, watch};

use crate::commit::Finished;

/// What the API, the intake and the coordinator ask of the tracking task.
#[derive(Debug)]
pub(crate) enum Command {
    /// Sessions committed to the store and leased to this replica, with the webhooks kept for
    /// them: track.
    Track(Vec<SessionRecord>, Vec<WebhookHint>),
    /// Sessions cancelled, handed back or leased elsewhere: stop polling them.
    Untrack(Vec<SessionId>),
    /// Webhooks committed to the store for sessions that may be tracked here.
    Webhooks(Vec<WebhookHint>),
}

/// The sessions this replica polls, shared with the coordinator (which compares them with the
/// leases the store says it holds). Locked briefly, never across an await.
pub(crate) type Polled = Arc<Mutex<HashSet<SessionId>>>;

/// Locks the polled set (a panic elsewhere while holding it leaves a set still usable).
pub(crate) fn polled(set: &Polled) -> std::sync::MutexGuard<'_, HashSet<SessionId>> {
    set.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs until `shutdown` turns true; outcomes not yet handed to the commit worker then are
/// handed over, and what is lost from memory stays tracking in the store (re-polled later).
pub(crate) async fn run(
    mut tracker: Tracker,
    polled_set: Polled,
    mut commands: mpsc::Receiver<Command>,
    commits: mpsc::Sender<Finished>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Held for the loop's life: with no session left, `next_event` waits instead of ending, so
    // it is always polled and an outcome queued with nothing else tracked is never parked.
    let _feed = tracker.session_feed();
    // When a session's end was first signalled (a webhook), for the latency histogram.
    let mut first_sign: HashMap<SessionId, Instant> = HashMap::new();
    // Outcomes the commit worker has no room for yet (at most one per session tracked).
    let mut parked: VecDeque<Finished> = VecDeque::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            Some(command) = commands.recv() => match command {
                Command::Track(records, hints) => {
                    for record in &records {
                        track(&mut tracker, &polled_set, record);
                    }
                    for hint in hints {
                        first_sign.entry(hint.session_id.clone()).or_insert_with(Instant::now);
                        tracker.handle_webhook(hint);
                    }
                }
                Command::Untrack(sessions) => {
                    let mut set = polled(&polled_set);
                    for session in sessions {
                        let _ = tracker.remove(&session);
                        set.remove(&session);
                        first_sign.remove(&session);
                    }
                }
                Command::Webhooks(hints) => {
                    // One for a session whose add is still on its way is kept by the tracker
                    // (bounded) and applied at the add.
                    for hint in hints {
                        first_sign.entry(hint.session_id.clone()).or_insert_with(Instant::now);
                        tracker.handle_webhook(hint);
                    }
                }
            },
            permit = commits.reserve(), if !parked.is_empty() => {
                if let (Ok(permit), Some(finished)) = (permit, parked.pop_front()) {
                    permit.send(finished);
                }
            }
            event = tracker.next_event() => match event {
                Some(TrackerEvent::Outcome(outcome)) => {
                    polled(&polled_set).remove(&outcome.session_id);
                    let first_sign = first_sign.remove(&outcome.session_id);
                    let finished = Finished { outcome, first_sign, learnt: Instant::now() };
                    if parked.is_empty() {
                        if let Err(mpsc::error::TrySendError::Full(finished)) = commits.try_send(finished) {
                            parked.push_back(finished);
                        }
                    } else {
                        parked.push_back(finished);
                    }
                }
                Some(_) => {}
                // Only once the feed is gone, which it is not while the loop runs.
                None => break,
            },
        }
    }
    // What is known is handed over for the commit worker's last round.
    for finished in parked {
        if commits.send(finished).await.is_err() {
            break;
        }
    }
}

/// Starts polling a stored session, counting the time since it was added.
fn track(tracker: &mut Tracker, polled_set: &Polled, record: &SessionRecord) {
    let elapsed = SystemTime::now()
        .duration_since(record.tracking_since)
        .unwrap_or_default();
    let mut added = tracker.add_started(record.session_id.clone(), elapsed, record.max_wait);
    if let (Err(TrackError::Policy(_)), Some(_)) = (&added, record.max_wait) {
        // A max wait an older build stored as zero (from a sub-millisecond `max_wait`): its
        // wait is spent, so it ends now (timed out) instead of staying tracking forever.
        added = tracker.add_started(
            record.session_id.clone(),
            elapsed,
            Some(std::time::Duration::from_millis(1)),
        );
    }
    match added {
        Ok(()) | Err(TrackError::Duplicate(_)) => {
            polled(polled_set).insert(record.session_id.clone());
        }
        Err(err) => tracing::warn!(session = %record.session_id, error = %err, "cannot track"),
    }
}
