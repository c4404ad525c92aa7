//! The tracking task: the async driver's tracker over the sessions this replica holds leases
//! on. It only does what needs no store: commands in (adds, cancels, webhooks, hand-backs from
//! the API and the coordinator), requests out, outcomes to the commit worker. It never waits
//! on the store, so a stalled store delays commits and never stops the polling.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use bankconnect_core::{ProgressUpdate, SessionId, TrackError, TrackerEvent, WebhookHint};
use bankconnect_http_async::Tracker;
use bankconnect_store::NewEvent;
use bankconnect_store::SessionRecord;
use tokio::sync::{mpsc, watch};

use crate::commit::{Commit, Finished};

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
    /// An operator asked for these sessions to be polled now.
    PollNow(Vec<SessionId>),
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
    commits: mpsc::Sender<Commit>,
    mut shutdown: watch::Receiver<bool>,
) {
    // What each session's last progress event said, so that only changes are written.
    let mut seen: HashMap<SessionId, Seen> = HashMap::new();
    // Each session's current run of one failure, written as one event when the run ends.
    let mut runs: HashMap<SessionId, (bankconnect_core::OutcomeError, u32)> = HashMap::new();
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
                        seen.remove(&session);
                        runs.remove(&session);
                    }
                }
                Command::PollNow(sessions) => {
                    for session in &sessions {
                        tracker.poll_now(session);
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
                    permit.send(Commit::Outcome(finished));
                }
            }
            event = tracker.next_event() => match event {
                Some(TrackerEvent::Progress(update)) => {
                    // Observations: dropped rather than waited for when commits lag (and never
                    // ahead of an outcome parked before them).
                    if let Some(event) = end_run(&mut runs, &update.session_id) {
                        if parked.is_empty() {
                            let _ = commits.try_send(Commit::Event(update.session_id.clone(), event));
                        }
                    }
                    if let Some(event) = progress_event(&mut seen, &update) {
                        if parked.is_empty() {
                            let _ = commits.try_send(Commit::Event(update.session_id, event));
                        }
                    }
                }
                Some(TrackerEvent::Failure(failure)) => {
                    let same = runs.get(&failure.session_id).is_some_and(|(error, _)| {
                        error.code == failure.error.code && error.http_status == failure.error.http_status
                    });
                    if same {
                        if let Some((_, count)) = runs.get_mut(&failure.session_id) {
                            *count = count.saturating_add(1);
                        }
                    } else {
                        if let Some(event) = end_run(&mut runs, &failure.session_id) {
                            if parked.is_empty() {
                                let _ = commits.try_send(Commit::Event(failure.session_id.clone(), event));
                            }
                        }
                        runs.insert(failure.session_id, (failure.error, 1));
                    }
                }
                Some(TrackerEvent::Outcome(outcome)) => {
                    seen.remove(&outcome.session_id);
                    if let Some(event) = end_run(&mut runs, &outcome.session_id) {
                        if parked.is_empty() {
                            let _ = commits.try_send(Commit::Event(outcome.session_id.clone(), event));
                        }
                    }
                    polled(&polled_set).remove(&outcome.session_id);
                    let first_sign = first_sign.remove(&outcome.session_id);
                    let finished = Finished { outcome, first_sign, learnt: Instant::now() };
                    if parked.is_empty() {
                        if let Err(mpsc::error::TrySendError::Full(Commit::Outcome(finished))) =
                            commits.try_send(Commit::Outcome(finished))
                        {
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
        if commits.send(Commit::Outcome(finished)).await.is_err() {
            break;
        }
    }
}

/// The `api_error` event of a session's run of one failure, ended now.
fn end_run(
    runs: &mut HashMap<SessionId, (bankconnect_core::OutcomeError, u32)>,
    session: &SessionId,
) -> Option<NewEvent> {
    let (error, count) = runs.remove(session)?;
    Some(NewEvent::api_error(
        &error.code,
        error.http_status,
        &error.message,
        count,
    ))
}

/// A session's progress as its last event said.
#[derive(Debug, PartialEq)]
struct Seen {
    session_progress: bankconnect_core::SessionProgress,
    statements: Vec<bankconnect_core::StatementProgress>,
}

/// The `progress` event for an update that changed something (the session's progress or any
/// statement's stage), else `None`.
fn progress_event(
    seen: &mut HashMap<SessionId, Seen>,
    update: &ProgressUpdate,
) -> Option<NewEvent> {
    let now = Seen {
        session_progress: update.session_progress.clone(),
        statements: update.statements.clone(),
    };
    if seen.get(&update.session_id) == Some(&now) {
        return None;
    }
    let statements: serde_json::Map<String, serde_json::Value> = update
        .statements
        .iter()
        .enumerate()
        .take(64)
        .map(|(n, statement)| {
            let id = statement
                .statement_id
                .clone()
                .unwrap_or_else(|| format!("#{n}"));
            let stage = |s: &Option<bankconnect_core::StageStatus>| {
                s.as_ref()
                    .and_then(|s| serde_json::to_value(s).ok())
                    .unwrap_or(serde_json::Value::Null)
            };
            let stages = serde_json::json!({
                "identity": stage(&statement.identity_status),
                "transaction": stage(&statement.transaction_status),
                "processing": stage(&statement.processing_status),
                "fraud": stage(&statement.fraud_status),
            });
            (id, stages)
        })
        .collect();
    let progress = serde_json::to_value(&update.session_progress).ok();
    let event = NewEvent::progress(
        progress.as_ref().and_then(serde_json::Value::as_str),
        serde_json::Value::Object(statements),
        update.polls,
    );
    seen.insert(update.session_id.clone(), now);
    Some(event)
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
