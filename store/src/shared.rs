//! What the façade and both engines share, below all three: the bounds, counts and attempt
//! results they exchange, and the reading of rows into records (no engine imports the
//! façade).

use std::time::{Duration, SystemTime};

use bankconnect_core::SessionId;

use crate::model::{encode_cursor, DueDelivery, Page, SessionRecord, SessionState, StoredWebhook};
use crate::StoreError;

/// Bounds of what clients can make the store keep: webhooks for sessions not yet added
/// (pending) and the accepted webhooks' dedupe records, each in count, bytes and age.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Bounds {
    /// Most pending webhooks kept; the oldest fall out first (default 10 000).
    pub pending_max_count: usize,
    /// How long one is kept (default 24 h).
    pub pending_max_age: Duration,
    /// Most bytes of pending webhooks in all; the oldest fall out first (default 64 MiB).
    pub pending_max_bytes: usize,
    /// Most dedupe records kept by [`crate::Store::prune_webhooks`]; the oldest go first (default
    /// 100 000).
    pub dedupe_max_count: usize,
    /// Most bytes of dedupe records (their events) kept by [`crate::Store::prune_webhooks`] (default
    /// 64 MiB).
    pub dedupe_max_bytes: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            pending_max_count: 10_000,
            pending_max_age: Duration::from_secs(24 * 60 * 60),
            pending_max_bytes: 64 * 1024 * 1024,
            dedupe_max_count: 100_000,
            dedupe_max_bytes: 64 * 1024 * 1024,
        }
    }
}

impl Bounds {
    /// Keep at most `max_count` pending webhooks, each for at most `max_age` (other bounds at
    /// their defaults).
    pub fn new(max_count: usize, max_age: Duration) -> Self {
        Self {
            pending_max_count: max_count,
            pending_max_age: max_age,
            ..Self::default()
        }
    }

    /// The same bounds with these byte limits.
    pub fn with_bytes(mut self, pending_max_bytes: usize, dedupe_max_bytes: usize) -> Self {
        self.pending_max_bytes = pending_max_bytes;
        self.dedupe_max_bytes = dedupe_max_bytes;
        self
    }

    /// The same bounds with this many dedupe records at most.
    pub fn with_dedupe_count(mut self, dedupe_max_count: usize) -> Self {
        self.dedupe_max_count = dedupe_max_count;
        self
    }
}

/// What [`crate::Store::prune_webhooks`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pruned {
    /// Dedupe records past their window or beyond the bounds.
    pub dedupe: usize,
    /// Heartbeats of replicas gone for longer than the window.
    pub replicas: usize,
}

/// Sessions per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateCounts {
    /// Being polled.
    pub tracking: u64,
    /// Ended.
    pub finished: u64,
    /// Cancelled.
    pub cancelled: u64,
}

impl StateCounts {
    pub(crate) fn add(&mut self, state: &str, n: i64) {
        let n = u64::try_from(n).unwrap_or(0);
        match SessionState::parse(state) {
            Some(SessionState::Tracking) => self.tracking += n,
            Some(SessionState::Finished) => self.finished += n,
            Some(SessionState::Cancelled) => self.cancelled += n,
            None => {}
        }
    }
}

/// The result of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Attempt {
    /// Answered 2xx.
    Delivered,
    /// Failed; try again at `retry_at`.
    Failed {
        /// Why.
        error: String,
        /// The next attempt.
        retry_at: SystemTime,
    },
    /// Failed, and the schedule is spent.
    GaveUp {
        /// Why the last attempt failed.
        error: String,
    },
}

impl Attempt {
    /// `(state, last_error, next_attempt_ms)` columns.
    pub(crate) fn columns(&self) -> (&'static str, Option<&str>, Option<i64>) {
        match self {
            Self::Delivered => ("delivered", None, None),
            Self::Failed { error, retry_at } => {
                ("failing", Some(error), Some(crate::model::to_ms(*retry_at)))
            }
            Self::GaveUp { error } => ("given_up", Some(error), None),
        }
    }
}

pub(crate) fn page(
    mut rows: Vec<(i64, SessionRecord)>,
    limit: i64,
    order: crate::operations::Order,
) -> Page {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = if more {
        rows.last().map(|(seq, _)| encode_cursor(*seq, order))
    } else {
        None
    };
    let back_cursor = rows
        .first()
        .map(|(seq, _)| encode_cursor(*seq, order.reversed()));
    Page {
        sessions: rows.into_iter().map(|(_, record)| record).collect(),
        next_cursor,
        back_cursor,
    }
}

pub(crate) fn due_deliveries(
    rows: Vec<(String, String, i64)>,
) -> Result<Vec<DueDelivery>, StoreError> {
    rows.into_iter()
        .map(|(session, webhook_id, attempts)| due_delivery(&session, webhook_id, attempts))
        .collect()
}

