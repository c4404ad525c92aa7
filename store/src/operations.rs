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

impl Order {
    /// The other order.
    pub fn reversed(self) -> Self {
        match self {
            Self::Asc => Self::Desc,
            Self::Desc => Self::Asc,
        }
    }
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
    /// Only these session numbers (found first by an engine whose planner needs the help).
    pub(crate) within: Option<Vec<i64>>,
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

/// The session numbers matching a filter's ranges (prefix, times) alone, at most `limit`: an
/// engine whose planner would rather scan every session in order to find a few (PostgreSQL,
/// with `ORDER BY … LIMIT`) looks them up first when they are few.
pub(crate) fn ranges_query(filter: &SessionFilter, limit: i64) -> Option<(String, Vec<Bound>)> {
    if filter.prefix.is_none() && filter.added_after.is_none() && filter.added_before.is_none() {
        return None;
    }
    let mut binds = Vec::new();
    let mut clauses = Vec::new();
    if let Some(prefix) = &filter.prefix {
        binds.push(Bound::Text(prefix.clone()));
        binds.push(Bound::Text(format!("{prefix}\u{10FFFF}")));
        clauses.push(
            "((session_id COLLATE \"C\" >= $1 AND session_id COLLATE \"C\" < $2) OR \
             (reference COLLATE \"C\" >= $1 AND reference COLLATE \"C\" < $2))"
                .to_owned(),
        );
    }
    if let Some(time) = filter.added_after {
        binds.push(Bound::Int(crate::model::to_ms(time)));
        clauses.push(format!("added_at_ms > ${}", binds.len()));
    }
    if let Some(time) = filter.added_before {
        binds.push(Bound::Int(crate::model::to_ms(time)));
        clauses.push(format!("added_at_ms < ${}", binds.len()));
    }
    binds.push(Bound::Int(limit));
    Some((
        format!(
            "SELECT seq FROM sessions WHERE {} LIMIT ${}",
            clauses.join(" AND "),
            binds.len()
        ),
        binds,
    ))
}

/// A value bound to a query built by [`list_query`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bound {
    Int(i64),
    Text(String),
    Ints(Vec<i64>),
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
    // With an error code, or a delivery state, the page is read in the order of that index
    // (keyed by code or state, then session number): no sort, however many sessions match.
    let by_outbox = filter.error_code.is_none()
        && filter
            .delivery
            .is_some_and(|state| state != DeliveryState::None);
    let (seq, from) = if filter.error_code.is_some() {
        (
            "e.session_seq",
            format!("session_error_codes e CROSS JOIN {}", crate::row::FROM),
        )
    } else if by_outbox {
        ("o.session_seq", "outbox o CROSS JOIN sessions s".to_owned())
    } else {
        ("s.seq", crate::row::FROM.to_owned())
    };
    if let Some(code) = &filter.error_code {
        clauses.push(format!(
            "e.code = {} AND s.seq = e.session_seq",
            bind(Bound::Text(code.clone()), &mut binds)
        ));
    }
    if let Some(seqs) = &filter.within {
        clauses.push(format!(
            "s.seq = ANY({})",
            bind(Bound::Ints(seqs.clone()), &mut binds)
        ));
    }
    if let Some(state) = filter.state {
        clauses.push(format!(
            "s.state = {}",
            bind(Bound::Text(state.as_str().into()), &mut binds)
        ));
    }
    match filter.delivery {
        None => {}
        Some(DeliveryState::None) => clauses.push("o.session_id IS NULL".into()),
        Some(state) if by_outbox => clauses.push(format!(
            "o.state = {} AND s.seq = o.session_seq",
            bind(Bound::Text(state.as_str().into()), &mut binds)
        )),
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
    // A time bound on the side the page starts from also bounds the session numbers read: no
    // session before the first one added after it can match (exact, whatever the clocks did).
    // Both engines would find a min(seq) by the primary key, reading every older row first:
    // SQLite is told the index, PostgreSQL fenced off (OFFSET 0) from that rewrite.
    let (by_added, fence) = match dialect {
        Dialect::Sqlite => (" INDEXED BY sessions_by_added", ""),
        Dialect::Postgres => ("", " OFFSET 0"),
    };
    if let Some(time) = filter.added_after {
        let at = bind(Bound::Int(crate::model::to_ms(time)), &mut binds);
        clauses.push(format!("s.added_at_ms > {at}"));
        if filter.order == Order::Asc && filter.within.is_none() {
            clauses.push(format!(
                "{seq} >= (SELECT coalesce(min(seq), 0) FROM (SELECT seq FROM sessions{by_added} \
                 WHERE added_at_ms > {at}{fence}) AS t)"
            ));
        }
    }
    if let Some(time) = filter.added_before {
        let at = bind(Bound::Int(crate::model::to_ms(time)), &mut binds);
        clauses.push(format!("s.added_at_ms < {at}"));
        if filter.order == Order::Desc && filter.within.is_none() {
            clauses.push(format!(
                "{seq} <= (SELECT coalesce(max(seq), 0) FROM (SELECT seq FROM sessions{by_added} \
                 WHERE added_at_ms < {at}{fence}) AS t)"
            ));
        }
    }
    let (direction, past) = match filter.order {
        Order::Asc => ("ASC", ">"),
        Order::Desc => ("DESC", "<"),
    };
    if let Some(after) = after {
        clauses.push(format!(
            "{seq} {past} {}",
            bind(Bound::Int(after), &mut binds)
        ));
    }
    let filter_sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let limit = bind(Bound::Int(limit.saturating_add(1)), &mut binds);
    // (CROSS JOIN: SQLite reads the driving index first; PostgreSQL plans as it likes.)
    let sql = format!(
        "SELECT {} FROM {from} {filter_sql} ORDER BY {seq} {direction} LIMIT {limit}",
        crate::row::COLUMNS
    );
    (sql, binds)
}

/// The width of a bucket of `window_counts` (the schema's `300000`).
pub(crate) const WINDOW_BUCKET_MS: i64 = 300_000;

/// Where the whole buckets of a window starting at `since_ms` begin: the part before it is
/// counted from the rows themselves (a few minutes' worth at most), the rest from the buckets.
pub(crate) fn window_edge(since_ms: i64) -> i64 {
    since_ms
        .div_euclid(WINDOW_BUCKET_MS)
        .saturating_add(i64::from(since_ms.rem_euclid(WINDOW_BUCKET_MS) != 0))
        .saturating_mul(WINDOW_BUCKET_MS)
}

/// Adds the counts of the buckets and of the edge together, leaving out what nets to zero.
pub(crate) fn merge_counts(
    parts: impl IntoIterator<Item = (String, i64)>,
) -> std::collections::BTreeMap<String, u64> {
    let mut sum = std::collections::BTreeMap::<String, i64>::new();
    for (name, n) in parts {
        *sum.entry(name).or_default() += n;
    }
    sum.into_iter()
        .filter_map(|(name, n)| u64::try_from(n).ok().filter(|n| *n > 0).map(|n| (name, n)))
        .collect()
}

/// The ten most frequent, most first, ties by name.
pub(crate) fn top_ten(counts: std::collections::BTreeMap<String, u64>) -> Vec<(String, u64)> {
    let mut all: Vec<_> = counts.into_iter().collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all.truncate(10);
    all
}

/// Sessions and deliveries per state from `state_counts` rows `(scope, name, n)`.
pub(crate) fn state_totals(
    rows: impl IntoIterator<Item = (String, String, i64)>,
) -> (StateCounts, DeliveryCounts) {
    let (mut sessions, mut deliveries) = (StateCounts::default(), DeliveryCounts::default());
    let (mut all_sessions, mut in_outbox) = (0_i64, 0_i64);
    for (scope, name, n) in rows {
        if scope == "session" {
            sessions.add(&name, n);
            all_sessions += n;
        } else {
            deliveries.add(&name, n);
            in_outbox += n;
        }
    }
    deliveries.none = u64::try_from(all_sessions - in_outbox).unwrap_or(0);
    (sessions, deliveries)
}

#[cfg(test)]
mod window_tests {
    use super::*;

    #[test]
    fn the_edge_is_the_next_whole_bucket() {
        assert_eq!(window_edge(0), 0);
        assert_eq!(window_edge(1), WINDOW_BUCKET_MS);
        assert_eq!(window_edge(WINDOW_BUCKET_MS), WINDOW_BUCKET_MS);
        assert_eq!(window_edge(WINDOW_BUCKET_MS + 1), 2 * WINDOW_BUCKET_MS);
        assert_eq!(window_edge(i64::MAX), i64::MAX);
    }

    #[test]
    fn merged_counts_drop_what_nets_to_zero_and_rank_ties_by_name() {
        let merged = merge_counts([
            ("b".to_owned(), 2),
            ("a".to_owned(), 2),
            ("c".to_owned(), 1),
            ("c".to_owned(), -1),
            ("d".to_owned(), 3),
        ]);
        assert_eq!(
            top_ten(merged),
            [
                ("d".to_owned(), 3),
                ("a".to_owned(), 2),
                ("b".to_owned(), 2)
            ]
        );
    }
}
