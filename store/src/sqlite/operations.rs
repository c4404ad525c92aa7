//! The operators' calls on SQLite (docs/operations.md): history, filters' counts, the delivery
//! switch, redelivery, retracking, polls asked for, purging and retention. Each runs inside
//! one transaction of the caller's connection.

use std::time::SystemTime;

use rusqlite::{
    params, params_from_iter, CachedStatement, Connection, OptionalExtension, TransactionBehavior,
};

use crate::history::{self, AttemptDetail, EventPage, NewEvent, Rendered};
use crate::model::{from_ms, to_ms, DeliveryState, Page, SessionRecord};
use crate::operations::{
    self, Bound, DeliveryCounts, DeliveryOverview, Dialect, PollRequest, PrunedSessions, Purge,
    Recovered, Redelivery, Retrack, SessionFilter, Stats,
};
use crate::shared::{Attempt, StateCounts};
use crate::StoreError;

/// Appends an event to a session's history inside the caller's transaction, keeping the
/// history bounded; `false` if the session is unknown.
pub(super) fn append_event(
    conn: &Connection,
    session: &str,
    at: i64,
    replica: Option<&str>,
    event: &NewEvent,
) -> Result<bool, StoreError> {
    append_events_of(conn, session, at, replica, std::slice::from_ref(event))
}

/// Appends `events` to one session's history in order, numbered after its newest.
pub(super) fn append_events_of(
    conn: &Connection,
    session: &str,
    at: i64,
    replica: Option<&str>,
    events: &[NewEvent],
) -> Result<bool, StoreError> {
    let events: Vec<Rendered> = events.iter().map(NewEvent::rendered).collect();
    HistoryWriter::new(conn)?.append(session, at, replica, &events)
}

/// The statements that append to histories, looked up in the statement cache once for a
/// batch: per append, the lookup (hashing the SQL text) and the hand-back cost a tenth of
/// the append.
pub(super) struct HistoryWriter<'c> {
    conn: &'c Connection,
    newest: CachedStatement<'c>,
    insert: CachedStatement<'c>,
}

