//! What the store holds, as plain data: session records, their delivery, pages, due deliveries.

use std::time::{Duration, SystemTime};

use bankconnect_core::SessionId;

/// A replica of the service and its heartbeat, as the store records them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaBeat {
    /// The replica's id.
    pub id: String,
    /// When it first beat.
    pub started_at: SystemTime,
    /// Its last heartbeat.
    pub heartbeat_at: SystemTime,
}

/// A session to start tracking.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewSession {
    /// The session.
    pub session_id: SessionId,
    /// The caller's own reference, kept verbatim.
    pub reference: Option<String>,
    /// This session's max wait, when not the service's default.
    pub max_wait: Option<Duration>,
}

impl NewSession {
    /// A session with no reference and the default max wait.
    pub fn new(session_id: SessionId) -> Self {
        Self {
            session_id,
            reference: None,
            max_wait: None,
        }
    }

    /// With the caller's reference.
    pub fn with_reference(mut self, reference: impl Into<String>) -> Self {
        self.reference = Some(reference.into());
        self
    }

    /// With a max wait of its own.
    pub fn with_max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = Some(max_wait);
        self
    }
}

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionState {
    /// Being polled.
    Tracking,
    /// Ended with an outcome.
    Finished,
    /// Cancelled by the caller; no outcome, no delivery.
    Cancelled,
}

impl SessionState {
    /// The state's name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tracking => "tracking",
            Self::Finished => "finished",
            Self::Cancelled => "cancelled",
        }
    }

    /// The state named `text`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "tracking" => Some(Self::Tracking),
            "finished" => Some(Self::Finished),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// Where a finished session's delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeliveryState {
    /// No delivery (not finished, cancelled, or no delivery configured).
    None,
    /// Not attempted yet.
    Pending,
    /// Answered 2xx.
    Delivered,
    /// Failed at least once; will be retried.
    Failing,
    /// Failed on every attempt of the schedule.
    GivenUp,
}

impl DeliveryState {
    /// The state's name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failing => "failing",
            Self::GivenUp => "given_up",
        }
    }

    /// The state named `text`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "none" => Some(Self::None),
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "failing" => Some(Self::Failing),
            "given_up" => Some(Self::GivenUp),
            _ => None,
        }
    }
}

/// A session's delivery as the record shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryStatus {
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// The `webhook-id`, the same on every attempt.
    pub webhook_id: Option<String>,
    /// When the next attempt is due, while pending or failing.
    pub next_attempt_at: Option<SystemTime>,
}

impl DeliveryStatus {
    pub(crate) fn none() -> Self {
        Self {
            state: DeliveryState::None,
            attempts: 0,
            last_error: None,
            webhook_id: None,
            next_attempt_at: None,
        }
    }
}

/// Which replica polls a session, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// The replica holding it.
    pub owner: String,
    /// When it lapses unless renewed.
    pub until: SystemTime,
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SessionRecord {
    /// The session.
    pub session_id: SessionId,
    /// The caller's reference.
    pub reference: Option<String>,
    /// Where it stands.
    pub state: SessionState,
    /// When it was added.
    pub added_at: SystemTime,
    /// When its tracking began: its add, or its last retrack (max wait counts from here).
    pub tracking_since: SystemTime,
    /// When it last changed.
    pub updated_at: SystemTime,
    /// Its own max wait, if any.
    pub max_wait: Option<Duration>,
    /// The outcome as the core serializes it, once finished.
    pub outcome: Option<serde_json::Value>,
    /// The tracker's resumable state, when saved.
    pub tracker_state: Option<serde_json::Value>,
    /// The replica polling it, while tracking.
    pub lease: Option<Lease>,
    /// Its delivery.
    pub delivery: DeliveryStatus,
}

/// What adding a session did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Added {
    /// Newly stored. `pending_webhooks` are the webhooks kept for it before it was added (taken
    /// out of the pending table in the same transaction), to apply now.
    Created {
        /// The stored record.
        record: SessionRecord,
        /// Webhooks that came before the session, oldest first.
        pending_webhooks: Vec<serde_json::Value>,
    },
    /// Already known: the stored record, unchanged.
    Existing(SessionRecord),
}

impl Added {
    /// The record, new or existing.
    pub fn record(&self) -> &SessionRecord {
        match self {
            Self::Created { record, .. } | Self::Existing(record) => record,
        }
    }

    /// Whether the session was new.
    pub fn is_created(&self) -> bool {
        matches!(self, Self::Created { .. })
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Page {
    /// The records, in the order they were added.
    pub sessions: Vec<SessionRecord>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
    /// A cursor of the opposite order from this page's first record: the page before it, read
    /// the other way (`None` for an empty page).
    pub back_cursor: Option<String>,
}

/// A delivery claimed by one worker.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DueDelivery {
    /// The finished session.
    pub session_id: SessionId,
    /// The `webhook-id` to sign with.
    pub webhook_id: String,
    /// Attempts made before this one.
    pub attempts: u32,
}

/// What `finish_session` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Finish {
    /// Finished now (and its delivery enqueued, if asked).
    Finished,
    /// Not tracking any more (finished before, or cancelled): nothing changed.
    NotTracking,
    /// No such session.
    Unknown,
}

pub(crate) fn to_ms(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn from_ms(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

pub(crate) fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Cursors are opaque to callers: the position after which the next page starts, and in
/// which direction (a cursor of one order is refused by the other).
pub(crate) fn encode_cursor(seq: i64, order: crate::operations::Order) -> String {
    match order {
        crate::operations::Order::Asc => format!("s{seq:x}"),
        crate::operations::Order::Desc => format!("d{seq:x}"),
    }
}

pub(crate) fn decode_cursor(
    cursor: &str,
    order: crate::operations::Order,
) -> Result<i64, crate::StoreError> {
    let mark = match order {
        crate::operations::Order::Asc => 's',
        crate::operations::Order::Desc => 'd',
    };
    cursor
        .strip_prefix(mark)
        .filter(|hex| !hex.is_empty() && hex.len() <= 16)
        .and_then(|hex| i64::from_str_radix(hex, 16).ok())
        .filter(|seq| *seq >= 0)
        .ok_or(crate::StoreError::InvalidCursor)
}

/// How an accepted webhook is to be acted on (see [`crate::Store::accept_webhook`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Route {
    /// Only recorded (for dedupe): it is not an end-of-processing event.
    RecordOnly,
    /// An end-of-processing hint for the session it names: acted on by whoever polls it, or
    /// kept until that session is added.
    Hint {
        /// Whether it came with a valid token or signature (then it outranks an
        /// unauthenticated one kept for the same session).
        authenticated: bool,
    },
}

/// What accepting a webhook did, all in one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebhookFate {
    /// Seen before by some process sharing the store: nothing changed.
    Duplicate,
    /// Recorded; nothing to act on.
    Recorded,
    /// Recorded for a session being tracked; on PostgreSQL every process listening through
    /// [`crate::Store::listen_webhooks`] hears of it at commit.
    Tracking,
    /// Recorded; the session has ended already.
    Ended,
    /// Recorded and kept for a session not added yet.
    Kept {
        /// Older kept webhooks that fell out of the bounds to make room.
        dropped: usize,
    },
}

/// An accepted webhook as stored: what feeds a tracker again after a claim or a restart.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StoredWebhook {
    /// The session it names.
    pub session_id: SessionId,
    /// The event as recorded (a serialized hint for end-of-processing events).
    pub event: serde_json::Value,
}
