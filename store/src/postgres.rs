//! The fleet backend: PostgreSQL through tokio-postgres, pooled by deadpool-postgres.
//!
//! PostgreSQL does the distribution: claims of sessions and deliveries use
//! `FOR UPDATE SKIP LOCKED`, so concurrent replicas never take the same row; migrations and adds
//! take transaction-scoped advisory locks (adds, so that the paging order is the commit order).

use std::time::{Duration, SystemTime};

use bankconnect_core::SessionId;
use deadpool_postgres::GenericClient;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::mpsc;
use tokio_postgres::Row;

use crate::tls::{MakeRustls, PostgresUrl, RustlsStream};

use crate::model::{
    duration_ms, from_ms, to_ms, Added, DueDelivery, Finish, NewSession, Page, ReplicaBeat, Route,
    SessionRecord, StoredWebhook, WebhookFate,
};
use crate::notices::{WebhookNotice, WebhookNotices};
use crate::row::{RawRecord, COLUMNS, FROM};
use crate::schema;
use crate::shared::{Bounds, StateCounts};
use crate::StoreError;

mod operations;

use crate::history::{self, AttemptDetail, EventPage, NewEvent, OutcomeFacts};
use crate::model::DeliveryState;
use crate::operations::{
    DeliveryOverview, PollRequest, PrunedSessions, Purge, Recovered, Redelivery, Retrack,
    SessionFilter, Stats,
};

/// Advisory lock keys (arbitrary constants, namespaced by their value).
const MIGRATION_LOCK: i64 = 0x6261_6e6b_0001;
const ADD_LOCK: i64 = 0x6261_6e6b_0002;

/// The channel of webhook notices; the payload is `schema\norigin\nsession_id`.
const NOTIFY_CHANNEL: &str = "bankconnect_webhook";
/// The suffix of a notice's origin that makes it a poll asked for, not a webhook.
pub(crate) const POLL_TAG: &str = "#poll";
/// Notices queued for a slow reader before they are replaced by one [`WebhookNotice::Missed`].
const NOTICE_QUEUE: usize = 4096;
/// How often the listening connection is checked (a cut network may not close it).
const LISTEN_PING: Duration = Duration::from_secs(5);

fn stored(rows: &[Row]) -> Result<Vec<StoredWebhook>, StoreError> {
    let rows = rows
        .iter()
        .map(|row| Ok((col(row, 0)?, col(row, 1)?)))
        .collect::<Result<Vec<(String, String)>, StoreError>>()?;
    crate::shared::stored_webhooks(rows)
}

/// Keeps a webhook for a session not added yet, inside the caller's transaction: one per
/// session (an unauthenticated one never replaces an authenticated one), bounded by age and
/// count. Returns how many fell out of the bounds.
async fn keep_pending(
    tx: &deadpool_postgres::Transaction<'_>,
    bounds: &Bounds,
    session: &str,
    hint: &str,
    authenticated: bool,
    now: i64,
) -> Result<usize, StoreError> {
    let mut dropped = tx
        .execute(
            "DELETE FROM pending_webhooks WHERE received_at_ms < $1",
            &[&now.saturating_sub(duration_ms(bounds.pending_max_age))],
        )
        .await?;
    tx.execute(
        "INSERT INTO pending_webhooks (session_id, received_at_ms, authenticated, hint) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (session_id) DO UPDATE SET received_at_ms = excluded.received_at_ms, \
         authenticated = excluded.authenticated, hint = excluded.hint \
         WHERE excluded.authenticated OR NOT pending_webhooks.authenticated",
        &[&session, &now, &authenticated, &hint],
    )
    .await?;
    let count: i64 = col(
        &tx.query_one("SELECT count(*) FROM pending_webhooks", &[])
            .await?,
        0,
    )?;
    let max = i64::try_from(bounds.pending_max_count).unwrap_or(i64::MAX);
    if count > max {
        dropped += tx
            .execute(
                "DELETE FROM pending_webhooks WHERE session_id IN ( \
                 SELECT session_id FROM pending_webhooks ORDER BY received_at_ms, session_id LIMIT $1)",
                &[&(count - max)],
            )
            .await?;
    }
    // Bytes: the newest are kept while their running total fits.
    dropped += tx
        .execute(
            "DELETE FROM pending_webhooks WHERE session_id IN ( \
             SELECT session_id FROM (SELECT session_id, sum(octet_length(hint)) \
             OVER (ORDER BY received_at_ms DESC, session_id DESC) AS kept FROM pending_webhooks) AS t \
             WHERE kept > $1)",
            &[&i64::try_from(bounds.pending_max_bytes).unwrap_or(i64::MAX)],
        )
        .await?;
    Ok(usize::try_from(dropped).unwrap_or(usize::MAX))
}

