//! The store interface: one type over both backends, chosen by URL.

use std::time::{Duration, SystemTime};

use bankconnect_core::SessionId;

use crate::model::{
    decode_cursor, encode_cursor, Added, DueDelivery, Finish, NewSession, Page, Route,
    SessionRecord, SessionState, StoredWebhook, WebhookFate,
};
use crate::notices::WebhookNotices;
use crate::postgres::PostgresStore;
use crate::sqlite::SqliteStore;
use crate::url::StoreUrl;
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
    /// Most dedupe records kept by [`Store::prune_webhooks`]; the oldest go first (default
    /// 100 000).
    pub dedupe_max_count: usize,
    /// Most bytes of dedupe records (their events) kept by [`Store::prune_webhooks`] (default
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

/// What [`Store::prune_webhooks`] removed.
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

pub(crate) fn page(mut rows: Vec<(i64, SessionRecord)>, limit: i64) -> Page {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = if more {
        rows.last().map(|(seq, _)| encode_cursor(*seq))
    } else {
        None
    };
    Page {
        sessions: rows.into_iter().map(|(_, record)| record).collect(),
        next_cursor,
    }
}

pub(crate) fn due_deliveries(
    rows: Vec<(String, String, i64)>,
) -> Result<Vec<DueDelivery>, StoreError> {
    rows.into_iter()
        .map(|(session, webhook_id, attempts)| {
            Ok(DueDelivery {
                session_id: SessionId::new(&session)
                    .map_err(|err| StoreError::Corrupt(format!("outbox session id: {err}")))?,
                webhook_id,
                attempts: u32::try_from(attempts).unwrap_or(0),
            })
        })
        .collect()
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

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

/// The durable store: sessions, accepted webhooks, pending webhooks, leases and the delivery
/// outbox, on SQLite or PostgreSQL with the same semantics. Cheap to clone (a handle).
///
/// Every time is passed in (`now`), so behaviour is reproducible in tests.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::SystemTime;
/// use bankconnect_core::SessionId;
/// use bankconnect_store::{NewSession, Store};
///
/// let store = Store::open("sqlite:bankconnect.db").await?;
/// let added = store.add_session(NewSession::new(SessionId::new("s-1")?), SystemTime::now()).await?;
/// assert!(added.is_created());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

/// Calls the same method on whichever backend.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match &$self.backend {
            Backend::Sqlite(store) => store.$method($($arg),*).await,
            Backend::Postgres(store) => store.$method($($arg),*).await,
        }
    };
}

