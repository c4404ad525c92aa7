//! What the operators' calls take and answer (docs/operations.md): listing filters, the
//! store-wide counts, the delivery switch and its health, and the results of redelivering,
//! recovering, retracking, asking for a poll, purging and pruning.

use std::time::SystemTime;

use crate::model::{DeliveryState, SessionRecord, SessionState};
use crate::shared::StateCounts;

/// The order of a listing, by the time sessions were added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Order {
    /// Oldest first.
    #[default]
    Asc,
    /// Newest first.
    Desc,
}

/// Which sessions a listing shows: every filter set must hold (AND).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionFilter {
    /// In this state.
    pub state: Option<SessionState>,
    /// Whose delivery stands so (`None` in the filter's sense: no delivery row).
    pub delivery: Option<DeliveryState>,
    /// Whose outcome is of this kind (`completed`, `timed_out`, …).
    pub outcome: Option<String>,
    /// Whose outcome names this error code (an account's or the API error's).
    pub error_code: Option<String>,
    /// Whose reference is exactly this.
    pub reference: Option<String>,
    /// Whose session id or reference starts with this.
    pub prefix: Option<String>,
    /// Added after this time.
    pub added_after: Option<SystemTime>,
    /// Added before this time.
    pub added_before: Option<SystemTime>,
    /// The order.
    pub order: Order,
}

impl SessionFilter {
    /// Every session, oldest first.
    pub fn all() -> Self {
        Self::default()
    }

    /// The sessions in `state`.
    pub fn in_state(state: Option<SessionState>) -> Self {
        Self {
            state,
            ..Self::default()
        }
    }
}

/// Deliveries per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryCounts {
    /// Sessions with no delivery.
    pub none: u64,
    /// Not attempted yet.
    pub pending: u64,
    /// Answered 2xx.
    pub delivered: u64,
    /// Failed, to be retried.
    pub failing: u64,
    /// Given up.
    pub given_up: u64,
}

impl DeliveryCounts {
    pub(crate) fn add(&mut self, state: &str, n: i64) {
        let n = u64::try_from(n).unwrap_or(0);
        match DeliveryState::parse(state) {
            Some(DeliveryState::Pending) => self.pending += n,
            Some(DeliveryState::Delivered) => self.delivered += n,
            Some(DeliveryState::Failing) => self.failing += n,
            Some(DeliveryState::GivenUp) => self.given_up += n,
            _ => self.none += n,
        }
    }
}

/// The store-wide counts of `GET /v1/stats` (every replica answers the same).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Sessions per state.
    pub sessions: StateCounts,
    /// Deliveries per state.
    pub deliveries: DeliveryCounts,
    /// Outcomes committed since the window's start, per kind.
    pub outcomes: Vec<(String, u64)>,
    /// The most frequent error codes of outcomes committed since then, most first.
    pub top_error_codes: Vec<(String, u64)>,
    /// When the oldest session still tracking was added.
    pub oldest_tracking_added_at: Option<SystemTime>,
    /// When the oldest outcome still undelivered (pending or failing) was committed.
    pub oldest_undelivered_at: Option<SystemTime>,
}

/// The delivery switch and its health (`GET /v1/delivery`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryOverview {
    /// Paused for the whole fleet.
    pub paused: bool,
    /// Deliveries per state.
    pub counts: DeliveryCounts,
    /// When the oldest undelivered outcome was committed.
    pub oldest_undelivered_at: Option<SystemTime>,
    /// The last attempt answered 2xx.
    pub last_success_at: Option<SystemTime>,
    /// The last failed attempt and its error.
    pub last_failure: Option<(SystemTime, String)>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u64,
}

/// What redelivering one session did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Redelivery {
    /// Pending again, due now: the record as it now stands.
    Requeued(Box<SessionRecord>),
    /// Still tracking, or cancelled: nothing to deliver.
    NotFinished,
    /// Delivered already, and not forced.
    AlreadyDelivered,
    /// No such session.
    Unknown,
}

/// What recovering did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovered {
    /// Deliveries that matched.
    pub matched: u64,
    /// Deliveries requeued (0 on a dry run).
    pub requeued: u64,
}

/// What retracking did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Retrack {
    /// Tracking again: the record.
    Retracked(Box<SessionRecord>),
    /// Still tracking: nothing changed.
    Tracking,
    /// No such session.
    Unknown,
}

/// What asking for a poll did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PollRequest {
    /// Recorded (and announced to the fleet): the record.
    Requested(Box<SessionRecord>),
    /// Not tracking.
    NotTracking,
    /// No such session.
    Unknown,
}