impl<'c> HistoryWriter<'c> {
    pub(super) fn new(conn: &'c Connection) -> Result<Self, StoreError> {
        Ok(Self {
            conn,
            newest: conn.prepare_cached(WRITTEN)?,
            insert: conn.prepare_cached(
                "INSERT INTO session_events (session_id, seq, at_ms, kind, replica, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?,
        })
    }

    /// Appends `events` to one session's history in order, numbered after its newest,
    /// keeping the history bounded; `false` if the session is unknown.
    pub(super) fn append(
        &mut self,
        session: &str,
        at: i64,
        replica: Option<&str>,
        events: &[Rendered],
    ) -> Result<bool, StoreError> {
        let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
        let Some(written) = written_by(&mut self.newest, session)? else {
            return Ok(false);
        };
        let last = written.saturating_add(count);
        for (seq, event) in (last - count + 1..).zip(events) {
            self.insert
                .execute(params![session, seq, at, event.kind, replica, event.body])?;
            if let Some(out) = history::falls_out(seq) {
                self.conn
                    .prepare_cached(
                        "DELETE FROM session_events WHERE session_id = ?1 AND seq = ?2",
                    )?
                    .execute(params![session, out])?;
            }
        }
        Ok(true)
    }
}

/// Reads what [`written`] says of a session: its counted events and its newest event's number.
const WRITTEN: &str =
    "SELECT events_seq, (SELECT max(seq) FROM session_events WHERE session_id = ?1) \
     FROM sessions WHERE session_id = ?1";

/// How many events a session's history has had (the newest one's number; falling out of
/// the bounds never takes the newest), `None` if the session is unknown. On SQLite the
/// number is read off the history rather than kept on the session's row: one writer at a
/// time needs no row to serialize on, and rewriting the row per event cost more than the
/// events. `events_seq` still counts what was written before this (and a history it kept no
/// rows of).
fn written(conn: &Connection, session: &str) -> Result<Option<i64>, StoreError> {
    written_by(&mut conn.prepare_cached(WRITTEN)?, session)
}

fn written_by(newest: &mut CachedStatement<'_>, session: &str) -> Result<Option<i64>, StoreError> {
    let written: Option<(i64, Option<i64>)> = newest
        .query_row(params![session], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    Ok(written.map(|(counted, newest)| counted.max(newest.unwrap_or(0))))
}

pub(super) fn list(
    conn: &Connection,
    filter: &SessionFilter,
    limit: usize,
    after: Option<i64>,
) -> Result<Page, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let (sql, binds) = operations::list_query(filter, after, limit, Dialect::Sqlite);
    let mut stmt = conn.prepare_cached(&sql)?;
    let values = binds.into_iter().map(|bound| match bound {
        Bound::Int(n) => rusqlite::types::Value::Integer(n),
        Bound::Text(t) => rusqlite::types::Value::Text(t),
        // Not used on SQLite (its planner finds ranges by their indexes itself).
        Bound::Ints(_) => rusqlite::types::Value::Null,
    });
    let rows = super::records(&mut stmt, params_from_iter(values))?;
    Ok(crate::shared::page(rows, limit, filter.order))
}

pub(super) fn events(
    conn: &Connection,
    session: &str,
    after: i64,
    limit: usize,
) -> Result<Option<EventPage>, StoreError> {
    let Some(written) = written(conn, session)? else {
        return Ok(None);
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(
        "SELECT seq, at_ms, kind, replica, body FROM session_events \
         WHERE session_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let rows = stmt
        .query_map(params![session, after, limit + 1], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(history::page(rows, limit, written)?))
}

pub(super) fn append(
    conn: &mut Connection,
    events: &[(bankconnect_core::SessionId, NewEvent)],
    now: SystemTime,
    replica: Option<&str>,
) -> Result<usize, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut written = 0;
    {
        // One writer for the batch (progress comes gathered): its statements looked up once.
        let mut history = HistoryWriter::new(&tx)?;
        for (session, event) in events {
            written += usize::from(history.append(
                session.as_str(),
                to_ms(now),
                replica,
                &[event.rendered()],
            )?);
        }
    }
    tx.commit()?;
    Ok(written)
}

/// Sessions and deliveries per state, from the counts the triggers keep.
pub(super) fn state_totals(conn: &Connection) -> Result<(StateCounts, DeliveryCounts), StoreError> {
    let mut stmt = conn.prepare_cached("SELECT scope, name, n FROM state_counts")?;
    let rows = stmt
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(operations::state_totals(rows))
}

fn delivery_counts(conn: &Connection) -> Result<DeliveryCounts, StoreError> {
    Ok(state_totals(conn)?.1)
}

/// Counts of a window: whole buckets from `window_counts`, the edge before them from the rows.
fn window(
    conn: &Connection,
    scope: &str,
    edge_sql: &str,
    since: i64,
) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
    let edge = operations::window_edge(since);
    let mut parts: Vec<(String, i64)> = conn
        .prepare_cached(
            "SELECT name, sum(n) FROM window_counts WHERE scope = ?1 AND bucket_ms >= ?2 GROUP BY name",
        )?
        .query_map(params![scope, edge], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare_cached(edge_sql)?;
    for row in stmt.query_map(params![since, edge], |row| Ok((row.get(0)?, row.get(1)?)))? {
        parts.push(row?);
    }
    Ok(operations::merge_counts(parts))
}

fn oldest_undelivered(conn: &Connection) -> Result<Option<SystemTime>, StoreError> {
    let oldest: Option<i64> = conn.query_row(
        "SELECT min(at) FROM ( \
         SELECT min(created_at_ms) AS at FROM outbox WHERE state = 'pending' UNION ALL \
         SELECT min(created_at_ms) AS at FROM outbox WHERE state = 'failing')",
        [],
        |row| row.get(0),
    )?;
    Ok(oldest.map(from_ms))
}

pub(super) fn stats(conn: &mut Connection, since: SystemTime) -> Result<Stats, StoreError> {
    // One read transaction: every number from the same moment.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
    let since = to_ms(since);
    let mut stats = Stats::default();
    (stats.sessions, stats.deliveries) = state_totals(&tx)?;
    stats.outcomes = window(
        &tx,
        "outcome",
        "SELECT outcome_kind, count(*) FROM sessions INDEXED BY sessions_by_finished \
         WHERE finished_at_ms >= ?1 AND finished_at_ms < ?2 AND outcome_kind IS NOT NULL GROUP BY outcome_kind",
        since,
    )?
    .into_iter()
    .collect();
    stats.top_error_codes = operations::top_ten(window(
        &tx,
        "error_code",
        "SELECT code, count(*) FROM session_error_codes INDEXED BY session_error_codes_by_time \
         WHERE at_ms >= ?1 AND at_ms < ?2 GROUP BY code",
        since,
    )?);
    let oldest: Option<i64> = tx
        .prepare_cached(
            "SELECT coalesce(tracked_at_ms, added_at_ms) FROM sessions WHERE state = 'tracking' ORDER BY seq LIMIT 1",
        )?
        .query_row([], |row| row.get(0))
        .optional()?;
    stats.oldest_tracking_added_at = oldest.map(from_ms);
    stats.oldest_undelivered_at = oldest_undelivered(&tx)?;
    tx.commit()?;
    Ok(stats)
}

pub(super) fn overview(conn: &mut Connection) -> Result<DeliveryOverview, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
    let (paused, success, failure_at, failure, consecutive): (
        bool,
        Option<i64>,
        Option<i64>,
        Option<String>,
        i64,
    ) = tx.query_row(
        "SELECT paused, last_success_ms, last_failure_ms, last_failure_error, consecutive_failures \
         FROM delivery_control WHERE id = 1",
        [],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?)),
    )?;
    let overview = DeliveryOverview {
        paused,
        counts: delivery_counts(&tx)?,
        oldest_undelivered_at: oldest_undelivered(&tx)?,
        last_success_at: success.map(from_ms),
        last_failure: failure_at.map(|at| (from_ms(at), failure.unwrap_or_default())),
        consecutive_failures: u64::try_from(consecutive).unwrap_or(0),
    };
    tx.commit()?;
    Ok(overview)
}