impl Store {
    /// Opens the store a URL names (`sqlite:PATH` or `postgres://…`) with default bounds,
    /// running migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, Bounds::default()).await
    }

    /// Opens the store with pending-webhook bounds of your own.
    pub async fn open_with(url: &str, bounds: Bounds) -> Result<Self, StoreError> {
        if bounds.pending_max_count == 0
            || bounds.pending_max_bytes == 0
            || bounds.dedupe_max_count == 0
            || bounds.dedupe_max_bytes == 0
        {
            return Err(StoreError::Invalid("every bound must be at least 1".into()));
        }
        let backend = match StoreUrl::parse(url)? {
            StoreUrl::Sqlite(path) => {
                let mut store = SqliteStore::open(path).await?;
                store.set_bounds(bounds);
                Backend::Sqlite(store)
            }
            StoreUrl::Postgres(url) => {
                let mut store = PostgresStore::open(&url).await?;
                store.set_bounds(bounds);
                Backend::Postgres(store)
            }
        };
        Ok(Self { backend })
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn engine(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self.ping())
    }

    /// The schema version recorded in the database.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        dispatch!(self.schema_version())
    }

    /// Adds one session; idempotent (a known id returns its record unchanged).
    pub async fn add_session(
        &self,
        session: NewSession,
        now: SystemTime,
    ) -> Result<Added, StoreError> {
        let mut added = self.add_sessions(vec![session], now).await?;
        added
            .pop()
            .ok_or_else(|| StoreError::Database("an add returned nothing".into()))
    }

    /// Adds a batch in one transaction: all committed or none. Each known id returns its
    /// record unchanged; each new one takes the webhooks kept for it.
    pub async fn add_sessions(
        &self,
        batch: Vec<NewSession>,
        now: SystemTime,
    ) -> Result<Vec<Added>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        dispatch!(self.add_sessions(batch, now, None))
    }

    /// As [`Store::add_sessions`], with each new session leased to `replica` until `until` in
    /// the same transaction: the process that takes a session polls it at once, without a
    /// second commit to claim it. Known sessions keep their lease.
    pub async fn add_sessions_leased(
        &self,
        batch: Vec<NewSession>,
        now: SystemTime,
        replica: &str,
        until: SystemTime,
    ) -> Result<Vec<Added>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        dispatch!(self.add_sessions(batch, now, Some((replica.to_owned(), until))))
    }

    /// One session's record.
    pub async fn get_session(
        &self,
        session: &SessionId,
    ) -> Result<Option<SessionRecord>, StoreError> {
        dispatch!(self.get_session(session))
    }

    /// The records of these sessions (those known), in one round on the store.
    pub async fn get_sessions(
        &self,
        sessions: Vec<SessionId>,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        dispatch!(self.get_sessions(sessions))
    }

    /// A page of sessions in `state` (`None`: every state), in the order they were added,
    /// after `cursor` (from the previous page). A row added while paging appears once, on a
    /// later page; none is skipped.
    pub async fn list_sessions(
        &self,
        state: Option<SessionState>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, StoreError> {
        if limit == 0 {
            return Err(StoreError::Invalid("limit must be at least 1".into()));
        }
        let after = cursor.map(decode_cursor).transpose()?.unwrap_or(0);
        dispatch!(self.list_sessions(state, limit, after))
    }

    /// Every tracking session, in the order added (to load a tracker at start).
    pub async fn tracking_sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        dispatch!(self.tracking_sessions())
    }

    /// Sessions per state.
    pub async fn count_sessions(&self) -> Result<StateCounts, StoreError> {
        dispatch!(self.count_sessions())
    }

    /// Cancels a tracking session (no outcome, no delivery). Returns the record as it now
    /// stands (unchanged if it was not tracking), `None` if unknown.
    pub async fn cancel_session(
        &self,
        session: &SessionId,
        now: SystemTime,
    ) -> Result<Option<SessionRecord>, StoreError> {
        dispatch!(self.cancel_session(session, now))
    }

    /// Saves tracking sessions' resumable state, in one transaction; returns how many were saved.
    pub async fn save_tracker_states(
        &self,
        states: Vec<(SessionId, serde_json::Value)>,
    ) -> Result<usize, StoreError> {
        dispatch!(self.save_tracker_states(states))
    }

    /// Finishes a tracking session with its outcome and, when `webhook_id` is given, enqueues
    /// its delivery: both in one transaction.
    pub async fn finish_session(
        &self,
        session: &SessionId,
        outcome: &serde_json::Value,
        webhook_id: Option<String>,
        now: SystemTime,
    ) -> Result<Finish, StoreError> {
        dispatch!(self.finish_session(session, outcome.to_string(), webhook_id, now, now))
    }

    /// As [`Store::finish_session`], with the delivery's first attempt due at `first_attempt`.
    pub async fn finish_session_delivering_at(
        &self,
        session: &SessionId,
        outcome: &serde_json::Value,
        webhook_id: String,
        first_attempt: SystemTime,
        now: SystemTime,
    ) -> Result<Finish, StoreError> {
        dispatch!(self.finish_session(
            session,
            outcome.to_string(),
            Some(webhook_id),
            first_attempt,
            now
        ))
    }

    /// Takes leases on up to `limit` tracking sessions that no live replica holds (never held,
    /// released, or lapsed), for `lease`. Returns the sessions taken.
    pub async fn claim_sessions(
        &self,
        replica: &str,
        now: SystemTime,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        dispatch!(self.claim_sessions(replica, now, lease, limit))
    }

    /// Extends every lease `replica` still holds and records its heartbeat; returns how many.
    pub async fn renew_leases(
        &self,
        replica: &str,
        now: SystemTime,
        lease: Duration,
    ) -> Result<usize, StoreError> {
        dispatch!(self.renew_leases(replica, now, lease))
    }

    /// Frees `replica`'s leases on these sessions (to hand them to less busy replicas), for
    /// others to claim from `claimable_from` on: a releasing replica passes `now` plus its poll
    /// interval, so that no session is polled by two replicas within one interval.
    pub async fn release_sessions(
        &self,
        replica: &str,
        sessions: Vec<SessionId>,
        claimable_from: SystemTime,
    ) -> Result<usize, StoreError> {
        dispatch!(self.release_sessions(replica, sessions, claimable_from))
    }

    /// The tracking sessions `replica` holds a lease on (a replica compares them with what it
    /// polls, and stops polling what another replica took over).
    pub async fn held_sessions(&self, replica: &str) -> Result<Vec<SessionId>, StoreError> {
        dispatch!(self.held_sessions(replica))
    }

    /// Frees every lease `replica` holds at once (graceful shutdown), for others to claim from
    /// `claimable_from` on (as [`Store::release_sessions`]); returns how many.
    pub async fn release_leases(
        &self,
        replica: &str,
        claimable_from: SystemTime,
    ) -> Result<usize, StoreError> {
        dispatch!(self.release_leases(replica, claimable_from))
    }

    /// Frees every lease and delivery claim, whoever holds it, and forgets every heartbeat.
    /// For a store only one process uses (SQLite: one node), so that a process restarted after
    /// a crash takes its sessions and deliveries back at once instead of waiting for its old
    /// claims to lapse. Returns how many leases were freed.
    pub async fn release_all_leases(&self) -> Result<usize, StoreError> {
        dispatch!(self.release_all_leases())
    }

    /// Replicas whose heartbeat is at or after `since`.
    pub async fn live_replicas(&self, since: SystemTime) -> Result<Vec<String>, StoreError> {
        dispatch!(self.live_replicas(since))
    }

    /// Records an accepted webhook by its dedupe key: `true` the first time across every
    /// process sharing the store, `false` for a duplicate. [`Store::accept_webhook`] with
    /// [`Route::RecordOnly`].
    pub async fn record_webhook(
        &self,
        dedupe_key: &str,
        session: Option<&SessionId>,
        event: &serde_json::Value,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let fate = self
            .accept_webhook(dedupe_key, session, event, Route::RecordOnly, "", now)
            .await?;
        Ok(fate != WebhookFate::Duplicate)
    }

    /// Accepts a webhook in one transaction: records it by its dedupe key (once across every
    /// process sharing the store), then, for a [`Route::Hint`] naming a session, finds where that
    /// session stands and keeps the webhook for it if it is not added yet. On PostgreSQL a
    /// webhook for a tracking session notifies every listener ([`Store::listen_webhooks`]) at
    /// commit, tagged with `origin` (the accepting process) so that it can skip its own.
    pub async fn accept_webhook(
        &self,
        dedupe_key: &str,
        session: Option<&SessionId>,
        event: &serde_json::Value,
        route: Route,
        origin: &str,
        now: SystemTime,
    ) -> Result<WebhookFate, StoreError> {
        let (key, session, event) = (dedupe_key.to_owned(), session.cloned(), event.to_string());
        match &self.backend {
            Backend::Sqlite(store) => store.accept_webhook(key, session, event, route, now).await,
            Backend::Postgres(store) => {
                store
                    .accept_webhook(key, session, event, route, origin.to_owned(), now)
                    .await
            }
        }
    }

    /// The accepted webhooks of these sessions, oldest first (fed to a tracker when it takes
    /// the sessions over, so that a webhook accepted anywhere keeps its effect).
    pub async fn webhooks_of(
        &self,
        sessions: &[SessionId],
    ) -> Result<Vec<StoredWebhook>, StoreError> {
        dispatch!(self.webhooks_of(sessions.to_vec()))
    }

    /// The webhooks accepted since `since` for tracking sessions `replica` holds: the fallback
    /// for a notification missed while the listening connection was down.
    pub async fn leased_webhooks(
        &self,
        replica: &str,
        since: SystemTime,
    ) -> Result<Vec<StoredWebhook>, StoreError> {
        dispatch!(self.leased_webhooks(replica.to_owned(), since))
    }

    /// Listens for webhooks accepted for tracking sessions by other processes (PostgreSQL
    /// `LISTEN`/`NOTIFY`, on a connection of its own that reconnects by itself); `None` on
    /// SQLite, where one process does everything. Must be called within a tokio runtime.
    pub fn listen_webhooks(&self, replica: &str) -> Option<WebhookNotices> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(store) => Some(store.listen_webhooks(replica.to_owned())),
        }
    }

    /// Forgets the dedupe records of webhooks received before `before` (their window is over)
    /// and the oldest beyond the bounds' count and bytes, and the heartbeats of replicas not
    /// seen since `replicas_before`. In batches of at most 5 000 rows per statement, so that
    /// no write waits long behind it; returns what went.
    pub async fn prune_webhooks(
        &self,
        before: SystemTime,
        replicas_before: SystemTime,
    ) -> Result<Pruned, StoreError> {
        dispatch!(self.prune_webhooks(before, replicas_before))
    }

    /// Keeps a webhook for a session not added yet (one per session; an unauthenticated one
    /// never replaces an authenticated one). Returns how many fell out of the bounds.
    pub async fn keep_pending_webhook(
        &self,
        session: &SessionId,
        hint: &serde_json::Value,
        authenticated: bool,
        now: SystemTime,
    ) -> Result<usize, StoreError> {
        dispatch!(self.keep_pending_webhook(session, hint.to_string(), authenticated, now))
    }

    /// Hands up to `limit` due deliveries to `worker`, each to one worker at a time, for
    /// `claim_for` (after which another worker may take it).
    pub async fn claim_deliveries(
        &self,
        worker: &str,
        now: SystemTime,
        claim_for: Duration,
        limit: usize,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        dispatch!(self.claim_deliveries(worker, now, claim_for, limit))
    }

    /// Records a delivery attempt's result; `false` if the delivery was not pending or failing.
    pub async fn delivery_attempted(
        &self,
        session: &SessionId,
        attempt: Attempt,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let recorded = self
            .deliveries_attempted(vec![(session.clone(), attempt)], now)
            .await?;
        Ok(recorded == 1)
    }

    /// Records the results of many delivery attempts in one transaction; returns how many
    /// deliveries were pending or failing (the others are left as they are).
    pub async fn deliveries_attempted(
        &self,
        results: Vec<(SessionId, Attempt)>,
        now: SystemTime,
    ) -> Result<usize, StoreError> {
        if results.is_empty() {
            return Ok(0);
        }
        dispatch!(self.deliveries_attempted(results, now))
    }
}
