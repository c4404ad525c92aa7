//! The operators' calls on PostgreSQL, in step with `sqlite/operations.rs`: each runs in one
//! transaction (or one statement) of a pooled connection.

use std::time::SystemTime;

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;

use super::col;
use crate::history::{self, AttemptDetail, EventPage, NewEvent, Rendered};
use crate::model::{from_ms, to_ms, DeliveryState, Page};
use crate::operations::{
    self, Bound, DeliveryCounts, DeliveryOverview, Dialect, PollRequest, PrunedSessions, Purge,
    Recovered, Redelivery, Retrack, SessionFilter, Stats,
};
use crate::shared::{Attempt, StateCounts};
use crate::StoreError;

/// Advisory lock of the replica pruning (one at a time in a fleet).
const PRUNE_LOCK: i64 = 0x6261_6e6b_0003;

/// Appends an event to a session's history inside the caller's transaction, keeping the
/// history bounded; `false` if the session is unknown.
pub(super) async fn append_event(
    tx: &impl GenericClient,
    session: &str,
    at: i64,
    replica: Option<&str>,
    event: &NewEvent,
) -> Result<bool, StoreError> {
    append_rendered(tx, session, at, replica, &event.rendered()).await
}

/// As [`append_event`], the event as it is written.
async fn append_rendered(
    tx: &impl GenericClient,
    session: &str,
    at: i64,
    replica: Option<&str>,
    event: &Rendered,
) -> Result<bool, StoreError> {
    // The row lock also serializes writers of one session's history across replicas.
    let bump = tx
        .prepare_cached(
            "UPDATE sessions SET events_seq = events_seq + 1 WHERE session_id = $1 RETURNING events_seq",
        )
        .await?;
    let Some(row) = tx.query_opt(&bump, &[&session]).await? else {
        return Ok(false);
    };
    let seq: i64 = col(&row, 0)?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO session_events (session_id, seq, at_ms, kind, replica, body) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await?;
    tx.execute(
        &insert,
        &[&session, &seq, &at, &event.kind, &replica, &event.body],
    )
    .await?;
    if let Some(out) = history::falls_out(seq) {
        let delete = tx
            .prepare_cached("DELETE FROM session_events WHERE session_id = $1 AND seq = $2")
            .await?;
        tx.execute(&delete, &[&session, &out]).await?;
    }
    Ok(true)
}

pub(super) async fn list(
    client: &impl GenericClient,
    filter: &SessionFilter,
    limit: usize,
    after: Option<i64>,
) -> Result<Page, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut filter = filter.clone();
    // A few matches of a prefix or a time range are looked up by their indexes first: with
    // `ORDER BY seq LIMIT` the planner would rather scan every session in order to find them.
    if let Some((sql, binds)) = operations::ranges_query(&filter, NARROW + 1) {
        let rows = query(client, &sql, binds).await?;
        if rows.len() <= usize::try_from(NARROW).unwrap_or(usize::MAX) {
            let seqs = rows
                .iter()
                .map(|row| col::<i64>(row, 0))
                .collect::<Result<Vec<_>, _>>()?;
            filter.within = Some(seqs);
        }
    }
    let (sql, binds) = operations::list_query(&filter, after, limit, Dialect::Postgres);
    let rows = query(client, &sql, binds).await?;
    Ok(crate::shared::page(
        super::records(&rows)?,
        limit,
        filter.order,
    ))
}

/// Most matches of a range looked up first (more are dense enough to scan for).
const NARROW: i64 = 2000;