pub(super) fn set_paused(conn: &Connection, paused: bool) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE delivery_control SET paused = ?1 WHERE id = 1")?
        .execute(params![paused])?;
    Ok(())
}

pub(super) fn paused(conn: &Connection) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT paused FROM delivery_control WHERE id = 1")?
        .query_row([], |row| row.get(0))
        .optional()?
        .unwrap_or(false))
}

/// Due again now, from its first attempt, with the same `webhook-id`; the delivery was in
/// state `from` (its move goes into `moves`, for the caller to write).
fn requeue(
    conn: &Connection,
    session: &str,
    from: &str,
    now: i64,
    moves: &mut DeliveryMoves,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_ms = ?2, last_error = NULL, \
         claimed_by = NULL, claim_until_ms = 0, updated_at_ms = ?2 WHERE session_id = ?1",
    )?
    .execute(params![session, now])?;
    moves.moved(from, "pending");
    Ok(())
}

/// Deliveries that changed state inside one transaction, counted in `state_counts` once for
/// all (schema version 6: no trigger counts a change of state; inserts and deletes are
/// counted by theirs).
#[derive(Debug, Default)]
pub(super) struct DeliveryMoves(std::collections::BTreeMap<(String, &'static str), i64>);

impl DeliveryMoves {
    /// One delivery went from `from` to `to`.
    pub(super) fn moved(&mut self, from: &str, to: &'static str) {
        if from != to {
            *self.0.entry((from.to_owned(), to)).or_default() += 1;
        }
    }

    /// Writes the moves' counts inside the caller's transaction.
    pub(super) fn written(&self, conn: &Connection) -> Result<(), StoreError> {
        for ((from, to), n) in &self.0 {
            conn.prepare_cached(
                "UPDATE state_counts SET n = n - ?2 WHERE scope = 'delivery' AND name = ?1",
            )?
            .execute(params![from, n])?;
            conn.prepare_cached(
                "INSERT INTO state_counts (scope, name, n) VALUES ('delivery', ?1, ?2) \
                 ON CONFLICT (scope, name, shard) DO UPDATE SET n = n + excluded.n",
            )?
            .execute(params![to, n])?;
        }
        Ok(())
    }
}

/// A finished session as a redelivery reads it: state, generation, finish time, delivery
/// state, number.
type Finished = (String, i64, Option<i64>, Option<String>, i64);

pub(super) fn redeliver(
    conn: &mut Connection,
    session: &str,
    force: bool,
    base: &str,
    now: SystemTime,
    replica: Option<&str>,
) -> Result<Redelivery, StoreError> {
    let now = to_ms(now);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let row: Option<Finished> = tx
        .prepare_cached(
            "SELECT s.state, s.generation, s.finished_at_ms, o.state, s.seq FROM sessions s \
             LEFT JOIN outbox o ON o.session_id = s.session_id WHERE s.session_id = ?1",
        )?
        .query_row(params![session], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })
        .optional()?;
    let Some((state, generation, finished_at, delivery, seq)) = row else {
        return Ok(Redelivery::Unknown);
    };
    if state != "finished" {
        return Ok(Redelivery::NotFinished);
    }
    match delivery.as_deref() {
        Some("delivered") if !force => return Ok(Redelivery::AlreadyDelivered),
        Some(from) => {
            let mut moves = DeliveryMoves::default();
            requeue(&tx, session, from, now, &mut moves)?;
            moves.written(&tx)?;
        }
        // Finished while no delivery was configured: its first delivery, due now.
        None => {
            tx.prepare_cached(
                "INSERT INTO outbox (session_id, webhook_id, state, attempts, next_attempt_ms, created_at_ms, updated_at_ms, session_seq) \
                 VALUES (?1, ?2, 'pending', 0, ?3, ?4, ?3, ?5)",
            )?
            .execute(params![
                session,
                operations::webhook_id(base, generation),
                now,
                finished_at.unwrap_or(now),
                seq
            ])?;
        }
    }
    append_event(
        &tx,
        session,
        now,
        replica,
        &NewEvent::redeliver("admin", force),
    )?;
    let record = super::get_record(&tx, session)?
        .ok_or_else(|| StoreError::database(format!("session {session} vanished")))?;
    tx.commit()?;
    Ok(Redelivery::Requeued(Box::new(record)))
}

pub(super) fn recover(
    conn: &mut Connection,
    since: SystemTime,
    until: SystemTime,
    states: &[DeliveryState],
    dry_run: bool,
    now: SystemTime,
    replica: Option<&str>,
) -> Result<Recovered, StoreError> {
    let now = to_ms(now);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut sessions = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT session_id FROM outbox WHERE state = ?1 AND created_at_ms >= ?2 AND created_at_ms < ?3",
        )?;
        for state in states {
            let rows = stmt
                .query_map(params![state.as_str(), to_ms(since), to_ms(until)], |row| {
                    row.get::<_, String>(0)
                })?;
            for row in rows {
                sessions.push((row?, state.as_str()));
            }
        }
    }
    let matched = u64::try_from(sessions.len()).unwrap_or(u64::MAX);
    if dry_run {
        return Ok(Recovered {
            matched,
            requeued: 0,
        });
    }
    let mut moves = DeliveryMoves::default();
    for (session, from) in &sessions {
        requeue(&tx, session, from, now, &mut moves)?;
        append_event(
            &tx,
            session,
            now,
            replica,
            &NewEvent::redeliver("recover", false),
        )?;
    }
    moves.written(&tx)?;
    tx.commit()?;
    Ok(Recovered {
        matched,
        requeued: matched,
    })
}