/// Rows deleted per statement by pruning.
const PRUNE_BATCH: i64 = 5_000;

type Connection =
    tokio_postgres::Connection<tokio_postgres::Socket, RustlsStream<tokio_postgres::Socket>>;

/// The next message of a connection (`None` once it is closed or failed).
async fn next_message(connection: &mut Connection) -> Option<tokio_postgres::AsyncMessage> {
    match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
        Some(Ok(message)) => Some(message),
        _ => None,
    }
}

/// Runs `work` on a client while driving its connection (whose messages meanwhile are dropped:
/// a [`WebhookNotice::Missed`] follows every setup). `None` if the connection ended first.
async fn driving<T>(
    connection: &mut Connection,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return Some(out),
            message = next_message(connection) => message?,
        };
    }
}

/// Listens on its own connection, forwarding this schema's notices from other origins, and
/// reconnects (with a capped backoff) whenever the connection fails or stops answering.
async fn listen(
    config: std::sync::Arc<tokio_postgres::Config>,
    tls: MakeRustls,
    replica: String,
    notices: mpsc::Sender<WebhookNotice>,
) {
    let mut delay = Duration::from_millis(100);
    while !notices.is_closed() {
        if let Ok((client, mut connection)) = config.connect(tls.clone()).await {
            let setup = async {
                client
                    .batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
                    .await?;
                let row = client.query_one("SELECT current_schema()", &[]).await?;
                row.try_get::<_, String>(0)
            };
            if let Some(Ok(schema)) = driving(&mut connection, setup).await {
                delay = Duration::from_millis(100);
                forward(&client, &mut connection, &schema, &replica, &notices).await;
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Forwards notices until the connection fails, stops answering pings, or the reader is gone.
async fn forward(
    client: &tokio_postgres::Client,
    connection: &mut Connection,
    schema: &str,
    replica: &str,
    notices: &mpsc::Sender<WebhookNotice>,
) {
    let mut missed = true;
    let mut ping = tokio::time::interval(LISTEN_PING);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if missed {
            match notices.try_send(WebhookNotice::Missed) {
                Ok(()) => missed = false,
                Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
        tokio::select! {
            message = next_message(connection) => {
                let Some(message) = message else { return };
                let tokio_postgres::AsyncMessage::Notification(note) = message else { continue };
                let mut parts = note.payload().splitn(3, '\n');
                let (Some(from_schema), Some(origin), Some(session)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                if note.channel() != NOTIFY_CHANNEL || from_schema != schema || origin == replica {
                    continue;
                }
                // A poll asked for is tagged on its origin (`REPLICA#poll`) and heard by all.
                let notice = match origin.strip_suffix(POLL_TAG) {
                    Some(_) => SessionId::new(session).map(WebhookNotice::PollRequested),
                    None => SessionId::new(session).map(WebhookNotice::Webhook),
                };
                let Ok(notice) = notice else { continue };
                match notices.try_send(notice) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => missed = true,
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
            _ = ping.tick() => {
                let alive = tokio::time::timeout(
                    LISTEN_PING,
                    driving(connection, client.simple_query("")),
                )
                .await;
                if !matches!(alive, Ok(Some(Ok(_)))) {
                    return;
                }
            }
        }
    }
}

/// A store in a PostgreSQL database (or the schema its `search_path` names).
#[derive(Clone)]
pub(crate) struct PostgresStore {
    pool: Pool,
    /// For the listening connection, which lives outside the pool.
    config: std::sync::Arc<tokio_postgres::Config>,
    tls: MakeRustls,
    target: String,
    bounds: Bounds,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

fn col<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    index: usize,
) -> Result<T, StoreError> {
    row.try_get(index)
        .map_err(|err| StoreError::Corrupt(format!("column {index}: {err}")))
}

fn raw(row: &Row) -> Result<RawRecord, StoreError> {
    Ok(RawRecord {
        seq: col(row, 0)?,
        session_id: col(row, 1)?,
        reference: col(row, 2)?,
        state: col(row, 3)?,
        added_at_ms: col(row, 4)?,
        updated_at_ms: col(row, 5)?,
        max_wait_ms: col(row, 6)?,
        outcome: col(row, 7)?,
        tracker_state: col(row, 8)?,
        lease_owner: col(row, 9)?,
        lease_until_ms: col(row, 10)?,
        delivery_state: col(row, 11)?,
        delivery_attempts: col(row, 12)?,
        delivery_error: col(row, 13)?,
        webhook_id: col(row, 14)?,
        next_attempt_ms: col(row, 15)?,
        tracked_at_ms: col(row, 16)?,
    })
}

fn records(rows: &[Row]) -> Result<Vec<(i64, SessionRecord)>, StoreError> {
    rows.iter().map(|row| raw(row)?.into_record()).collect()
}

async fn get_record(
    client: &impl GenericClient,
    session: &str,
) -> Result<Option<SessionRecord>, StoreError> {
    let stmt = client
        .prepare(&format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE s.session_id = $1"
        ))
        .await?;
    let row = client.query_opt(&stmt, &[&session]).await?;
    row.map(|row| raw(&row)?.into_record().map(|(_, record)| record))
        .transpose()
}

/// `PostgreSQL at HOST:PORT/DATABASE` for messages: never the user's password.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("PostgreSQL at {host}:{port}/{db}")
}

impl PostgresStore {
    /// Connects, bringing the schema up to date (one replica at a time).
    pub(crate) async fn open(url: &str) -> Result<Self, StoreError> {
        let PostgresUrl { mut config, tls } =
            PostgresUrl::parse(url, std::env::var("PGPASSWORD").ok())?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.application_name("bankconnect");
        let target = describe(&config);
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(8)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(Duration::from_secs(5)))
            .wait_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|err| StoreError::Connect {
                target: target.clone(),
                reason: err.to_string(),
            })?;
        let store = Self {
            pool,
            config: std::sync::Arc::new(config),
            tls,
            target: target.clone(),
            bounds: Bounds::default(),
        };
        store.migrate().await.map_err(|err| match err {
            StoreError::Database {
                message: reason, ..
            }
            | StoreError::Busy {
                message: reason, ..
            } => StoreError::Connect { target, reason },
            other => other,
        })?;
        Ok(store)
    }

    pub(crate) fn set_bounds(&mut self, bounds: Bounds) {
        self.bounds = bounds;
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS bankconnect_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        )
        .await?;
        let version = read_version(&tx).await?;
        if version > schema::LATEST {
            return Err(StoreError::NewerSchema {
                found: version,
                supported: schema::LATEST,
            });
        }
        let from = usize::try_from(version).unwrap_or(0);
        for (index, migration) in schema::POSTGRES.iter().enumerate().skip(from) {
            tx.batch_execute(migration).await?;
            tx.execute(
                "INSERT INTO bankconnect_meta (key, value) VALUES ('schema_version', $1) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&(index + 1).to_string()],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Finishes a tracking session in one statement: `$1` id, `$2` outcome, `$3` now, `$4` the
/// outcome's kind, `$5` its error codes, `$6`-`$8` its event's kind, replica and body, `$9` the
/// delivery's webhook id (none: no delivery), `$10` its first attempt. Returns a row only if
/// the session was tracking. The webhook id takes the retrack generation as
/// [`crate::operations::webhook_id`] does.
static FINISH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let (last, first) = (history::LAST_KEPT, history::FIRST_KEPT);
    format!(
        "WITH f AS (\
           UPDATE sessions SET state = 'finished', outcome = $2, updated_at_ms = $3, \
           outcome_kind = $4, finished_at_ms = $3, lease_owner = NULL, lease_until_ms = 0, \
           tracker_state = NULL, events_seq = events_seq + 1 \
           WHERE session_id = $1 AND state = 'tracking' RETURNING seq, generation, events_seq), \
         codes AS (\
           INSERT INTO session_error_codes (code, session_seq, at_ms) \
           SELECT code, f.seq, $3 FROM f, unnest($5::text[]) AS code ON CONFLICT DO NOTHING), \
         event AS (\
           INSERT INTO session_events (session_id, seq, at_ms, kind, replica, body) \
           SELECT $1, f.events_seq, $3, $6, $7, $8 FROM f), \
         fallen AS (\
           DELETE FROM session_events e USING f \
           WHERE e.session_id = $1 AND e.seq = f.events_seq - {last} AND f.events_seq - {last} > {first}), \
         queued AS (\
           INSERT INTO outbox (session_id, webhook_id, state, attempts, next_attempt_ms, \
             created_at_ms, updated_at_ms, session_seq) \
           SELECT $1, CASE WHEN f.generation <= 0 THEN $9::text \
             ELSE $9::text || '_' || (f.generation + 1) END, 'pending', 0, $10, $3, $3, f.seq \
           FROM f WHERE $9::text IS NOT NULL \
           ON CONFLICT (session_id) DO UPDATE SET \
             webhook_id = excluded.webhook_id, state = 'pending', attempts = 0, \
             next_attempt_ms = excluded.next_attempt_ms, last_error = NULL, claimed_by = NULL, \
             claim_until_ms = 0, created_at_ms = excluded.created_at_ms, \
             updated_at_ms = excluded.updated_at_ms) \
         SELECT seq FROM f"
    )
});

#[async_trait::async_trait]
impl crate::engine::Engine for PostgresStore {
    fn capabilities(&self) -> crate::engine::Capabilities {
        crate::engine::Capabilities {
            name: "postgres",
            several_processes: true,
            notify: true,
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.client().await?.execute("SELECT 1", &[]).await?;
        Ok(())
    }

    async fn schema_version(&self) -> Result<i64, StoreError> {
        read_version(&self.client().await?).await
    }

    async fn add_sessions(
        &self,
        batch: Vec<NewSession>,
        now: SystemTime,
        lease: Option<(String, SystemTime)>,
        replica: Option<String>,
    ) -> Result<Vec<Added>, StoreError> {
        let now = to_ms(now);
        let replica = replica.as_deref();
        let (owner, until) = match &lease {
            Some((owner, until)) => (Some(owner.as_str()), to_ms(*until)),
            None => (None, 0),
        };
        let oldest = now.saturating_sub(duration_ms(self.bounds.pending_max_age));
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // One adder at a time, so sequence numbers commit in order and paging skips nothing.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&ADD_LOCK])
            .await?;
        let insert = tx
            .prepare_cached(
                "INSERT INTO sessions (session_id, reference, state, added_at_ms, updated_at_ms, max_wait_ms, lease_owner, lease_until_ms) \
                 VALUES ($1, $2, 'tracking', $3, $3, $4, $5, $6) ON CONFLICT (session_id) DO NOTHING",
            )
            .await?;
        let take = tx
            .prepare_cached(
                "DELETE FROM pending_webhooks WHERE session_id = $1 AND received_at_ms >= $2 \
                 RETURNING hint, authenticated, received_at_ms",
            )
            .await?;
        let mut out = Vec::with_capacity(batch.len());
        for new in batch {
            let id = new.session_id.as_str();
            let max_wait = new.max_wait.map(duration_ms);
            let inserted = tx
                .execute(
                    &insert,
                    &[&id, &new.reference, &now, &max_wait, &owner, &until],
                )
                .await?;
            if inserted == 1 {
                let event = NewEvent::added(new.reference.as_deref(), new.max_wait);
                operations::append_event(&tx, id, now, replica, &event).await?;
            }
            let record = get_record(&tx, id)
                .await?
                .ok_or_else(|| StoreError::database(format!("session {id} vanished")))?;
            if inserted == 1 {
                let rows = tx.query(&take, &[&id, &oldest]).await?;
                let mut hints = Vec::with_capacity(rows.len());
                for row in &rows {
                    let text: String = col(row, 0)?;
                    let event = crate::shared::webhook_event(&text, col(row, 1)?, false);
                    operations::append_event(&tx, id, col(row, 2)?, replica, &event).await?;
                    hints.push(
                        serde_json::from_str(&text).map_err(|err| {
                            StoreError::Corrupt(format!("pending webhook: {err}"))
                        })?,
                    );
                }
                out.push(Added::Created {
                    record,
                    pending_webhooks: hints,
                });
            } else {
                out.push(Added::Existing(record));
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn get_session(&self, session: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        get_record(&self.client().await?, session.as_str()).await
    }

    async fn get_sessions(
        &self,
        sessions: Vec<SessionId>,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let client = self.client().await?;
        let ids: Vec<&str> = sessions.iter().map(SessionId::as_str).collect();
        let stmt = client
            .prepare(&format!(
                "SELECT {COLUMNS} FROM {FROM} WHERE s.session_id = ANY($1)"
            ))
            .await?;
        let mut found = Vec::with_capacity(sessions.len());
        for row in client.query(&stmt, &[&ids]).await? {
            found.push(raw(&row)?.into_record()?.1);
        }
        Ok(crate::shared::in_asked_order(&sessions, found))
    }

    async fn list_sessions(
        &self,
        filter: SessionFilter,
        limit: usize,
        after: Option<i64>,
    ) -> Result<Page, StoreError> {
        operations::list(&self.client().await?, &filter, limit, after).await
    }

    async fn tracking_sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT {COLUMNS} FROM {FROM} WHERE s.state = 'tracking' ORDER BY s.seq"),
                &[],
            )
            .await?;
        Ok(records(&rows)?.into_iter().map(|(_, r)| r).collect())
    }

    async fn count_sessions(&self) -> Result<StateCounts, StoreError> {
        // Sessions only: this runs at every lease renewal (the fleet's fair share).
        let client = self.client().await?;
        let rows = client
            .query("SELECT state, count(*) FROM sessions GROUP BY state", &[])
            .await?;
        let mut counts = StateCounts::default();
        for row in &rows {
            let state: String = col(row, 0)?;
            counts.add(&state, col(row, 1)?);
        }
        Ok(counts)
    }

    async fn cancel_session(
        &self,
        session: &SessionId,
        now: SystemTime,
        replica: Option<String>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let cancelled = tx
            .execute(
                "UPDATE sessions SET state = 'cancelled', updated_at_ms = $2, lease_owner = NULL, lease_until_ms = 0 \
                 WHERE session_id = $1 AND state = 'tracking'",
                &[&session.as_str(), &to_ms(now)],
            )
            .await?;
        if cancelled == 1 {
            let event = NewEvent::by("cancelled", "admin");
            operations::append_event(
                &tx,
                session.as_str(),
                to_ms(now),
                replica.as_deref(),
                &event,
            )
            .await?;
        }
        let record = get_record(&tx, session.as_str()).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn save_tracker_states(
        &self,
        states: Vec<(SessionId, serde_json::Value)>,
    ) -> Result<usize, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let stmt = tx
            .prepare_cached(
                "UPDATE sessions SET tracker_state = $2 WHERE session_id = $1 AND state = 'tracking'",
            )
            .await?;
        let mut saved = 0u64;
        for (id, state) in &states {
            saved += tx
                .execute(&stmt, &[&id.as_str(), &state.to_string()])
                .await?;
        }
        tx.commit().await?;
        Ok(usize::try_from(saved).unwrap_or(usize::MAX))
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
        let now = to_ms(now);
        let id = session.as_str();
        let client = self.client().await?;
        // One statement, so one round trip and its own transaction: the finish, the error
        // codes, the outcome's event numbered by the same row's bump (and the event that falls
        // out of the bounds), and the delivery. Six round trips (begin, four statements,
        // commit) cost three times a bare one-row commit.
        let finish = client.prepare_cached(&FINISH).await?;
        let event = facts.event.rendered();
        let finished = client
            .query_opt(
                &finish,
                &[
                    &id,
                    &outcome,
                    &now,
                    &facts.kind,
                    &facts.codes,
                    &event.kind,
                    &replica,
                    &event.body,
                    &webhook_id,
                    &first_attempt,
                ],
            )
            .await?;
        if finished.is_some() {
            return Ok(Finish::Finished);
        }
        let exists = client
            .query_opt("SELECT 1 FROM sessions WHERE session_id = $1", &[&id])
            .await?
            .is_some();
        Ok(if exists {
            Finish::NotTracking
        } else {
            Finish::Unknown
        })
    }

    async fn claim_sessions(
        &self,
        replica: &str,
        now: SystemTime,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let now = to_ms(now);
        let until = now.saturating_add(duration_ms(lease));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let stmt = tx
            .prepare_cached(&format!(
                "WITH picked AS ( \
                   SELECT seq, lease_owner AS old_owner FROM sessions WHERE state = 'tracking' AND lease_until_ms <= $3 \
                   ORDER BY lease_until_ms, seq LIMIT $4 FOR UPDATE SKIP LOCKED), \
                 claimed AS ( \
                   UPDATE sessions t SET lease_owner = $1, lease_until_ms = $2 FROM picked WHERE t.seq = picked.seq \
                   RETURNING t.*, picked.old_owner) \
                 SELECT {}, s.old_owner FROM claimed s LEFT JOIN outbox o ON o.session_id = s.session_id ORDER BY s.seq",
                COLUMNS
            ))
            .await?;
        let rows = tx.query(&stmt, &[&replica, &until, &now, &limit]).await?;
        // A session taken over from another replica (whose lease lapsed) says so.
        for row in &rows {
            let old: Option<String> = col(row, 17)?;
            let session: String = col(row, 1)?;
            if let Some(old) = old.filter(|old| old != replica) {
                let event = NewEvent::lease(Some(&old));
                operations::append_event(&tx, &session, now, Some(replica), &event).await?;
            }
        }
        tx.commit().await?;
        Ok(records(&rows)?.into_iter().map(|(_, r)| r).collect())
    }

    async fn renew_leases(
        &self,
        replica: &str,
        now: SystemTime,
        lease: Duration,
    ) -> Result<usize, StoreError> {
        let now = to_ms(now);
        let until = now.saturating_add(duration_ms(lease));
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let renewed = tx
            .execute(
                "UPDATE sessions SET lease_until_ms = $2 WHERE lease_owner = $1 AND state = 'tracking'",
                &[&replica, &until],
            )
            .await?;
        tx.execute(
            "INSERT INTO replicas (replica_id, started_at_ms, heartbeat_at_ms) VALUES ($1, $2, $2) \
             ON CONFLICT (replica_id) DO UPDATE SET heartbeat_at_ms = excluded.heartbeat_at_ms",
            &[&replica, &now],
        )
        .await?;
        tx.commit().await?;
        Ok(usize::try_from(renewed).unwrap_or(usize::MAX))
    }

    async fn release_leases(
        &self,
        replica: &str,
        claimable_from: SystemTime,
    ) -> Result<usize, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let released = tx
            .execute(
                "UPDATE sessions SET lease_owner = NULL, lease_until_ms = $2 WHERE lease_owner = $1 AND state = 'tracking'",
                &[&replica, &to_ms(claimable_from)],
            )
            .await?;
        tx.execute("DELETE FROM replicas WHERE replica_id = $1", &[&replica])
            .await?;
        tx.commit().await?;
        Ok(usize::try_from(released).unwrap_or(usize::MAX))
    }

    async fn release_sessions(
        &self,
        replica: &str,
        sessions: Vec<SessionId>,
        claimable_from: SystemTime,
    ) -> Result<usize, StoreError> {
        let ids: Vec<&str> = sessions.iter().map(SessionId::as_str).collect();
        let client = self.client().await?;
        let released = client
            .execute(
                "UPDATE sessions SET lease_owner = NULL, lease_until_ms = $3 \
                 WHERE session_id = ANY($1) AND lease_owner = $2 AND state = 'tracking'",
                &[&ids, &replica, &to_ms(claimable_from)],
            )
            .await?;
        Ok(usize::try_from(released).unwrap_or(usize::MAX))
    }

    async fn held_sessions(&self, replica: &str) -> Result<Vec<SessionId>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT session_id FROM sessions WHERE state = 'tracking' AND lease_owner = $1",
                &[&replica],
            )
            .await?;
        let ids = rows
            .iter()
            .map(|row| col(row, 0))
            .collect::<Result<Vec<String>, StoreError>>()?;
        crate::shared::session_ids(ids)
    }

    async fn release_all_leases(&self) -> Result<usize, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let released = tx
            .execute(
                "UPDATE sessions SET lease_owner = NULL, lease_until_ms = 0 WHERE state = 'tracking' AND lease_owner IS NOT NULL",
                &[],
            )
            .await?;
        tx.execute(
            "UPDATE outbox SET claimed_by = NULL, claim_until_ms = 0 WHERE claimed_by IS NOT NULL",
            &[],
        )
        .await?;
        tx.execute("DELETE FROM replicas", &[]).await?;
        tx.commit().await?;
        Ok(usize::try_from(released).unwrap_or(usize::MAX))
    }

    async fn replicas(&self, since: SystemTime) -> Result<Vec<ReplicaBeat>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT replica_id, started_at_ms, heartbeat_at_ms FROM replicas \
                 WHERE heartbeat_at_ms >= $1 ORDER BY replica_id",
                &[&to_ms(since)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ReplicaBeat {
                    id: col(row, 0)?,
                    started_at: from_ms(col(row, 1)?),
                    heartbeat_at: from_ms(col(row, 2)?),
                })
            })
            .collect()
    }

    async fn heartbeat(&self, replica: &str, now: SystemTime) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO replicas (replica_id, started_at_ms, heartbeat_at_ms) VALUES ($1, $2, $2) \
                 ON CONFLICT (replica_id) DO UPDATE SET heartbeat_at_ms = excluded.heartbeat_at_ms",
                &[&replica, &to_ms(now)],
            )
            .await?;
        Ok(())
    }

    async fn prune_webhooks(
        &self,
        before: SystemTime,
        replicas_before: SystemTime,
    ) -> Result<crate::shared::Pruned, StoreError> {
        let client = self.client().await?;
        let mut pruned = crate::shared::Pruned::default();
        loop {
            let mut n = client
                .execute(
                    "DELETE FROM accepted_webhooks WHERE dedupe_key IN ( \
                     SELECT dedupe_key FROM accepted_webhooks WHERE received_at_ms < $1 LIMIT $2)",
                    &[&to_ms(before), &PRUNE_BATCH],
                )
                .await?;
            if n == 0 {
                n = client
                    .execute(
                        "DELETE FROM accepted_webhooks WHERE dedupe_key IN ( \
                         SELECT dedupe_key FROM (SELECT dedupe_key, \
                         row_number() OVER w AS nth, sum(octet_length(event)) OVER w AS kept \
                         FROM accepted_webhooks WINDOW w AS (ORDER BY received_at_ms DESC, dedupe_key DESC)) AS t \
                         WHERE nth > $1 OR kept > $2 LIMIT $3)",
                        &[
                            &i64::try_from(self.bounds.dedupe_max_count).unwrap_or(i64::MAX),
                            &i64::try_from(self.bounds.dedupe_max_bytes).unwrap_or(i64::MAX),
                            &PRUNE_BATCH,
                        ],
                    )
                    .await?;
            }
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            pruned.dedupe += n;
            if n < usize::try_from(PRUNE_BATCH).unwrap_or(usize::MAX) {
                break;
            }
        }
        // Kept webhooks past their window go too.
        client
            .execute(
                "DELETE FROM pending_webhooks WHERE received_at_ms < $1",
                &[&to_ms(before)],
            )
            .await?;
        let replicas = client
            .execute(
                "DELETE FROM replicas WHERE heartbeat_at_ms < $1",
                &[&to_ms(replicas_before)],
            )
            .await?;
        pruned.replicas = usize::try_from(replicas).unwrap_or(usize::MAX);
        Ok(pruned)
    }

    async fn keep_pending_webhook(
        &self,
        session: &SessionId,
        hint: String,
        authenticated: bool,
        now: SystemTime,
    ) -> Result<usize, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let dropped = keep_pending(
            &tx,
            &self.bounds,
            session.as_str(),
            &hint,
            authenticated,
            to_ms(now),
        )
        .await?;
        tx.commit().await?;
        Ok(dropped)
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
        let now = to_ms(now);
        let id = session.as_ref().map(SessionId::as_str);
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let insert = tx
            .prepare_cached(
                "INSERT INTO accepted_webhooks (dedupe_key, received_at_ms, session_id, event) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (dedupe_key) DO NOTHING",
            )
            .await?;
        let inserted = tx
            .execute(&insert, &[&dedupe_key, &now, &id, &event])
            .await?;
        if let Some(id) = id {
            // On the named session's history (a session not added yet gets it at its add).
            let authenticated = matches!(
                route,
                Route::Hint {
                    authenticated: true
                }
            );
            let webhook = crate::history::NewEvent::webhook(
                event_name.as_deref(),
                authenticated,
                inserted == 0,
            );
            let origin = Some(origin.as_str()).filter(|o| !o.is_empty());
            operations::append_event(&tx, id, now, origin, &webhook).await?;
        }
        let fate = match (inserted, route, id) {
            (0, _, _) => WebhookFate::Duplicate,
            (_, Route::Hint { authenticated }, Some(id)) => {
                let state = tx
                    .query_opt("SELECT state FROM sessions WHERE session_id = $1", &[&id])
                    .await?
                    .map(|row| col::<String>(&row, 0))
                    .transpose()?;
                match state.as_deref() {
                    Some("tracking") => {
                        // Delivered to listeners at commit, and only if it commits.
                        tx.execute(
                            "SELECT pg_notify($1, current_schema() || E'\\n' || $2 || E'\\n' || $3)",
                            &[&NOTIFY_CHANNEL, &origin, &id],
                        )
                        .await?;
                        WebhookFate::Tracking
                    }
                    Some(_) => WebhookFate::Ended,
                    None => WebhookFate::Kept {
                        dropped: keep_pending(&tx, &self.bounds, id, &event, authenticated, now)
                            .await?,
                    },
                }
            }
            _ => WebhookFate::Recorded,
        };
        tx.commit().await?;
        Ok(fate)
    }

    async fn webhooks_of(
        &self,
        sessions: Vec<SessionId>,
    ) -> Result<Vec<StoredWebhook>, StoreError> {
        let ids: Vec<&str> = sessions.iter().map(SessionId::as_str).collect();
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT session_id, event FROM accepted_webhooks WHERE session_id = ANY($1) \
                 ORDER BY received_at_ms",
                &[&ids],
            )
            .await?;
        stored(&rows)
    }

    async fn leased_webhooks(
        &self,
        replica: String,
        since: SystemTime,
    ) -> Result<Vec<StoredWebhook>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT w.session_id, w.event FROM accepted_webhooks w \
                 JOIN sessions s ON s.session_id = w.session_id \
                 WHERE w.received_at_ms >= $2 AND s.state = 'tracking' AND s.lease_owner = $1 \
                 ORDER BY w.received_at_ms",
                &[&replica, &to_ms(since)],
            )
            .await?;
        stored(&rows)
    }

    fn listen_webhooks(&self, replica: String) -> Option<WebhookNotices> {
        let (notices, receiver) = mpsc::channel(NOTICE_QUEUE);
        let task = tokio::spawn(listen(
            std::sync::Arc::clone(&self.config),
            self.tls.clone(),
            replica,
            notices,
        ));
        Some(WebhookNotices::new(receiver, task))
    }

    async fn claim_deliveries(
        &self,
        worker: &str,
        now: SystemTime,
        claim_for: Duration,
        limit: usize,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let now = to_ms(now);
        let until = now.saturating_add(duration_ms(claim_for));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        if operations::paused(&client).await? {
            return Ok(Vec::new());
        }
        let stmt = client
            .prepare_cached(
                "UPDATE outbox SET claimed_by = $1, claim_until_ms = $2 WHERE session_id IN ( \
                 SELECT session_id FROM outbox WHERE state IN ('pending', 'failing') \
                 AND next_attempt_ms <= $3 AND claim_until_ms <= $3 ORDER BY next_attempt_ms LIMIT $4 \
                 FOR UPDATE SKIP LOCKED) \
                 RETURNING session_id, webhook_id, attempts",
            )
            .await?;
        let rows = client
            .query(&stmt, &[&worker, &until, &now, &limit])
            .await?;
        let claimed = rows
            .iter()
            .map(|row| Ok((col(row, 0)?, col(row, 1)?, col(row, 2)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        crate::shared::due_deliveries(claimed)
    }

    async fn deliveries_attempted(
        &self,
        results: Vec<(SessionId, crate::shared::Attempt, AttemptDetail)>,
        now: SystemTime,
        replica: Option<String>,
    ) -> Result<usize, StoreError> {
        let now = to_ms(now);
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let paused = operations::paused(&tx).await?;
        let mut changed = 0;
        let mut health = crate::shared::Health::default();
        for (session, result, detail) in &results {
            let recorded = operations::attempt_recorded(
                &tx,
                session.as_str(),
                result,
                detail,
                paused,
                now,
                replica.as_deref(),
            )
            .await?;
            // A failure while paused only released its claim: it does not count.
            if recorded && !(paused && *result != crate::shared::Attempt::Delivered) {
                health.record(result);
            }
            changed += usize::from(recorded);
        }
        operations::health_written(&tx, &health, now).await?;
        tx.commit().await?;
        Ok(changed)
    }

    async fn session_events(
        &self,
        session: &SessionId,
        after: i64,
        limit: usize,
    ) -> Result<Option<EventPage>, StoreError> {
        operations::events(&self.client().await?, session.as_str(), after, limit).await
    }

    async fn append_events(
        &self,
        events: Vec<(SessionId, NewEvent)>,
        now: SystemTime,
        replica: Option<String>,
    ) -> Result<usize, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut written = 0;
        for (session, event) in &events {
            let known = operations::append_event(
                &tx,
                session.as_str(),
                to_ms(now),
                replica.as_deref(),
                event,
            )
            .await?;
            written += usize::from(known);
        }
        tx.commit().await?;
        Ok(written)
    }

    async fn stats(&self, since: SystemTime) -> Result<Stats, StoreError> {
        operations::stats(&mut self.client().await?, since).await
    }

    async fn delivery_overview(&self) -> Result<DeliveryOverview, StoreError> {
        operations::overview(&mut self.client().await?).await
    }

    async fn set_delivery_paused(&self, paused: bool) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "UPDATE delivery_control SET paused = $1 WHERE id = 1",
                &[&paused],
            )
            .await?;
        Ok(())
    }

    async fn redeliver(
        &self,
        session: &SessionId,
        force: bool,
        webhook_base: String,
        now: SystemTime,
        replica: Option<String>,
    ) -> Result<Redelivery, StoreError> {
        let mut client = self.client().await?;
        operations::redeliver(
            &mut client,
            session.as_str(),
            force,
            &webhook_base,
            now,
            replica.as_deref(),
        )
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
        let mut client = self.client().await?;
        operations::recover(
            &mut client,
            since,
            until,
            &states,
            dry_run,
            now,
            replica.as_deref(),
        )
        .await
    }

    async fn retrack(
        &self,
        session: &SessionId,
        now: SystemTime,
        lease: Option<(String, SystemTime)>,
        replica: Option<String>,
    ) -> Result<Retrack, StoreError> {
        let mut client = self.client().await?;
        operations::retrack(
            &mut client,
            session.as_str(),
            now,
            lease,
            replica.as_deref(),
        )
        .await
    }

    async fn request_poll(
        &self,
        session: &SessionId,
        now: SystemTime,
        replica: Option<String>,
    ) -> Result<PollRequest, StoreError> {
        let mut client = self.client().await?;
        operations::request_poll(&mut client, session.as_str(), now, replica.as_deref()).await
    }

    async fn purge_session(&self, session: &SessionId) -> Result<Purge, StoreError> {
        operations::purge(&mut self.client().await?, session.as_str()).await
    }

    async fn prune_sessions(
        &self,
        before: SystemTime,
        batch: usize,
    ) -> Result<PrunedSessions, StoreError> {
        operations::prune(&mut self.client().await?, before, batch).await
    }
}

async fn read_version(client: &impl GenericClient) -> Result<i64, StoreError> {
    let exists = client
        .query_one("SELECT to_regclass('bankconnect_meta') IS NOT NULL", &[])
        .await?;
    if !col::<bool>(&exists, 0)? {
        return Ok(0);
    }
    let row = client
        .query_opt(
            "SELECT value FROM bankconnect_meta WHERE key = 'schema_version'",
            &[],
        )
        .await?;
    match row {
        None => Ok(0),
        Some(row) => {
            let text: String = col(&row, 0)?;
            text.parse()
                .map_err(|_| StoreError::Corrupt(format!("schema version {text:?}")))
        }
    }
}