async fn query(
    client: &impl GenericClient,
    sql: &str,
    binds: Vec<Bound>,
) -> Result<Vec<tokio_postgres::Row>, StoreError> {
    let values: Vec<Box<dyn ToSql + Sync + Send>> = binds
        .into_iter()
        .map(|bound| match bound {
            Bound::Int(n) => Box::new(n) as Box<dyn ToSql + Sync + Send>,
            Bound::Text(t) => Box::new(t),
            Bound::Ints(list) => Box::new(list),
        })
        .collect();
    let params: Vec<&(dyn ToSql + Sync)> = values
        .iter()
        .map(|v| v.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let stmt = client.prepare_cached(sql).await?;
    Ok(client.query(&stmt, &params).await?)
}

pub(super) async fn events(
    client: &impl GenericClient,
    session: &str,
    after: i64,
    limit: usize,
) -> Result<Option<EventPage>, StoreError> {
    let Some(row) = client
        .query_opt(
            "SELECT events_seq FROM sessions WHERE session_id = $1",
            &[&session],
        )
        .await?
    else {
        return Ok(None);
    };
    let written: i64 = col(&row, 0)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let stmt = client
        .prepare_cached(
            "SELECT seq, at_ms, kind, replica, body FROM session_events \
             WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .await?;
    let rows = client
        .query(&stmt, &[&session, &after, &(limit.saturating_add(1))])
        .await?;
    let rows = rows
        .iter()
        .map(|row| {
            Ok((
                col(row, 0)?,
                col(row, 1)?,
                col(row, 2)?,
                col(row, 3)?,
                col(row, 4)?,
            ))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Some(history::page(rows, limit, written)?))
}

/// Sessions and deliveries per state, counted (see schema version 5 for why not kept).
async fn state_totals(
    client: &impl GenericClient,
) -> Result<(StateCounts, DeliveryCounts), StoreError> {
    let rows = client
        .query(
            "SELECT 'session', state, count(*) FROM sessions GROUP BY state \
             UNION ALL SELECT 'delivery', state, count(*) FROM outbox GROUP BY state",
            &[],
        )
        .await?;
    let rows = rows
        .iter()
        .map(|row| Ok((col(row, 0)?, col(row, 1)?, col(row, 2)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(operations::state_totals(rows))
}

async fn delivery_counts(client: &impl GenericClient) -> Result<DeliveryCounts, StoreError> {
    Ok(state_totals(client).await?.1)
}

/// Counts of a window, from the rows (the query takes the window's start and an end).
async fn window(
    client: &impl GenericClient,
    sql: &str,
    since: i64,
) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
    let mut parts = Vec::new();
    for row in client.query(sql, &[&since, &i64::MAX]).await? {
        parts.push((col::<String>(&row, 0)?, col::<i64>(&row, 1)?));
    }
    Ok(operations::merge_counts(parts))
}

async fn oldest_undelivered(client: &impl GenericClient) -> Result<Option<SystemTime>, StoreError> {
    let row = client
        .query_one(
            "SELECT min(at) FROM ( \
             (SELECT created_at_ms AS at FROM outbox WHERE state = 'pending' ORDER BY created_at_ms LIMIT 1) UNION ALL \
             (SELECT created_at_ms AS at FROM outbox WHERE state = 'failing' ORDER BY created_at_ms LIMIT 1)) o",
            &[],
        )
        .await?;
    Ok(col::<Option<i64>>(&row, 0)?.map(from_ms))
}

pub(super) async fn stats(
    client: &mut deadpool_postgres::Object,
    since: SystemTime,
) -> Result<Stats, StoreError> {
    // One snapshot: every number from the same moment.
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let since = to_ms(since);
    let mut stats = Stats::default();
    (stats.sessions, stats.deliveries) = state_totals(&tx).await?;
    stats.outcomes = window(
        &tx,
        "SELECT outcome_kind, count(*) FROM sessions WHERE finished_at_ms >= $1 \
         AND finished_at_ms < $2 AND outcome_kind IS NOT NULL GROUP BY outcome_kind",
        since,
    )
    .await?
    .into_iter()
    .collect();
    stats.top_error_codes = operations::top_ten(
        window(
            &tx,
            "SELECT code, count(*) FROM session_error_codes WHERE at_ms >= $1 AND at_ms < $2 GROUP BY code",
            since,
        )
        .await?,
    );
    let oldest = tx
        .query_opt(
            "SELECT coalesce(tracked_at_ms, added_at_ms) FROM sessions WHERE state = 'tracking' ORDER BY seq LIMIT 1",
            &[],
        )
        .await?;
    stats.oldest_tracking_added_at = oldest
        .map(|row| col::<i64>(&row, 0))
        .transpose()?
        .map(from_ms);
    stats.oldest_undelivered_at = oldest_undelivered(&tx).await?;
    tx.commit().await?;
    Ok(stats)
}

pub(super) async fn overview(
    client: &mut deadpool_postgres::Object,
) -> Result<DeliveryOverview, StoreError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let row = tx
        .query_one(
            "SELECT paused, last_success_ms, last_failure_ms, last_failure_error, consecutive_failures \
             FROM delivery_control WHERE id = 1",
            &[],
        )
        .await?;
    let failure_at: Option<i64> = col(&row, 2)?;
    let failure: Option<String> = col(&row, 3)?;
    let consecutive: i64 = col(&row, 4)?;
    let overview = DeliveryOverview {
        paused: col(&row, 0)?,
        counts: delivery_counts(&tx).await?,
        oldest_undelivered_at: oldest_undelivered(&tx).await?,
        last_success_at: col::<Option<i64>>(&row, 1)?.map(from_ms),
        last_failure: failure_at.map(|at| (from_ms(at), failure.unwrap_or_default())),
        consecutive_failures: u64::try_from(consecutive).unwrap_or(0),
    };
    tx.commit().await?;
    Ok(overview)
}

pub(super) async fn paused(client: &impl GenericClient) -> Result<bool, StoreError> {
    let stmt = client
        .prepare_cached("SELECT paused FROM delivery_control WHERE id = 1")
        .await?;
    Ok(match client.query_opt(&stmt, &[]).await? {
        Some(row) => col(&row, 0)?,
        None => false,
    })
}

/// Due again now, from its first attempt, with the same `webhook-id`.
async fn requeue(tx: &impl GenericClient, session: &str, now: i64) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached(
            "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_ms = $2, last_error = NULL, \
             claimed_by = NULL, claim_until_ms = 0, updated_at_ms = $2 WHERE session_id = $1",
        )
        .await?;
    tx.execute(&stmt, &[&session, &now]).await?;
    Ok(())
}

pub(super) async fn redeliver(
    client: &mut deadpool_postgres::Object,
    session: &str,
    force: bool,
    base: &str,
    now: SystemTime,
    replica: Option<&str>,
) -> Result<Redelivery, StoreError> {
    let now = to_ms(now);
    let tx = client.transaction().await?;
    let Some(row) = tx
        .query_opt(
            "SELECT s.state, s.generation, s.finished_at_ms, o.state, s.seq FROM sessions s \
             LEFT JOIN outbox o ON o.session_id = s.session_id WHERE s.session_id = $1 FOR UPDATE OF s",
            &[&session],
        )
        .await?
    else {
        return Ok(Redelivery::Unknown);
    };
    let state: String = col(&row, 0)?;
    let generation: i64 = col(&row, 1)?;
    let finished_at: Option<i64> = col(&row, 2)?;
    let delivery: Option<String> = col(&row, 3)?;
    let seq: i64 = col(&row, 4)?;
    if state != "finished" {
        return Ok(Redelivery::NotFinished);
    }
    match delivery.as_deref() {
        Some("delivered") if !force => return Ok(Redelivery::AlreadyDelivered),
        Some(_) => requeue(&tx, session, now).await?,
        None => {
            tx.execute(
                "INSERT INTO outbox (session_id, webhook_id, state, attempts, next_attempt_ms, created_at_ms, updated_at_ms, session_seq) \
                 VALUES ($1, $2, 'pending', 0, $3, $4, $3, $5)",
                &[
                    &session,
                    &operations::webhook_id(base, generation),
                    &now,
                    &finished_at.unwrap_or(now),
                    &seq,
                ],
            )
            .await?;
        }
    }
    append_event(
        &tx,
        session,
        now,
        replica,
        &NewEvent::redeliver("admin", force),
    )
    .await?;
    let record = super::get_record(&tx, session)
        .await?
        .ok_or_else(|| StoreError::database(format!("session {session} vanished")))?;
    tx.commit().await?;
    Ok(Redelivery::Requeued(Box::new(record)))
}

pub(super) async fn recover(
    client: &mut deadpool_postgres::Object,
    since: SystemTime,
    until: SystemTime,
    states: &[DeliveryState],
    dry_run: bool,
    now: SystemTime,
    replica: Option<&str>,
) -> Result<Recovered, StoreError> {
    let now = to_ms(now);
    let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
    let tx = client.transaction().await?;
    let rows = tx
        .query(
            "SELECT session_id FROM outbox WHERE state = ANY($1) AND created_at_ms >= $2 AND created_at_ms < $3 \
             ORDER BY created_at_ms FOR UPDATE",
            &[&names, &to_ms(since), &to_ms(until)],
        )
        .await?;
    let sessions = rows
        .iter()
        .map(|row| col::<String>(row, 0))
        .collect::<Result<Vec<_>, _>>()?;
    let matched = u64::try_from(sessions.len()).unwrap_or(u64::MAX);
    if dry_run {
        return Ok(Recovered {
            matched,
            requeued: 0,
        });
    }
    for session in &sessions {
        requeue(&tx, session, now).await?;
        append_event(
            &tx,
            session,
            now,
            replica,
            &NewEvent::redeliver("recover", false),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Recovered {
        matched,
        requeued: matched,
    })
}

pub(super) async fn retrack(
    client: &mut deadpool_postgres::Object,
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
    let tx = client.transaction().await?;
    let Some(row) = tx
        .query_opt(
            "SELECT seq, state FROM sessions WHERE session_id = $1 FOR UPDATE",
            &[&session],
        )
        .await?
    else {
        return Ok(Retrack::Unknown);
    };
    let seq: i64 = col(&row, 0)?;
    let state: String = col(&row, 1)?;
    if state == "tracking" {
        return Ok(Retrack::Tracking);
    }
    tx.execute(
        "UPDATE sessions SET state = 'tracking', outcome = NULL, outcome_kind = NULL, finished_at_ms = NULL, \
         tracker_state = NULL, generation = generation + 1, tracked_at_ms = $2, updated_at_ms = $2, \
         lease_owner = $3, lease_until_ms = $4 WHERE seq = $1",
        &[&seq, &now, &owner, &until],
    )
    .await?;
    tx.execute("DELETE FROM outbox WHERE session_id = $1", &[&session])
        .await?;
    tx.execute(
        "DELETE FROM session_error_codes WHERE session_seq = $1",
        &[&seq],
    )
    .await?;
    append_event(
        &tx,
        session,
        now,
        replica,
        &NewEvent::by("retrack", "admin"),
    )
    .await?;
    let record = super::get_record(&tx, session)
        .await?
        .ok_or_else(|| StoreError::database(format!("session {session} vanished")))?;
    tx.commit().await?;
    Ok(Retrack::Retracked(Box::new(record)))
}

pub(super) async fn request_poll(
    client: &mut deadpool_postgres::Object,
    session: &str,
    now: SystemTime,
    replica: Option<&str>,
) -> Result<PollRequest, StoreError> {
    let tx = client.transaction().await?;
    let Some(record) = super::get_record(&tx, session).await? else {
        return Ok(PollRequest::Unknown);
    };
    if record.state != crate::model::SessionState::Tracking {
        return Ok(PollRequest::NotTracking);
    }
    append_event(
        &tx,
        session,
        to_ms(now),
        replica,
        &NewEvent::by("poll_requested", "admin"),
    )
    .await?;
    // The replica holding it hears of it as of a webhook, at commit.
    tx.execute(
        "SELECT pg_notify($1, current_schema() || E'\\n' || $2 || E'\\n' || $3)",
        &[
            &super::NOTIFY_CHANNEL,
            &format!("{}{}", replica.unwrap_or(""), super::POLL_TAG),
            &session,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(PollRequest::Requested(Box::new(record)))
}

async fn delete_session(
    tx: &impl GenericClient,
    seq: i64,
    session: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM session_events WHERE session_id = $1",
        &[&session],
    )
    .await?;
    tx.execute(
        "DELETE FROM session_error_codes WHERE session_seq = $1",
        &[&seq],
    )
    .await?;
    tx.execute("DELETE FROM outbox WHERE session_id = $1", &[&session])
        .await?;
    tx.execute(
        "DELETE FROM accepted_webhooks WHERE session_id = $1",
        &[&session],
    )
    .await?;
    tx.execute(
        "DELETE FROM pending_webhooks WHERE session_id = $1",
        &[&session],
    )
    .await?;
    tx.execute("DELETE FROM sessions WHERE seq = $1", &[&seq])
        .await?;
    Ok(())
}

pub(super) async fn purge(
    client: &mut deadpool_postgres::Object,
    session: &str,
) -> Result<Purge, StoreError> {
    let tx = client.transaction().await?;
    let Some(row) = tx
        .query_opt(
            "SELECT seq, state FROM sessions WHERE session_id = $1 FOR UPDATE",
            &[&session],
        )
        .await?
    else {
        return Ok(Purge::Unknown);
    };
    let seq: i64 = col(&row, 0)?;
    let state: String = col(&row, 1)?;
    if state == "tracking" {
        return Ok(Purge::Tracking);
    }
    delete_session(&tx, seq, session).await?;
    tx.commit().await?;
    Ok(Purge::Purged)
}

pub(super) async fn prune(
    client: &mut deadpool_postgres::Object,
    before: SystemTime,
    batch: usize,
) -> Result<PrunedSessions, StoreError> {
    let before = to_ms(before);
    let tx = client.transaction().await?;
    let locked: bool = col(
        &tx.query_one("SELECT pg_try_advisory_xact_lock($1)", &[&PRUNE_LOCK])
            .await?,
        0,
    )?;
    if !locked {
        return Ok(PrunedSessions {
            sessions: 0,
            skipped: true,
        });
    }
    let rows = tx
        .query(
            "SELECT s.seq, s.session_id FROM sessions s LEFT JOIN outbox o ON o.session_id = s.session_id \
             WHERE s.state <> 'tracking' AND s.updated_at_ms < $1 \
             AND (o.session_id IS NULL OR (o.state IN ('delivered', 'given_up') AND o.updated_at_ms < $1)) \
             ORDER BY s.updated_at_ms LIMIT $2 FOR UPDATE OF s SKIP LOCKED",
            &[&before, &i64::try_from(batch).unwrap_or(i64::MAX)],
        )
        .await?;
    for row in &rows {
        let seq: i64 = col(row, 0)?;
        let session: String = col(row, 1)?;
        delete_session(&tx, seq, &session).await?;
    }
    tx.commit().await?;
    Ok(PrunedSessions {
        sessions: u64::try_from(rows.len()).unwrap_or(u64::MAX),
        skipped: false,
    })
}

/// Writes a batch's effect on the deliveries' health, once, inside the caller's transaction.
pub(super) async fn health_written(
    tx: &impl GenericClient,
    health: &crate::shared::Health,
    now: i64,
) -> Result<(), StoreError> {
    if health.changed() {
        let stmt = tx
            .prepare_cached(&crate::shared::health_update('$'))
            .await?;
        tx.execute(
            &stmt,
            &[
                &now,
                &health.succeeded,
                &health.failures,
                &health.last_error,
            ],
        )
        .await?;
    }
    Ok(())
}

/// Records one attempt's result and its events inside the caller's transaction (see
/// `sqlite/operations.rs`).
pub(super) async fn attempt_recorded(
    tx: &impl GenericClient,
    session: &str,
    result: &Attempt,
    detail: &AttemptDetail,
    paused: bool,
    now: i64,
    replica: Option<&str>,
) -> Result<bool, StoreError> {
    if paused && *result != Attempt::Delivered {
        let stmt = tx
            .prepare_cached(
                "UPDATE outbox SET claimed_by = NULL, claim_until_ms = 0 \
                 WHERE session_id = $1 AND state IN ('pending', 'failing')",
            )
            .await?;
        return Ok(tx.execute(&stmt, &[&session]).await? == 1);
    }
    let (state, error, next) = result.columns();
    let stmt = tx
        .prepare_cached(
            "UPDATE outbox SET state = $2, attempts = attempts + 1, last_error = $3, next_attempt_ms = $4, \
             claimed_by = NULL, claim_until_ms = 0, updated_at_ms = $5 \
             WHERE session_id = $1 AND state IN ('pending', 'failing') RETURNING attempts",
        )
        .await?;
    let Some(row) = tx
        .query_opt(&stmt, &[&session, &state, &error, &next, &now])
        .await?
    else {
        return Ok(false);
    };
    let attempts: i64 = col(&row, 0)?;
    let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
    append_rendered(
        tx,
        session,
        now,
        replica,
        &history::delivery_attempt(attempts, detail, next.map(from_ms)),
    )
    .await?;
    if state != "failing" {
        let kind = if state == "delivered" {
            "delivered"
        } else {
            "given_up"
        };
        append_rendered(
            tx,
            session,
            now,
            replica,
            &history::delivery_ended(kind, attempts),
        )
        .await?;
    }
    Ok(true)
}