pub(super) fn retrack(
    conn: &mut Connection,
    session: &str,
    now: SystemTime,
    lease: Option<(String, SystemTime)>,
    replica: Option<&str>,
) -> Result<Retrack, StoreError> {
    let now = to_ms(now);
    let (owner, until) = match &lease {
        Some((owner, until)) => (Some(owner.as_str()), to_ms(*until)),
        None => (None, 0),
    };
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let row: Option<(i64, String)> = tx
        .prepare_cached("SELECT seq, state FROM sessions WHERE session_id = ?1")?
        .query_row(params![session], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let Some((seq, state)) = row else {
        return Ok(Retrack::Unknown);
    };
    if state == "tracking" {
        return Ok(Retrack::Tracking);
    }
    tx.prepare_cached(
        "UPDATE sessions SET state = 'tracking', outcome = NULL, outcome_kind = NULL, finished_at_ms = NULL, \
         tracker_state = NULL, generation = generation + 1, tracked_at_ms = ?2, updated_at_ms = ?2, \
         lease_owner = ?3, lease_until_ms = ?4 WHERE seq = ?1",
    )?
    .execute(params![seq, now, owner, until])?;
    // The old outcome's delivery goes (its story stays in the history); the next outcome gets
    // a delivery of its own.
    tx.prepare_cached("DELETE FROM outbox WHERE session_id = ?1")?
        .execute(params![session])?;
    tx.prepare_cached("DELETE FROM session_error_codes WHERE session_seq = ?1")?
        .execute(params![seq])?;
    append_event(
        &tx,
        session,
        now,
        replica,
        &NewEvent::by("retrack", "admin"),
    )?;
    let record = super::get_record(&tx, session)?
        .ok_or_else(|| StoreError::database(format!("session {session} vanished")))?;
    tx.commit()?;
    Ok(Retrack::Retracked(Box::new(record)))
}

pub(super) fn request_poll(
    conn: &mut Connection,
    session: &str,
    now: SystemTime,
    replica: Option<&str>,
) -> Result<(PollRequest, Option<SessionRecord>), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let Some(record) = super::get_record(&tx, session)? else {
        return Ok((PollRequest::Unknown, None));
    };
    if record.state != crate::model::SessionState::Tracking {
        return Ok((PollRequest::NotTracking, None));
    }
    append_event(
        &tx,
        session,
        to_ms(now),
        replica,
        &NewEvent::by("poll_requested", "admin"),
    )?;
    tx.commit()?;
    Ok((
        PollRequest::Requested(Box::new(record.clone())),
        Some(record),
    ))
}

