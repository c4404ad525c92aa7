//! The embedded backend: one SQLite file in WAL mode, through rusqlite.
//!
//! One connection behind a mutex, used on tokio's blocking pool: SQLite has one writer at a time
//! anyway, and a single connection makes every write transaction `IMMEDIATE` in effect, which is
//! SQLite's equivalent of `FOR UPDATE SKIP LOCKED` for claims (no two claims interleave).
//! `synchronous = FULL`: a commit is on disk before the store returns, so what `serve`
//! acknowledges survives a power cut, not only a killed process.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bankconnect_core::SessionId;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use crate::model::{
    duration_ms, from_ms, to_ms, Added, DueDelivery, Finish, NewSession, Page, ReplicaBeat, Route,
    SessionRecord, StoredWebhook, WebhookFate,
};
use crate::row::{RawRecord, COLUMNS, FROM};
use crate::schema;
use crate::shared::{Bounds, StateCounts};
use crate::StoreError;

mod operations;

use crate::history::{AttemptDetail, EventPage, NewEvent, OutcomeFacts};
use crate::model::DeliveryState;
use crate::operations::{
    DeliveryOverview, PollRequest, PrunedSessions, Purge, Recovered, Redelivery, Retrack,
    SessionFilter, Stats,
};

/// Keeps a webhook for a session not added yet, inside the caller's transaction: one per
/// session (an unauthenticated one never replaces an authenticated one), bounded by age and
/// count. Returns how many fell out of the bounds.
fn keep_pending(
    tx: &rusqlite::Transaction<'_>,
    bounds: &Bounds,
    session: &str,
    hint: &str,
    authenticated: bool,
    now: i64,
) -> Result<usize, StoreError> {
    let mut dropped = tx
        .prepare_cached("DELETE FROM pending_webhooks WHERE received_at_ms < ?1")?
        .execute(params![
            now.saturating_sub(duration_ms(bounds.pending_max_age))
        ])?;
    tx.prepare_cached(
        "INSERT INTO pending_webhooks (session_id, received_at_ms, authenticated, hint) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (session_id) DO UPDATE SET received_at_ms = excluded.received_at_ms, \
         authenticated = excluded.authenticated, hint = excluded.hint \
         WHERE excluded.authenticated OR NOT pending_webhooks.authenticated",
    )?
    .execute(params![session, now, authenticated, hint])?;
    let count: i64 = tx.query_row("SELECT count(*) FROM pending_webhooks", [], |row| {
        row.get(0)
    })?;
    let max = i64::try_from(bounds.pending_max_count).unwrap_or(i64::MAX);
    if count > max {
        dropped += tx
            .prepare_cached(
                "DELETE FROM pending_webhooks WHERE session_id IN ( \
                 SELECT session_id FROM pending_webhooks ORDER BY received_at_ms, session_id LIMIT ?1)",
            )?
            .execute(params![count - max])?;
    }
    // Bytes: the newest are kept while their running total fits.
    dropped += tx
        .prepare_cached(
            "DELETE FROM pending_webhooks WHERE session_id IN ( \
             SELECT session_id FROM (SELECT session_id, sum(length(CAST(hint AS BLOB))) \
             OVER (ORDER BY received_at_ms DESC, session_id DESC) AS kept FROM pending_webhooks) \
             WHERE kept > ?1)",
        )?
        .execute(params![
            i64::try_from(bounds.pending_max_bytes).unwrap_or(i64::MAX)
        ])?;
    Ok(dropped)
}

/// Rows deleted per statement by pruning.
const PRUNE_BATCH: i64 = 5_000;

/// A store in one SQLite file.
#[derive(Clone)]
pub(crate) struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    bounds: Bounds,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn raw(row: &Row<'_>) -> rusqlite::Result<RawRecord> {
    raw_from(row, 0)
}

/// The record of [`COLUMNS`] starting at column `at`.
fn raw_from(row: &Row<'_>, at: usize) -> rusqlite::Result<RawRecord> {
    Ok(RawRecord {
        seq: row.get(at)?,
        session_id: row.get(at + 1)?,
        reference: row.get(at + 2)?,
        state: row.get(at + 3)?,
        added_at_ms: row.get(at + 4)?,
        updated_at_ms: row.get(at + 5)?,
        max_wait_ms: row.get(at + 6)?,
        outcome: row.get(at + 7)?,
        tracker_state: row.get(at + 8)?,
        lease_owner: row.get(at + 9)?,
        lease_until_ms: row.get(at + 10)?,
        delivery_state: row.get(at + 11)?,
        delivery_attempts: row.get(at + 12)?,
        delivery_error: row.get(at + 13)?,
        webhook_id: row.get(at + 14)?,
        next_attempt_ms: row.get(at + 15)?,
        tracked_at_ms: row.get(at + 16)?,
    })
}

fn get_record(conn: &Connection, session: &str) -> Result<Option<SessionRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE s.session_id = ?1"
    ))?;
    let raw = stmt.query_row(params![session], raw).optional()?;
    raw.map(|raw| raw.into_record().map(|(_, record)| record))
        .transpose()
}

/// Ids looked up by one statement in [`Engine::get_sessions`].
const GET_CHUNK: usize = 64;

fn records(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<(i64, SessionRecord)>, StoreError> {
    let rows = stmt.query_map(params, raw)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row?.into_record()?);
    }
    Ok(out)
}