/// What purging did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Purge {
    /// Deleted with its history, delivery and webhooks.
    Purged,
    /// Still tracking: nothing changed (cancel it first).
    Tracking,
    /// No such session.
    Unknown,
}

/// What one round of retention removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrunedSessions {
    /// Sessions deleted (with their history and delivery).
    pub sessions: u64,
    /// Another replica was pruning: this one did nothing.
    pub skipped: bool,
}

/// The `webhook-id` of a session's outcome: the base (`msg_<id>`) for the first, a distinct
/// stable one for each outcome after a retrack.
pub(crate) fn webhook_id(base: &str, generation: i64) -> String {
    if generation <= 0 {
        base.to_owned()
    } else {
        format!("{base}_{}", generation + 1)
    }
}

/// A value bound to a query built by [`list_query`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bound {
    Int(i64),
    Text(String),
}

/// How an engine writes bound parameters and compares text by bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// The listing query for `filter` (the record columns, one row more than `limit` to tell
/// whether a page follows) and its bound values. Only placeholders are built from input.
pub(crate) fn list_query(
    filter: &SessionFilter,
    after: Option<i64>,
    limit: i64,
    dialect: Dialect,
) -> (String, Vec<Bound>) {
    let mut binds = Vec::new();
    let mut clauses: Vec<String> = Vec::new();
    let bind = |value: Bound, binds: &mut Vec<Bound>| {
        binds.push(value);
        match dialect {
            Dialect::Sqlite => format!("?{}", binds.len()),
            Dialect::Postgres => format!("${}", binds.len()),
        }
    };
    // Byte order, as the indexes are built (PostgreSQL's default collation is linguistic).
    let bytes = match dialect {
        Dialect::Sqlite => "",
        Dialect::Postgres => " COLLATE \"C\"",
    };
    if let Some(state) = filter.state {
        clauses.push(format!(
            "s.state = {}",
            bind(Bound::Text(state.as_str().into()), &mut binds)
        ));
    }
    match filter.delivery {
        None => {}
        Some(DeliveryState::None) => clauses.push("o.session_id IS NULL".into()),
        Some(state) => clauses.push(format!(
            "o.state = {}",
            bind(Bound::Text(state.as_str().into()), &mut binds)
        )),
    }
    if let Some(kind) = &filter.outcome {
        clauses.push(format!(
            "s.outcome_kind = {}",
            bind(Bound::Text(kind.clone()), &mut binds)
        ));
    }
    if let Some(code) = &filter.error_code {
        clauses.push(format!(
            "s.seq IN (SELECT session_seq FROM session_error_codes WHERE code = {})",
            bind(Bound::Text(code.clone()), &mut binds)
        ));
    }
    if let Some(reference) = &filter.reference {
        clauses.push(format!(
            "s.reference{bytes} = {}",
            bind(Bound::Text(reference.clone()), &mut binds)
        ));
    }
    if let Some(prefix) = &filter.prefix {
        // A prefix is the range [prefix, prefix + the highest character).
        let low = bind(Bound::Text(prefix.clone()), &mut binds);
        let high = bind(Bound::Text(format!("{prefix}\u{10FFFF}")), &mut binds);
        clauses.push(format!(
            "((s.session_id{bytes} >= {low} AND s.session_id{bytes} < {high}) OR \
             (s.reference{bytes} >= {low} AND s.reference{bytes} < {high}))"
        ));
    }
    if let Some(time) = filter.added_after {
        clauses.push(format!(
            "s.added_at_ms > {}",
            bind(Bound::Int(crate::model::to_ms(time)), &mut binds)
        ));
    }
    if let Some(time) = filter.added_before {
        clauses.push(format!(
            "s.added_at_ms < {}",
            bind(Bound::Int(crate::model::to_ms(time)), &mut binds)
        ));
    }
    let (direction, past) = match filter.order {
        Order::Asc => ("ASC", ">"),
        Order::Desc => ("DESC", "<"),
    };
    if let Some(after) = after {
        clauses.push(format!(
            "s.seq {past} {}",
            bind(Bound::Int(after), &mut binds)
        ));
    }
    let filter_sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let limit = bind(Bound::Int(limit.saturating_add(1)), &mut binds);
    let sql = format!(
        "SELECT {} FROM {} {filter_sql} ORDER BY s.seq {direction} LIMIT {limit}",
        crate::row::COLUMNS,
        crate::row::FROM
    );
    (sql, binds)
}