/// Deletes one session with everything kept for it, inside the caller's transaction.
fn delete_session(conn: &Connection, seq: i64, session: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM session_events WHERE session_id = ?1")?
        .execute(params![session])?;
    conn.prepare_cached("DELETE FROM session_error_codes WHERE session_seq = ?1")?
        .execute(params![seq])?;
    conn.prepare_cached("DELETE FROM outbox WHERE session_id = ?1")?
        .execute(params![session])?;
    conn.prepare_cached("DELETE FROM accepted_webhooks WHERE session_id = ?1")?
        .execute(params![session])?;
    conn.prepare_cached("DELETE FROM pending_webhooks WHERE session_id = ?1")?
        .execute(params![session])?;
    conn.prepare_cached("DELETE FROM sessions WHERE seq = ?1")?
        .execute(params![seq])?;
    Ok(())
}

pub(super) fn purge(conn: &mut Connection, session: &str) -> Result<Purge, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let row: Option<(i64, String)> = tx
        .prepare_cached("SELECT seq, state FROM sessions WHERE session_id = ?1")?
        .query_row(params![session], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let Some((seq, state)) = row else {
        return Ok(Purge::Unknown);
    };
    if state == "tracking" {
        return Ok(Purge::Tracking);
    }
    delete_session(&tx, seq, session)?;
    tx.commit()?;
    Ok(Purge::Purged)
}

pub(super) fn prune(
    conn: &mut Connection,
    before: SystemTime,
    batch: usize,
) -> Result<PrunedSessions, StoreError> {
    // A batch of deletes need not wait for the disk: should a power cut lose it, the next round
    // deletes the same rows again, and the next durable commit (any add) syncs it anyway. So the
    // write that holds every other writer up is short.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let pruned = prune_batch(conn, before, batch);
    let restored = conn.pragma_update(None, "synchronous", "FULL");
    let pruned = pruned?;
    restored?;
    Ok(pruned)
}

fn prune_batch(
    conn: &mut Connection,
    before: SystemTime,
    batch: usize,
) -> Result<PrunedSessions, StoreError> {
    let before = to_ms(before);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let doomed: Vec<(i64, String)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT s.seq, s.session_id FROM sessions s INDEXED BY sessions_prunable \
             LEFT JOIN outbox o ON o.session_id = s.session_id \
             WHERE s.state <> 'tracking' AND s.updated_at_ms < ?1 \
             AND (o.session_id IS NULL OR (o.state IN ('delivered', 'given_up') AND o.updated_at_ms < ?1)) \
             ORDER BY s.updated_at_ms LIMIT ?2",
        )?;
        let rows = stmt.query_map(
            params![before, i64::try_from(batch).unwrap_or(i64::MAX)],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        rows.collect::<Result<_, _>>()?
    };
    // One statement per table for the whole batch (the ids as one JSON array).
    let ids = serde_json::to_string(&doomed.iter().map(|(_, id)| id).collect::<Vec<_>>())
        .map_err(|err| StoreError::database(format!("prune batch: {err}")))?;
    let seqs = serde_json::to_string(&doomed.iter().map(|(seq, _)| seq).collect::<Vec<_>>())
        .map_err(|err| StoreError::database(format!("prune batch: {err}")))?;
    for (sql, list) in [
        ("DELETE FROM session_events WHERE session_id IN (SELECT value FROM json_each(?1))", &ids),
        ("DELETE FROM session_error_codes WHERE session_seq IN (SELECT value FROM json_each(?1))", &seqs),
        ("DELETE FROM outbox WHERE session_id IN (SELECT value FROM json_each(?1))", &ids),
        ("DELETE FROM accepted_webhooks WHERE session_id IN (SELECT value FROM json_each(?1))", &ids),
        ("DELETE FROM pending_webhooks WHERE session_id IN (SELECT value FROM json_each(?1))", &ids),
        ("DELETE FROM sessions WHERE seq IN (SELECT value FROM json_each(?1))", &seqs),
    ] {
        tx.prepare_cached(sql)?.execute(params![list])?;
    }
    tx.commit()?;
    Ok(PrunedSessions {
        sessions: u64::try_from(doomed.len()).unwrap_or(u64::MAX),
        skipped: false,
    })
}