impl SqliteStore {
    /// Opens (creating if missing) the store at `path` and brings its schema up to date.
    pub(crate) async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let target = format!("SQLite file {}", path.display());
        let opened = path.clone();
        let conn = tokio::task::spawn_blocking(move || open_blocking(&opened))
            .await
            .map_err(|err| StoreError::Connect {
                target: target.clone(),
                reason: err.to_string(),
            })?
            .map_err(|err| match err {
                StoreError::Database {
                    message: reason, ..
                }
                | StoreError::Busy {
                    message: reason, ..
                } => StoreError::Connect { target, reason },
                other => other,
            })?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path,
            bounds: Bounds::default(),
        })
    }

    pub(crate) fn set_bounds(&mut self, bounds: Bounds) {
        self.bounds = bounds;
    }

    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection, Bounds) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = Arc::clone(&self.conn);
        let bounds = self.bounds;
        let run = move || {
            // A panic while holding the lock leaves SQLite itself consistent (the open
            // transaction is rolled back when dropped), so a poisoned lock is still usable.
            let mut guard = conn
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            work(&mut guard, bounds)
        };
        // On a multi-threaded runtime, run in place (the runtime moves other tasks off this
        // worker): it saves the hand-off to the blocking pool, which measured at a quarter of
        // a commit. A current-thread runtime cannot block in place.
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread {
            return tokio::task::block_in_place(run);
        }
        tokio::task::spawn_blocking(run)
            .await
            .map_err(|err| StoreError::busy(format!("the store task failed: {err}")))?
    }
}