/// One claimed outbox row as a due delivery.
pub(crate) fn due_delivery(
    session: &str,
    webhook_id: String,
    attempts: i64,
) -> Result<DueDelivery, StoreError> {
    Ok(DueDelivery {
        session_id: SessionId::new(session)
            .map_err(|err| StoreError::Corrupt(format!("outbox session id: {err}")))?,
        webhook_id,
        attempts: u32::try_from(attempts).unwrap_or(0),
    })
}

/// Each claimed delivery with its record, if `found` has it.
pub(crate) fn paired(
    due: Vec<DueDelivery>,
    found: Vec<SessionRecord>,
) -> Vec<(DueDelivery, Option<SessionRecord>)> {
    let mut found: std::collections::HashMap<SessionId, SessionRecord> = found
        .into_iter()
        .map(|record| (record.session_id.clone(), record))
        .collect();
    due.into_iter()
        .map(|delivery| {
            let record = found.remove(&delivery.session_id);
            (delivery, record)
        })
        .collect()
}

/// The records `found` in the order `asked` names them, each once; ids not found are skipped.
pub(crate) fn in_asked_order(asked: &[SessionId], found: Vec<SessionRecord>) -> Vec<SessionRecord> {
    let mut found: std::collections::HashMap<SessionId, SessionRecord> = found
        .into_iter()
        .map(|record| (record.session_id.clone(), record))
        .collect();
    asked.iter().filter_map(|id| found.remove(id)).collect()
}

pub(crate) fn session_ids(ids: Vec<String>) -> Result<Vec<SessionId>, StoreError> {
    ids.iter()
        .map(|id| {
            SessionId::new(id).map_err(|err| StoreError::Corrupt(format!("session id: {err}")))
        })
        .collect()
}

/// Stored webhook rows (session id, event text) as [`StoredWebhook`]s.
pub(crate) fn stored_webhooks(
    rows: Vec<(String, String)>,
) -> Result<Vec<StoredWebhook>, StoreError> {
    rows.into_iter()
        .map(|(session, event)| {
            let session_id = SessionId::new(&session)
                .map_err(|err| StoreError::Corrupt(format!("webhook session id: {err}")))?;
            let event = serde_json::from_str(&event)
                .map_err(|err| StoreError::Corrupt(format!("webhook event: {err}")))?;
            Ok(StoredWebhook { session_id, event })
        })
        .collect()
}

/// The `webhook` event of an accepted webhook, from the event as stored (a hint names its
/// event).
pub(crate) fn webhook_event(
    event: &str,
    authenticated: bool,
    duplicate: bool,
) -> crate::history::NewEvent {
    let name = serde_json::from_str::<serde_json::Value>(event)
        .ok()
        .and_then(|v| {
            v.get("event_name")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        });
    crate::history::NewEvent::webhook(name.as_deref(), authenticated, duplicate)
}

/// What a batch of recorded attempts does to the deliveries' health, gathered so that the one
/// health row is written once per batch, not once per attempt.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// An attempt of the batch was delivered (the run of failures restarts there).
    pub(crate) succeeded: bool,
    /// Failures since the batch's last success (or in all, without one).
    pub(crate) failures: i64,
    /// The last failure's error.
    pub(crate) last_error: Option<String>,
}

impl Health {
    /// Counts one attempt recorded (in the batch's order).
    pub(crate) fn record(&mut self, result: &Attempt) {
        match result {
            Attempt::Delivered => {
                self.succeeded = true;
                self.failures = 0;
            }
            Attempt::Failed { error, .. } | Attempt::GaveUp { error } => {
                self.failures += 1;
                self.last_error = Some(error.clone());
            }
        }
    }

    /// Whether the batch changes the health row at all.
    pub(crate) fn changed(&self) -> bool {
        self.succeeded || self.last_error.is_some()
    }
}

/// The health row's update for a [`Health`] (`$1` now, `$2` succeeded, `$3` failures,
/// `$4` the last error), with the engine's placeholder mark.
pub(crate) fn health_update(mark: char) -> String {
    // Typed casts: PostgreSQL cannot infer a parameter's type inside CASE and coalesce.
    let (now, ok, n, error) = (
        format!("CAST({mark}1 AS BIGINT)"),
        format!("CAST({mark}2 AS BOOLEAN)"),
        format!("CAST({mark}3 AS BIGINT)"),
        format!("CAST({mark}4 AS TEXT)"),
    );
    format!(
        "UPDATE delivery_control SET \
         last_success_ms = CASE WHEN {ok} THEN {now} ELSE last_success_ms END, \
         consecutive_failures = CASE WHEN {ok} THEN {n} ELSE consecutive_failures + {n} END, \
         last_failure_ms = CASE WHEN {error} IS NULL THEN last_failure_ms ELSE {now} END, \
         last_failure_error = coalesce({error}, last_failure_error) WHERE id = 1"
    )
}