/// What finishing writes beside the state: the outcome's kind and error codes (for the
/// filters), its event; inside the caller's transaction.
pub(super) fn outcome_written(
    conn: &Connection,
    session: &str,
    seq: i64,
    facts: &history::OutcomeFacts,
    now: i64,
    replica: Option<&str>,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO session_error_codes (code, session_seq, at_ms) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
    )?;
    for code in &facts.codes {
        stmt.execute(params![code, seq, now])?;
    }
    append_event(conn, session, now, replica, &facts.event)?;
    Ok(())
}

/// Writes a batch's effect on the deliveries' health, once, inside the caller's transaction.
pub(super) fn health_written(
    conn: &Connection,
    health: &crate::shared::Health,
    now: i64,
) -> Result<(), StoreError> {
    if health.changed() {
        conn.prepare_cached(&crate::shared::health_update('?'))?
            .execute(params![
                now,
                health.succeeded,
                health.failures,
                health.last_error
            ])?;
    }
    Ok(())
}

/// Records delivery attempts' results and their events inside the caller's transaction, with
/// its statements looked up once for the batch.
pub(super) struct AttemptRecorder<'c> {
    conn: &'c Connection,
    found: CachedStatement<'c>,
    update: CachedStatement<'c>,
    history: HistoryWriter<'c>,
}

impl<'c> AttemptRecorder<'c> {
    pub(super) fn new(conn: &'c Connection) -> Result<Self, StoreError> {
        Ok(Self {
            conn,
            // Read, then written by key (no RETURNING: SQLite stages its rows in a temporary
            // table).
            found: conn.prepare_cached(
                "SELECT attempts, state FROM outbox \
                 WHERE session_id = ?1 AND state IN ('pending', 'failing')",
            )?,
            update: conn.prepare_cached(
                "UPDATE outbox SET state = ?2, attempts = ?3, last_error = ?4, \
                 next_attempt_ms = ?5, claimed_by = NULL, claim_until_ms = 0, updated_at_ms = ?6 \
                 WHERE session_id = ?1",
            )?,
            history: HistoryWriter::new(conn)?,
        })
    }

    /// Records one attempt's result and its events (its change of state into `moves`, for
    /// the caller to write); `false` if the delivery was not pending or failing. While paused,
    /// a failure only releases the claim: it is neither counted nor can it give up.
    pub(super) fn recorded(
        &mut self,
        (session, result, detail): &(bankconnect_core::SessionId, Attempt, AttemptDetail),
        paused: bool,
        now: i64,
        replica: Option<&str>,
        moves: &mut DeliveryMoves,
    ) -> Result<bool, StoreError> {
        let session = session.as_str();
        if paused && *result != Attempt::Delivered {
            let released = self
                .conn
                .prepare_cached(
                    "UPDATE outbox SET claimed_by = NULL, claim_until_ms = 0 \
                     WHERE session_id = ?1 AND state IN ('pending', 'failing')",
                )?
                .execute(params![session])?;
            return Ok(released == 1);
        }
        let (state, error, next) = result.columns();
        let found: Option<(i64, String)> = self
            .found
            .query_row(params![session], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        let Some((attempts, from)) = found else {
            return Ok(false);
        };
        let attempts = attempts.saturating_add(1);
        moves.moved(&from, state);
        self.update
            .execute(params![session, state, attempts, error, next, now])?;
        let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
        let attempted = history::delivery_attempt(attempts, detail, next.map(from_ms));
        if state == "failing" {
            self.history
                .append(session, now, replica, std::slice::from_ref(&attempted))?;
        } else {
            let kind = if state == "delivered" {
                "delivered"
            } else {
                "given_up"
            };
            let ended = history::delivery_ended(kind, attempts);
            self.history
                .append(session, now, replica, &[attempted, ended])?;
        }
        Ok(true)
    }
}