/// Claims for `worker` (until `now` + `claim_for`) the due deliveries `select` finds, at most
/// `limit`: `select` takes now as `?1` and the limit as `?2`, and `row` reads each row as its
/// session id and the rest. Found by the due index in due order (named in `select`: without it
/// the planner may read every pending delivery by state and sort them, on every claim of a
/// backlog), then claimed one by one by key, in one IMMEDIATE transaction on the one
/// connection: no other writer comes between the read and the claims. (No RETURNING: SQLite
/// stages its rows in a temporary table, which costs more than the read.) Nothing while paused.
fn claim_due<T>(
    conn: &mut Connection,
    select: &str,
    (worker, now, claim_for, limit): (&str, SystemTime, Duration, usize),
    row: impl FnMut(&Row<'_>) -> rusqlite::Result<(String, T)>,
) -> Result<Vec<(String, T)>, StoreError> {
    let now = to_ms(now);
    let until = now.saturating_add(duration_ms(claim_for));
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if operations::paused(&tx)? {
        return Ok(Vec::new());
    }
    let claimed = {
        let mut stmt = tx.prepare_cached(select)?;
        let rows = stmt.query_map(params![now, i64::try_from(limit).unwrap_or(i64::MAX)], row)?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    {
        let mut claim = tx.prepare_cached(
            "UPDATE outbox SET claimed_by = ?1, claim_until_ms = ?2 WHERE session_id = ?3",
        )?;
        for (session, _) in &claimed {
            claim.execute(params![worker, until, session])?;
        }
    }
    tx.commit()?;
    Ok(claimed)
}

/// Sessions renewed or read per transaction when a replica's leases are walked.
const LEASE_CHUNK: i64 = 2_000;
const LEASE_CHUNK_LEN: usize = 2_000;

#[async_trait::async_trait]
impl crate::engine::Engine for SqliteStore {
    fn capabilities(&self) -> crate::engine::Capabilities {
        crate::engine::Capabilities {
            name: "sqlite",
            several_processes: false,
            notify: false,
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with(|conn, _| {
            conn.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    async fn schema_version(&self) -> Result<i64, StoreError> {
        self.with(|conn, _| read_version(conn)).await
    }

    async fn add_sessions(
        &self,
        batch: Vec<NewSession>,
        now: SystemTime,
        lease: Option<(String, SystemTime)>,
        replica: Option<String>,
    ) -> Result<Vec<Added>, StoreError> {
        self.with(move |conn, bounds| {
            let replica = replica.as_deref();
            let now = to_ms(now);
            let (owner, until) = match &lease {
                Some((owner, until)) => (Some(owner.as_str()), to_ms(*until)),
                None => (None, 0),
            };
            let oldest = now.saturating_sub(duration_ms(bounds.pending_max_age));
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut out = Vec::with_capacity(batch.len());
            for new in batch {
                let id = new.session_id.as_str();
                let inserted = tx
                    .prepare_cached(
                        "INSERT INTO sessions (session_id, reference, state, added_at_ms, updated_at_ms, max_wait_ms, lease_owner, lease_until_ms) \
                         VALUES (?1, ?2, 'tracking', ?3, ?3, ?4, ?5, ?6) ON CONFLICT (session_id) DO NOTHING",
                    )?
                    .execute(params![
                        id,
                        new.reference,
                        now,
                        new.max_wait.map(duration_ms),
                        owner,
                        until
                    ])?;
                // A new row is answered from the values inserted; a known one is read.
                let record = if inserted == 1 {
                    RawRecord::added(
                        tx.last_insert_rowid(),
                        id,
                        new.reference.clone(),
                        now,
                        new.max_wait.map(duration_ms),
                        (owner, until),
                    )
                    .into_record()?
                    .1
                } else {
                    get_record(&tx, id)?
                        .ok_or_else(|| StoreError::database(format!("session {id} vanished")))?
                };
                if inserted == 1 {
                    operations::append_event(
                        &tx,
                        id,
                        now,
                        replica,
                        &NewEvent::added(new.reference.as_deref(), new.max_wait),
                    )?;
                    let mut take = tx.prepare_cached(
                        "DELETE FROM pending_webhooks WHERE session_id = ?1 AND received_at_ms >= ?2 \
                         RETURNING hint, authenticated, received_at_ms",
                    )?;
                    let taken = take
                        .query_map(params![id, oldest], |row| {
                            Ok((row.get::<_, String>(0)?, row.get::<_, bool>(1)?, row.get::<_, i64>(2)?))
                        })?
                        .collect::<Result<Vec<_>, _>>()?;
                    let mut hints = Vec::with_capacity(taken.len());
                    for (hint, authenticated, at) in taken {
                        let event = crate::shared::webhook_event(&hint, authenticated, false);
                        operations::append_event(&tx, id, at, replica, &event)?;
                        hints.push(hint);
                    }
                    out.push(Added::Created {
                        record,
                        pending_webhooks: parse_hints(hints)?,
                    });
                } else {
                    out.push(Added::Existing(record));
                }
            }
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    async fn get_session(&self, session: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        let id = session.as_str().to_owned();
        self.with(move |conn, _| get_record(conn, &id)).await
    }

    async fn get_sessions(
        &self,
        sessions: Vec<SessionId>,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        // The rows are read on the store's thread and parsed off it (outcomes are JSON), so
        // the one connection is held only for the reading.
        let (sessions, rows) = self
            .with(move |conn, _| {
                let mut rows = Vec::with_capacity(sessions.len());
                // A statement per chunk of ids, always of one size (the last chunk repeats its
                // last id), so one cached statement serves every call.
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM {FROM} WHERE s.session_id IN ({})",
                    vec!["?"; GET_CHUNK].join(", ")
                ))?;
                for chunk in sessions.chunks(GET_CHUNK) {
                    let Some(last) = chunk.last() else { continue };
                    let ids = chunk
                        .iter()
                        .chain(std::iter::repeat(last))
                        .take(GET_CHUNK)
                        .map(SessionId::as_str);
                    for row in stmt.query_map(rusqlite::params_from_iter(ids), raw)? {
                        rows.push(row?);
                    }
                }
                Ok((sessions, rows))
            })
            .await?;
        let found = rows
            .into_iter()
            .map(|row| row.into_record().map(|(_, record)| record))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(crate::shared::in_asked_order(&sessions, found))
    }

    async fn list_sessions(
        &self,
        filter: SessionFilter,
        limit: usize,
        after: Option<i64>,
    ) -> Result<Page, StoreError> {
        self.with(move |conn, _| operations::list(conn, &filter, limit, after))
            .await
    }

    async fn tracking_sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        self.with(|conn, _| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM {FROM} WHERE s.state = 'tracking' ORDER BY s.seq"
            ))?;
            Ok(records(&mut stmt, [])?
                .into_iter()
                .map(|(_, r)| r)
                .collect())
        })
        .await
    }

    async fn count_sessions(&self) -> Result<StateCounts, StoreError> {
        self.with(|conn, _| Ok(operations::state_totals(conn)?.0))
            .await
    }

    async fn cancel_session(
        &self,
        session: &SessionId,
        now: SystemTime,
        replica: Option<String>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let id = session.as_str().to_owned();
        self.with(move |conn, _| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let cancelled = tx
                .prepare_cached(
                    "UPDATE sessions SET state = 'cancelled', updated_at_ms = ?2, lease_owner = NULL, lease_until_ms = 0 \
                     WHERE session_id = ?1 AND state = 'tracking'",
                )?
                .execute(params![id, to_ms(now)])?;
            if cancelled == 1 {
                let event = NewEvent::by("cancelled", "admin");
                operations::append_event(&tx, &id, to_ms(now), replica.as_deref(), &event)?;
            }
            let record = get_record(&tx, &id)?;
            tx.commit()?;
            Ok(record)
        })
        .await
    }

    async fn save_tracker_states(
        &self,
        states: Vec<(SessionId, serde_json::Value)>,
    ) -> Result<usize, StoreError> {
        self.with(move |conn, _| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut saved = 0;
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE sessions SET tracker_state = ?2 WHERE session_id = ?1 AND state = 'tracking'",
                )?;
                for (id, state) in &states {
                    saved += stmt.execute(params![id.as_str(), state.to_string()])?;
                }
            }
            tx.commit()?;
            Ok(saved)
        })
        .await
    }

    async fn finish_session(
        &self,
        session: &SessionId,
        outcome: String,
        facts: OutcomeFacts,
        webhook_id: Option<String>,
        first_attempt: SystemTime,
        now: SystemTime,
        replica: Option<String>,
    ) -> Result<Finish, StoreError> {
        let first_attempt = to_ms(first_attempt);
        let id = session.as_str().to_owned();
        self.with(move |conn, _| {
            let now = to_ms(now);
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let changed: Option<(i64, i64)> = tx
                .prepare_cached(
                    "UPDATE sessions SET state = 'finished', outcome = ?2, updated_at_ms = ?3, \
                     outcome_kind = ?4, finished_at_ms = ?3, \
                     lease_owner = NULL, lease_until_ms = 0, tracker_state = NULL \
                     WHERE session_id = ?1 AND state = 'tracking' RETURNING seq, generation",
                )?
                .query_row(params![id, outcome, now, facts.kind], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()?;
            let Some((seq, generation)) = changed else {
                let exists = tx
                    .prepare_cached("SELECT 1 FROM sessions WHERE session_id = ?1")?
                    .exists(params![id])?;
                return Ok(if exists {
                    Finish::NotTracking
                } else {
                    Finish::Unknown
                });
            };
            operations::outcome_written(&tx, &id, seq, &facts, now, replica.as_deref())?;
            if let Some(webhook_id) = webhook_id {
                // A delivery of an earlier outcome is replaced whole (its delete and this
                // insert are counted by the outbox's triggers).
                tx.prepare_cached("DELETE FROM outbox WHERE session_id = ?1")?
                    .execute(params![id])?;
                tx.prepare_cached(
                    "INSERT INTO outbox (session_id, webhook_id, state, attempts, next_attempt_ms, created_at_ms, updated_at_ms, session_seq) \
                     VALUES (?1, ?2, 'pending', 0, ?4, ?3, ?3, ?5)",
                )?
                .execute(params![
                    id,
                    crate::operations::webhook_id(&webhook_id, generation),
                    now,
                    first_attempt,
                    seq
                ])?;
            }
            tx.commit()?;
            Ok(Finish::Finished)
        })
        .await
    }

    async fn claim_sessions(
        &self,
        replica: &str,
        now: SystemTime,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let replica = replica.to_owned();
        self.with(move |conn, _| {
            let now = to_ms(now);
            let until = now.saturating_add(duration_ms(lease));
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // A tracking session has no delivery: the outbox columns come back NULL.
            let mut claimed = {
                let mut claim = tx.prepare_cached(
                    // INDEXED BY: without statistics SQLite picked the state index and sorted
                    // every tracking session on each claim (37 ms per 1 000 of 100 000; 5 ms so).
                    "UPDATE sessions SET lease_owner = ?1, lease_until_ms = ?2 WHERE seq IN ( \
                     SELECT seq FROM sessions INDEXED BY sessions_claimable \
                     WHERE state = 'tracking' AND lease_until_ms <= ?3 \
                     ORDER BY lease_until_ms, seq LIMIT ?4) \
                     RETURNING seq, session_id, reference, state, added_at_ms, updated_at_ms, max_wait_ms, \
                     outcome, tracker_state, lease_owner, lease_until_ms, NULL, NULL, NULL, NULL, NULL, tracked_at_ms",
                )?;
                records(
                    &mut claim,
                    params![replica, until, now, i64::try_from(limit).unwrap_or(i64::MAX)],
                )?
            };
            claimed.sort_by_key(|(seq, _)| *seq);
            tx.commit()?;
            Ok(claimed.into_iter().map(|(_, r)| r).collect())
        })
        .await
    }

    async fn renew_leases(
        &self,
        replica: &str,
        now: SystemTime,
        lease: Duration,
    ) -> Result<usize, StoreError> {
        // In chunks, each its own short transaction: a replica holding 100 000 sessions
        // renewed them in one 0.65 s write, and every read (a console page) waited behind it.
        let now = to_ms(now);
        let until = now.saturating_add(duration_ms(lease));
        let mut renewed = 0;
        let mut after = i64::MIN;
        loop {
            let owner = replica.to_owned();
            let chunk = self
                .with(move |conn, _| {
                    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    let seqs = tx
                        .prepare_cached(
                            "UPDATE sessions SET lease_until_ms = ?2 WHERE seq IN ( \
                             SELECT seq FROM sessions WHERE lease_owner = ?1 AND state = 'tracking' AND seq > ?3 \
                             ORDER BY seq LIMIT ?4) RETURNING seq",
                        )?
                        .query_map(params![owner, until, after, LEASE_CHUNK], |row| {
                            row.get::<_, i64>(0)
                        })?
                        .collect::<Result<Vec<_>, _>>()?;
                    if after == i64::MIN {
                        tx.prepare_cached(
                            "INSERT INTO replicas (replica_id, started_at_ms, heartbeat_at_ms) VALUES (?1, ?2, ?2) \
                             ON CONFLICT (replica_id) DO UPDATE SET heartbeat_at_ms = excluded.heartbeat_at_ms",
                        )?
                        .execute(params![owner, now])?;
                    }
                    tx.commit()?;
                    Ok(seqs)
                })
                .await?;
            renewed += chunk.len();
            match chunk.iter().max() {
                Some(last) if chunk.len() >= LEASE_CHUNK_LEN => after = *last,
                _ => return Ok(renewed),
            }
        }
    }

    async fn release_leases(
        &self,
        replica: &str,
        claimable_from: SystemTime,
    ) -> Result<usize, StoreError> {
        let replica = replica.to_owned();
        self.with(move |conn, _| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let released = tx
                .prepare_cached(
                    "UPDATE sessions SET lease_owner = NULL, lease_until_ms = ?2 WHERE lease_owner = ?1 AND state = 'tracking'",
                )?
                .execute(params![replica, to_ms(claimable_from)])?;
            tx.prepare_cached("DELETE FROM replicas WHERE replica_id = ?1")?
                .execute(params![replica])?;
            tx.commit()?;
            Ok(released)
        })
        .await
    }

    async fn release_sessions(
        &self,
        replica: &str,
        sessions: Vec<SessionId>,
        claimable_from: SystemTime,
    ) -> Result<usize, StoreError> {
        let replica = replica.to_owned();
        self.with(move |conn, _| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut released = 0;
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE sessions SET lease_owner = NULL, lease_until_ms = ?3 \
                     WHERE session_id = ?1 AND lease_owner = ?2 AND state = 'tracking'",
                )?;
                let from = to_ms(claimable_from);
                for id in &sessions {
                    released += stmt.execute(params![id.as_str(), replica, from])?;
                }
            }
            tx.commit()?;
            Ok(released)
        })
        .await
    }

    async fn held_sessions(&self, replica: &str) -> Result<Vec<SessionId>, StoreError> {
        // In chunks, as renewals are: reads of others wait for one chunk at most.
        let mut held = Vec::new();
        let mut after = i64::MIN;
        loop {
            let owner = replica.to_owned();
            let chunk = self
                .with(move |conn, _| {
                    let mut stmt = conn.prepare_cached(
                        "SELECT seq, session_id FROM sessions WHERE state = 'tracking' AND lease_owner = ?1 \
                         AND seq > ?2 ORDER BY seq LIMIT ?3",
                    )?;
                    let rows = stmt
                        .query_map(params![owner, after, LEASE_CHUNK], |row| {
                            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                        })?
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(rows)
                })
                .await?;
            let full = chunk.len() >= LEASE_CHUNK_LEN;
            let last = chunk.last().map(|(seq, _)| *seq);
            held.extend(crate::shared::session_ids(
                chunk.into_iter().map(|(_, id)| id).collect(),
            )?);
            match last {
                Some(last) if full => after = last,
                _ => return Ok(held),
            }
        }
    }

    async fn release_all_leases(&self) -> Result<usize, StoreError> {
        self.with(|conn, _| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let released = tx
                .prepare_cached(
                    "UPDATE sessions SET lease_owner = NULL, lease_until_ms = 0 WHERE state = 'tracking' AND lease_owner IS NOT NULL",
                )?
                .execute([])?;
            // Deliveries a dead predecessor claimed are due again now, not when its claim
            // lapses; its heartbeat goes too.
            tx.prepare_cached(
                "UPDATE outbox SET claimed_by = NULL, claim_until_ms = 0 WHERE claimed_by IS NOT NULL",
            )?
            .execute([])?;
            tx.prepare_cached("DELETE FROM replicas")?.execute([])?;
            tx.commit()?;
            Ok(released)
        })
        .await
    }

    async fn replicas(&self, since: SystemTime) -> Result<Vec<ReplicaBeat>, StoreError> {
        self.with(move |conn, _| {
            let mut stmt = conn.prepare_cached(
                "SELECT replica_id, started_at_ms, heartbeat_at_ms FROM replicas \
                 WHERE heartbeat_at_ms >= ?1 ORDER BY replica_id",
            )?;
            let beats = stmt
                .query_map(params![to_ms(since)], |row| {
                    Ok(ReplicaBeat {
                        id: row.get(0)?,
                        started_at: from_ms(row.get(1)?),
                        heartbeat_at: from_ms(row.get(2)?),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(beats)
        })
        .await
    }

    async fn heartbeat(&self, replica: &str, now: SystemTime) -> Result<(), StoreError> {
        let replica = replica.to_owned();
        self.with(move |conn, _| {
            conn.prepare_cached(
                "INSERT INTO replicas (replica_id, started_at_ms, heartbeat_at_ms) VALUES (?1, ?2, ?2) \
                 ON CONFLICT (replica_id) DO UPDATE SET heartbeat_at_ms = excluded.heartbeat_at_ms",
            )?
            .execute(params![replica, to_ms(now)])?;
            Ok(())
        })
        .await
    }

    async fn prune_webhooks(
        &self,
        before: SystemTime,
        replicas_before: SystemTime,
    ) -> Result<crate::shared::Pruned, StoreError> {
        let mut pruned = crate::shared::Pruned::default();
        // Each batch is its own statement (and lock), so adds and webhooks go in between.
        loop {
            let bounds = self.bounds;
            let n = self
                .with(move |conn, _| {
                    let mut n = conn
                        .prepare_cached(
                            "DELETE FROM accepted_webhooks WHERE dedupe_key IN ( \
                             SELECT dedupe_key FROM accepted_webhooks WHERE received_at_ms < ?1 LIMIT ?2)",
                        )?
                        .execute(params![to_ms(before), PRUNE_BATCH])?;
                    if n == 0 {
                        // Then count and bytes: the newest are kept while both fit.
                        n = conn
                            .prepare_cached(
                                "DELETE FROM accepted_webhooks WHERE dedupe_key IN ( \
                                 SELECT dedupe_key FROM (SELECT dedupe_key, \
                                 row_number() OVER w AS nth, sum(length(CAST(event AS BLOB))) OVER w AS kept \
                                 FROM accepted_webhooks WINDOW w AS (ORDER BY received_at_ms DESC, dedupe_key DESC)) \
                                 WHERE nth > ?1 OR kept > ?2 LIMIT ?3)",
                            )?
                            .execute(params![
                                i64::try_from(bounds.dedupe_max_count).unwrap_or(i64::MAX),
                                i64::try_from(bounds.dedupe_max_bytes).unwrap_or(i64::MAX),
                                PRUNE_BATCH
                            ])?;
                    }
                    Ok(n)
                })
                .await?;
            pruned.dedupe += n;
            if n < usize::try_from(PRUNE_BATCH).unwrap_or(usize::MAX) {
                break;
            }
        }
        let pending_before = to_ms(before);
        pruned.replicas = self
            .with(move |conn, _| {
                // Kept webhooks past their window go too (they go lazily at the next keep
                // otherwise, which may never come).
                conn.prepare_cached("DELETE FROM pending_webhooks WHERE received_at_ms < ?1")?
                    .execute(params![pending_before])?;
                Ok(conn
                    .prepare_cached("DELETE FROM replicas WHERE heartbeat_at_ms < ?1")?
                    .execute(params![to_ms(replicas_before)])?)
            })
            .await?;
        Ok(pruned)
    }

    async fn keep_pending_webhook(
        &self,
        session: &SessionId,
        hint: String,
        authenticated: bool,
        now: SystemTime,
    ) -> Result<usize, StoreError> {
        let id = session.as_str().to_owned();
        self.with(move |conn, bounds| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let dropped = keep_pending(&tx, &bounds, &id, &hint, authenticated, to_ms(now))?;
            tx.commit()?;
            Ok(dropped)
        })
        .await
    }

    async fn accept_webhook(
        &self,
        dedupe_key: String,
        session: Option<SessionId>,
        event: String,
        route: Route,
        event_name: Option<String>,
        origin: String,
        now: SystemTime,
    ) -> Result<WebhookFate, StoreError> {
        self.with(move |conn, bounds| {
            let now = to_ms(now);
            let id = session.as_ref().map(SessionId::as_str);
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO accepted_webhooks (dedupe_key, received_at_ms, session_id, event) \
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (dedupe_key) DO NOTHING",
                )?
                .execute(params![dedupe_key, now, id, event])?;
            let authenticated = matches!(
                route,
                Route::Hint {
                    authenticated: true
                }
            );
            let origin = Some(origin.as_str()).filter(|o| !o.is_empty());
            if let Some(id) = id {
                // On the named session's history (a session not added yet gets it at its add).
                let webhook = crate::history::NewEvent::webhook(
                    event_name.as_deref(),
                    authenticated,
                    inserted == 0,
                );
                operations::append_event(&tx, id, now, origin, &webhook)?;
            }
            let fate = match (inserted, route, id) {
                (0, _, _) => WebhookFate::Duplicate,
                (_, Route::Hint { authenticated }, Some(id)) => {
                    let state: Option<String> = tx
                        .prepare_cached("SELECT state FROM sessions WHERE session_id = ?1")?
                        .query_row(params![id], |row| row.get(0))
                        .optional()?;
                    match state.as_deref() {
                        Some("tracking") => WebhookFate::Tracking,
                        Some(_) => WebhookFate::Ended,
                        None => WebhookFate::Kept {
                            dropped: keep_pending(&tx, &bounds, id, &event, authenticated, now)?,
                        },
                    }
                }
                _ => WebhookFate::Recorded,
            };
            tx.commit()?;
            Ok(fate)
        })
        .await
    }

    async fn webhooks_of(
        &self,
        sessions: Vec<SessionId>,
    ) -> Result<Vec<StoredWebhook>, StoreError> {
        self.with(move |conn, _| {
            let mut stmt = conn.prepare_cached(
                "SELECT session_id, event FROM accepted_webhooks WHERE session_id = ?1 \
                 ORDER BY received_at_ms",
            )?;
            let mut rows = Vec::new();
            for session in &sessions {
                for row in stmt.query_map(params![session.as_str()], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                })? {
                    rows.push(row?);
                }
            }
            crate::shared::stored_webhooks(rows)
        })
        .await
    }

    async fn leased_webhooks(
        &self,
        replica: String,
        since: SystemTime,
    ) -> Result<Vec<StoredWebhook>, StoreError> {
        self.with(move |conn, _| {
            let mut stmt = conn.prepare_cached(
                "SELECT w.session_id, w.event FROM accepted_webhooks w \
                 JOIN sessions s ON s.session_id = w.session_id \
                 WHERE w.received_at_ms >= ?2 AND s.state = 'tracking' AND s.lease_owner = ?1 \
                 ORDER BY w.received_at_ms",
            )?;
            let rows = stmt
                .query_map(params![replica, to_ms(since)], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            crate::shared::stored_webhooks(rows)
        })
        .await
    }

    async fn claim_deliveries(
        &self,
        worker: &str,
        now: SystemTime,
        claim_for: Duration,
        limit: usize,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let worker = worker.to_owned();
        let claimed = self
            .with(move |conn, _| {
                claim_due(
                    conn,
                    "SELECT session_id, webhook_id, attempts FROM outbox INDEXED BY outbox_due \
                     WHERE state IN ('pending', 'failing') AND next_attempt_ms <= ?1 AND claim_until_ms <= ?1 \
                     ORDER BY next_attempt_ms LIMIT ?2",
                    (&worker, now, claim_for, limit),
                    |row| Ok((row.get(0)?, (row.get(1)?, row.get(2)?))),
                )
            })
            .await?;
        claimed
            .into_iter()
            .map(|(session, (webhook_id, attempts))| {
                crate::shared::due_delivery(&session, webhook_id, attempts)
            })
            .collect()
    }

    async fn claim_deliveries_with_records(
        &self,
        worker: &str,
        now: SystemTime,
        claim_for: Duration,
        limit: usize,
    ) -> Result<Vec<(DueDelivery, Option<SessionRecord>)>, StoreError> {
        let worker = worker.to_owned();
        // As `claim_deliveries`, the records read by the same statement (the session joined
        // to each due delivery): no second round with the ids, no second lookup of each.
        let claimed = self
            .with(move |conn, _| {
                claim_due(
                    conn,
                    &format!(
                        "SELECT o.session_id, o.webhook_id, o.attempts, {COLUMNS} \
                         FROM outbox o INDEXED BY outbox_due JOIN sessions s ON s.session_id = o.session_id \
                         WHERE o.state IN ('pending', 'failing') AND o.next_attempt_ms <= ?1 AND o.claim_until_ms <= ?1 \
                         ORDER BY o.next_attempt_ms LIMIT ?2"
                    ),
                    (&worker, now, claim_for, limit),
                    |row| Ok((row.get(0)?, (row.get(1)?, row.get(2)?, raw_from(row, 3)?))),
                )
            })
            .await?;
        // Parsed off the store's thread (outcomes are JSON); a record that does not parse is
        // handed over as unreadable (its attempt fails and is retried), not the whole claim.
        claimed
            .into_iter()
            .map(|(session, (webhook_id, attempts, raw))| {
                let due = crate::shared::due_delivery(&session, webhook_id, attempts)?;
                Ok((due, raw.into_record().ok().map(|(_, record)| record)))
            })
            .collect()
    }

    async fn deliveries_attempted(
        &self,
        results: Vec<(SessionId, crate::shared::Attempt, AttemptDetail)>,
        now: SystemTime,
        replica: Option<String>,
    ) -> Result<usize, StoreError> {
        self.with(move |conn, _| {
            let now = to_ms(now);
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let paused = operations::paused(&tx)?;
            let mut changed = 0;
            let mut health = crate::shared::Health::default();
            let mut moves = operations::DeliveryMoves::default();
            let mut recorder = operations::AttemptRecorder::new(&tx)?;
            for attempt in &results {
                let (_, result, _) = attempt;
                let recorded =
                    recorder.recorded(attempt, paused, now, replica.as_deref(), &mut moves)?;
                // A failure while paused only released its claim: it does not count.
                if recorded && !(paused && *result != crate::shared::Attempt::Delivered) {
                    health.record(result);
                }
                changed += usize::from(recorded);
            }
            drop(recorder);
            moves.written(&tx)?;
            operations::health_written(&tx, &health, now)?;
            tx.commit()?;
            Ok(changed)
        })
        .await
    }

    async fn session_events(
        &self,
        session: &SessionId,
        after: i64,
        limit: usize,
    ) -> Result<Option<EventPage>, StoreError> {
        let id = session.as_str().to_owned();
        self.with(move |conn, _| operations::events(conn, &id, after, limit))
            .await
    }

    async fn append_events(
        &self,
        events: Vec<(SessionId, NewEvent)>,
        now: SystemTime,
        replica: Option<String>,
    ) -> Result<usize, StoreError> {
        self.with(move |conn, _| operations::append(conn, &events, now, replica.as_deref()))
            .await
    }

    async fn stats(&self, since: SystemTime) -> Result<Stats, StoreError> {
        self.with(move |conn, _| operations::stats(conn, since))
            .await
    }

    async fn delivery_overview(&self) -> Result<DeliveryOverview, StoreError> {
        self.with(|conn, _| operations::overview(conn)).await
    }

    async fn set_delivery_paused(&self, paused: bool) -> Result<(), StoreError> {
        self.with(move |conn, _| operations::set_paused(conn, paused))
            .await
    }

    async fn redeliver(
        &self,
        session: &SessionId,
        force: bool,
        webhook_base: String,
        now: SystemTime,
        replica: Option<String>,
    ) -> Result<Redelivery, StoreError> {
        let id = session.as_str().to_owned();
        self.with(move |conn, _| {
            operations::redeliver(conn, &id, force, &webhook_base, now, replica.as_deref())
        })
        .await
    }

    async fn recover_deliveries(
        &self,
        since: SystemTime,
        until: SystemTime,
        states: Vec<DeliveryState>,
        dry_run: bool,
        now: SystemTime,
        replica: Option<String>,
    ) -> Result<Recovered, StoreError> {
        self.with(move |conn, _| {
            operations::recover(
                conn,
                since,
                until,
                &states,
                dry_run,
                now,
                replica.as_deref(),
            )
        })
        .await
    }

    async fn retrack(
        &self,
        session: &SessionId,
        now: SystemTime,
        lease: Option<(String, SystemTime)>,
        replica: Option<String>,
    ) -> Result<Retrack, StoreError> {
        let id = session.as_str().to_owned();
        self.with(move |conn, _| operations::retrack(conn, &id, now, lease, replica.as_deref()))
            .await
    }

    async fn request_poll(
        &self,
        session: &SessionId,
        now: SystemTime,
        replica: Option<String>,
    ) -> Result<PollRequest, StoreError> {
        let id = session.as_str().to_owned();
        self.with(move |conn, _| {
            operations::request_poll(conn, &id, now, replica.as_deref()).map(|(asked, _)| asked)
        })
        .await
    }

    async fn purge_session(&self, session: &SessionId) -> Result<Purge, StoreError> {
        let id = session.as_str().to_owned();
        self.with(move |conn, _| operations::purge(conn, &id)).await
    }

    async fn prune_sessions(
        &self,
        before: SystemTime,
        batch: usize,
    ) -> Result<PrunedSessions, StoreError> {
        self.with(move |conn, _| operations::prune(conn, before, batch))
            .await
    }
}

fn parse_hints(hints: Vec<String>) -> Result<Vec<serde_json::Value>, StoreError> {
    hints
        .into_iter()
        .map(|text| {
            serde_json::from_str(&text)
                .map_err(|err| StoreError::Corrupt(format!("pending webhook: {err}")))
        })
        .collect()
}

fn read_version(conn: &Connection) -> Result<i64, StoreError> {
    let version: Option<String> = conn
        .query_row(
            "SELECT value FROM bankconnect_meta WHERE key = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    version.map_or(Ok(0), |v| {
        v.parse()
            .map_err(|_| StoreError::Corrupt(format!("schema version {v:?}")))
    })
}

