//! The store's façade: one type over the engine a URL names (`crate::engine::Engine`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bankconnect_core::SessionId;

use crate::engine::{Capabilities, Engine};
use crate::history::{AttemptDetail, EventPage, NewEvent, OutcomeFacts};
use crate::model::DeliveryState;
use crate::model::{
    decode_cursor, Added, DueDelivery, Finish, NewSession, Page, ReplicaBeat, Route, SessionRecord,
    SessionState, StoredWebhook, WebhookFate,
};
use crate::notices::WebhookNotices;
use crate::operations::{
    DeliveryOverview, PollRequest, PrunedSessions, Purge, Recovered, Redelivery, Retrack,
    SessionFilter, Stats,
};
use crate::postgres::PostgresStore;
use crate::shared::{Attempt, Bounds, Pruned, StateCounts};
use crate::sqlite::SqliteStore;
use crate::url::StoreUrl;
use crate::StoreError;

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
    engine: Arc<dyn Engine>,
    /// The replica writing, named on the history events it writes.
    replica: Option<Arc<str>>,
}

/// Calls the engine's method of the same name.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        $self.engine.$method($($arg),*).await
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
        let engine: Arc<dyn Engine> = match StoreUrl::parse(url)? {
            StoreUrl::Sqlite(path) => {
                let mut store = SqliteStore::open(path).await?;
                store.set_bounds(bounds);
                Arc::new(store)
            }
            StoreUrl::Postgres(url) => {
                let mut store = PostgresStore::open(&url).await?;
                store.set_bounds(bounds);
                Arc::new(store)
            }
        };
        Ok(Self {
            engine,
            replica: None,
        })
    }

    /// The same store, naming `replica` on the history events it writes.
    pub fn with_replica(&self, replica: &str) -> Self {
        Self {
            engine: Arc::clone(&self.engine),
            replica: Some(Arc::from(replica)),
        }
    }

    fn replica(&self) -> Option<String> {
        self.replica.as_deref().map(str::to_owned)
    }

    /// What this store's engine can do (several processes, notices), as it declares.
    pub fn capabilities(&self) -> Capabilities {
        self.engine.capabilities()
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn engine(&self) -> &'static str {
        self.engine.capabilities().name
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
            .ok_or_else(|| StoreError::database("an add returned nothing"))
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
        dispatch!(self.add_sessions(batch, now, None, self.replica()))
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
        dispatch!(self.add_sessions(
            batch,
            now,
            Some((replica.to_owned(), until)),
            Some(replica.to_owned())
        ))
    }

    /// One session's record.
    pub async fn get_session(
        &self,
        session: &SessionId,
    ) -> Result<Option<SessionRecord>, StoreError> {
        dispatch!(self.get_session(session))
    }

    /// The records of these sessions (those known), in the order asked and each once, in one
    /// round on the store.
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
        self.list_filtered(SessionFilter::in_state(state), limit, cursor)
            .await
    }

    /// A page of the sessions `filter` selects, in its order, after `cursor` (from the
    /// previous page of the same order).
    pub async fn list_filtered(
        &self,
        filter: SessionFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, StoreError> {
        if limit == 0 {
            return Err(StoreError::Invalid("limit must be at least 1".into()));
        }
        let after = cursor
            .map(|cursor| decode_cursor(cursor, filter.order))
            .transpose()?;
        dispatch!(self.list_sessions(filter, limit, after))
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
        dispatch!(self.cancel_session(session, now, self.replica()))
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
        dispatch!(self.finish_session(
            session,
            outcome.to_string(),
            OutcomeFacts::of(outcome),
            webhook_id,
            now,
            now,
            self.replica()
        ))
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
            OutcomeFacts::of(outcome),
            Some(webhook_id),
            first_attempt,
            now,
            self.replica()
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
        Ok(self
            .replicas(since)
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect())
    }

    /// Replicas whose heartbeat is at or after `since`, with their times, by id.
    pub async fn replicas(&self, since: SystemTime) -> Result<Vec<ReplicaBeat>, StoreError> {
        dispatch!(self.replicas(since))
    }

    /// Records `replica`'s heartbeat alone (its leases unchanged): cheap whatever it holds.
    pub async fn heartbeat(&self, replica: &str, now: SystemTime) -> Result<(), StoreError> {
        dispatch!(self.heartbeat(replica, now))
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
        let (key, session, event_text) =
            (dedupe_key.to_owned(), session.cloned(), event.to_string());
        // Read here, from the value at hand, for the history's `webhook` event.
        let name = event
            .get("event_name")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        dispatch!(self.accept_webhook(
            key,
            session,
            event_text,
            route,
            name,
            origin.to_owned(),
            now
        ))
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
        self.engine.listen_webhooks(replica.to_owned())
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

    /// [`Store::claim_deliveries`] with each claimed delivery's record (`None`: it could not be
    /// read), in one round where the engine can (SQLite: one statement).
    pub async fn claim_deliveries_with_records(
        &self,
        worker: &str,
        now: SystemTime,
        claim_for: Duration,
        limit: usize,
    ) -> Result<Vec<(DueDelivery, Option<SessionRecord>)>, StoreError> {
        dispatch!(self.claim_deliveries_with_records(worker, now, claim_for, limit))
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
        let results = results
            .into_iter()
            .map(|(session, attempt)| (session, attempt, AttemptDetail::default()))
            .collect();
        self.record_attempts(results, now).await
    }

    /// As [`Store::deliveries_attempted`], with what each attempt saw, for its history
    /// (`delivery_attempt`, then `delivered` or `given_up`, in the same transaction). While
    /// delivery is paused a failure only releases its claim: it is not counted.
    pub async fn record_attempts(
        &self,
        results: Vec<(SessionId, Attempt, AttemptDetail)>,
        now: SystemTime,
    ) -> Result<usize, StoreError> {
        if results.is_empty() {
            return Ok(0);
        }
        dispatch!(self.deliveries_attempted(results, now, self.replica()))
    }

    /// A page of a session's history, oldest first, after `cursor`; `None` for an unknown
    /// session.
    pub async fn session_events(
        &self,
        session: &SessionId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Option<EventPage>, StoreError> {
        if limit == 0 {
            return Err(StoreError::Invalid("limit must be at least 1".into()));
        }
        let after = cursor
            .map(crate::history::decode_cursor)
            .transpose()?
            .unwrap_or(0);
        dispatch!(self.session_events(session, after, limit))
    }

    /// Appends events the service saw (progress, API errors) to their sessions' histories,
    /// in one transaction; returns how many sessions were known.
    pub async fn append_events(
        &self,
        events: Vec<(SessionId, NewEvent)>,
        now: SystemTime,
    ) -> Result<usize, StoreError> {
        if events.is_empty() {
            return Ok(0);
        }
        dispatch!(self.append_events(events, now, self.replica()))
    }

    /// The store-wide counts, with outcomes and error codes counted since `since`.
    pub async fn stats(&self, since: SystemTime) -> Result<Stats, StoreError> {
        dispatch!(self.stats(since))
    }

    /// The delivery switch and the deliveries' health.
    pub async fn delivery_overview(&self) -> Result<DeliveryOverview, StoreError> {
        dispatch!(self.delivery_overview())
    }

    /// Pauses (or resumes) delivery for every process sharing the store: while paused no
    /// delivery is claimed and none is counted.
    pub async fn set_delivery_paused(&self, paused: bool) -> Result<(), StoreError> {
        dispatch!(self.set_delivery_paused(paused))
    }

    /// Makes a finished session's delivery pending again, due `now`, with the same
    /// `webhook-id` (a session finished with no delivery gets its first one, its id from
    /// `webhook_base`). A delivered one only when `force`d.
    pub async fn redeliver(
        &self,
        session: &SessionId,
        force: bool,
        webhook_base: &str,
        now: SystemTime,
    ) -> Result<Redelivery, StoreError> {
        dispatch!(self.redeliver(session, force, webhook_base.to_owned(), now, self.replica()))
    }

    /// Requeues, in one transaction, every delivery in `states` whose outcome was committed in
    /// `[since, until)`; a `dry_run` only counts them.
    pub async fn recover_deliveries(
        &self,
        since: SystemTime,
        until: SystemTime,
        states: &[DeliveryState],
        dry_run: bool,
        now: SystemTime,
    ) -> Result<Recovered, StoreError> {
        dispatch!(self.recover_deliveries(
            since,
            until,
            states.to_vec(),
            dry_run,
            now,
            self.replica()
        ))
    }

    /// Tracks a finished or cancelled session again (its max wait counting from `now`),
    /// leased to `lease`'s replica when given; its old delivery goes, its history stays, and
    /// its next outcome is delivered with a new `webhook-id`.
    pub async fn retrack(
        &self,
        session: &SessionId,
        now: SystemTime,
        lease: Option<(&str, SystemTime)>,
    ) -> Result<Retrack, StoreError> {
        let lease = lease.map(|(owner, until)| (owner.to_owned(), until));
        dispatch!(self.retrack(session, now, lease, self.replica()))
    }

    /// Records an operator's request to poll a tracking session now; on an engine that
    /// [`Capabilities::notify`]s, the replica holding it hears of it as of a webhook.
    pub async fn request_poll(
        &self,
        session: &SessionId,
        now: SystemTime,
    ) -> Result<PollRequest, StoreError> {
        dispatch!(self.request_poll(session, now, self.replica()))
    }

    /// Deletes a finished or cancelled session now, with its history, delivery and webhooks.
    pub async fn purge_session(&self, session: &SessionId) -> Result<Purge, StoreError> {
        dispatch!(self.purge_session(session))
    }

    /// One batch of retention: deletes up to `batch` finished or cancelled sessions unchanged
    /// since `before` whose delivery is none, delivered or given up (never one tracking or
    /// still to deliver), with their history. On a shared store one process prunes at a time
    /// (the others are told `skipped`).
    pub async fn prune_sessions(
        &self,
        before: SystemTime,
        batch: usize,
    ) -> Result<PrunedSessions, StoreError> {
        if batch == 0 {
            return Err(StoreError::Invalid("a batch is at least 1".into()));
        }
        dispatch!(self.prune_sessions(before, batch))
    }
}