fn open_blocking(path: &Path) -> Result<Connection, StoreError> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Every statement stays prepared: rusqlite's default cache (16) is smaller than the set
    // this backend uses, and a statement evicted is parsed again on its next use.
    conn.set_prepared_statement_cache_capacity(64);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS bankconnect_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    )?;
    let version = read_version(&tx)?;
    if version > schema::LATEST {
        return Err(StoreError::NewerSchema {
            found: version,
            supported: schema::LATEST,
        });
    }
    let from = usize::try_from(version).unwrap_or(0);
    for (index, migration) in schema::SQLITE.iter().enumerate().skip(from) {
        tx.execute_batch(migration)?;
        tx.execute(
            "INSERT INTO bankconnect_meta (key, value) VALUES ('schema_version', ?1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![(index + 1).to_string()],
        )?;
    }
    tx.commit()?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    fn temp_file(name: &str) -> PathBuf {
        bankconnect_testkit::temp_dir(&format!("store-{name}")).join("store.db")
    }

    fn outbox_rows(conn: &Connection) -> Vec<Vec<rusqlite::types::Value>> {
        let mut stmt = conn
            .prepare(
                "SELECT session_id, webhook_id, state, attempts, next_attempt_ms, last_error, \
                 claimed_by, claim_until_ms, created_at_ms, updated_at_ms, session_seq \
                 FROM outbox ORDER BY session_id",
            )
            .unwrap();
        stmt.query_map([], |row| (0..11).map(|i| row.get(i)).collect())
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn delivery_counts(conn: &Connection) -> Vec<(String, i64)> {
        conn.prepare("SELECT name, n FROM state_counts WHERE scope = 'delivery' ORDER BY name")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn version_6_rebuilds_the_outbox_keeping_its_rows_counts_and_checks() {
        let path = temp_file("migrate6");
        {
            // A store at version 5, with deliveries in every state.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE bankconnect_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            )
            .unwrap();
            for migration in &schema::SQLITE[..5] {
                conn.execute_batch(migration).unwrap();
            }
            conn.execute(
                "INSERT INTO bankconnect_meta (key, value) VALUES ('schema_version', '5')",
                [],
            )
            .unwrap();
            for (i, state) in ["pending", "delivered", "failing", "given_up", "failing"]
                .iter()
                .enumerate()
            {
                let id = format!("s{i}");
                conn.execute(
                    "INSERT INTO sessions (session_id, state, added_at_ms, updated_at_ms) VALUES (?1, 'finished', 1, 2)",
                    params![id],
                )
                .unwrap();
                conn.execute(
                    "INSERT INTO outbox (session_id, webhook_id, state, attempts, next_attempt_ms, last_error, \
                     claimed_by, claim_until_ms, created_at_ms, updated_at_ms, session_seq) \
                     VALUES (?1, ?2, 'pending', ?3, ?4, ?5, ?6, ?7, 10, 11, ?8)",
                    params![id, format!("msg_{id}"), i, 100 + i as i64, (i % 2 == 0).then_some("HTTP 503"), (i == 0).then_some("r-1"), 5 * i as i64, i as i64 + 1],
                )
                .unwrap();
                conn.execute(
                    "UPDATE outbox SET state = ?2 WHERE session_id = ?1",
                    params![id, state],
                )
                .unwrap();
            }
        }
        let before = {
            let conn = Connection::open(&path).unwrap();
            (outbox_rows(&conn), delivery_counts(&conn))
        };
        assert_eq!(
            before.1,
            [
                ("delivered".to_owned(), 1),
                ("failing".to_owned(), 2),
                ("given_up".to_owned(), 1),
                ("pending".to_owned(), 1)
            ]
        );
        let conn = open_blocking(&path).unwrap();
        assert_eq!(read_version(&conn).unwrap(), schema::LATEST);
        assert_eq!(outbox_rows(&conn), before.0, "the rows are kept");
        assert_eq!(delivery_counts(&conn), before.1, "the counts are kept");
        // The indexes and the insert and delete triggers are back: a claim reads by the due
        // index, a delete is counted. A change of state is counted by its writers, not here.
        conn.prepare(
            "SELECT session_id FROM outbox INDEXED BY outbox_due WHERE state IN ('pending', 'failing')",
        )
        .unwrap();
        let triggers: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'outbox' ORDER BY name")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(triggers, ["outbox_counted_delete", "outbox_counted_insert"]);
        conn.execute("DELETE FROM outbox WHERE session_id = 's0'", [])
            .unwrap();
        assert_eq!(
            delivery_counts(&conn),
            [
                ("delivered".to_owned(), 1),
                ("failing".to_owned(), 2),
                ("given_up".to_owned(), 1),
                ("pending".to_owned(), 0)
            ]
        );
        let refused = conn.execute(
            "UPDATE outbox SET state = 'lost' WHERE session_id = 's1'",
            [],
        );
        assert!(refused.is_err(), "{refused:?}");
        // The foreign key to sessions is kept.
        let orphan = conn.execute(
            "INSERT INTO outbox (session_id, webhook_id, state, created_at_ms, updated_at_ms) VALUES ('nobody', 'm', 'pending', 1, 1)",
            [],
        );
        assert!(orphan.is_err(), "{orphan:?}");
        drop(conn);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
