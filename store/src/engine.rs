//! The interface every engine implements, and what each declares it can do (River's driver
//! shape): the façade [`crate::Store`] calls only this, so the engines cannot drift apart in
//! what they offer, and the service asks capabilities instead of engine names.

use std::time::{Duration, SystemTime};

use bankconnect_core::SessionId;

use crate::history::{AttemptDetail, EventPage, NewEvent};
use crate::model::{
    Added, DeliveryState, DueDelivery, Finish, NewSession, Page, ReplicaBeat, Route, SessionRecord,
    StoredWebhook, WebhookFate,
};
use crate::notices::WebhookNotices;
use crate::operations::{
    DeliveryOverview, PollRequest, PrunedSessions, Purge, Recovered, Redelivery, Retrack,
    SessionFilter, Stats,
};
use crate::shared::{Attempt, Pruned, StateCounts};
use crate::StoreError;

/// What an engine can do, declared by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// The engine's name in logs and `/readyz`: `sqlite` or `postgres`.
    pub name: &'static str,
    /// Several processes may share the store (a fleet); otherwise one process owns it, and
    /// may take back at start whatever a crashed predecessor held.
    pub several_processes: bool,
    /// Accepted webhooks are announced to the other processes at commit
    /// ([`crate::Store::listen_webhooks`]).
    pub notify: bool,
}

/// One engine's operations, with the façade's semantics (documented on [`crate::Store`]).
// A finish carries the outcome, what is derived from it, its delivery and the times: each an
// argument, as the façade documents them.
#[allow(clippy::too_many_arguments)]
#[async_trait::async_trait]
pub(crate) trait Engine: Send + Sync + std::fmt::Debug {
    /// What this engine can do.
    fn capabilities(&self) -> Capabilities;

    /// Notices of webhooks accepted by others, for an engine that [`Capabilities::notify`]s.
    fn listen_webhooks(&self, _replica: String) -> Option<WebhookNotices> {
        None
    }

    async fn ping(&self) -> Result<(), StoreError>;
    async fn schema_version(&self) -> Result<i64, StoreError>;
    async fn add_sessions(
        &self,
        batch: Vec<NewSession>,
        now: SystemTime,
        lease: Option<(String, SystemTime)>,
        replica: Option<String>,
    ) -> Result<Vec<Added>, StoreError>;
    async fn get_session(&self, session: &SessionId) -> Result<Option<SessionRecord>, StoreError>;
    async fn get_sessions(
        &self,
        sessions: Vec<SessionId>,
    ) -> Result<Vec<SessionRecord>, StoreError>;
    async fn list_sessions(
        &self,
        filter: SessionFilter,
        limit: usize,
        after: Option<i64>,
    ) -> Result<Page, StoreError>;
    async fn tracking_sessions(&self) -> Result<Vec<SessionRecord>, StoreError>;
    async fn count_sessions(&self) -> Result<StateCounts, StoreError>;
    async fn cancel_session(
        &self,
        session: &SessionId,
        now: SystemTime,
        replica: Option<String>,
    ) -> Result<Option<SessionRecord>, StoreError>;
    async fn save_tracker_states(
        &self,
        states: Vec<(SessionId, serde_json::Value)>,
    ) -> Result<usize, StoreError>;
    async fn finish_session(
        &self,
        session: &SessionId,
        outcome: String,
        facts: crate::history::OutcomeFacts,
        webhook_id: Option<String>,
        first_attempt: SystemTime,
        now: SystemTime,
        replica: Option<String>,
    ) -> Result<Finish, StoreError>;
    async fn claim_sessions(
        &self,
        replica: &str,
        now: SystemTime,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<SessionRecord>, StoreError>;
    async fn renew_leases(
        &self,
        replica: &str,
        now: SystemTime,
        lease: Duration,
    ) -> Result<usize, StoreError>;
    async fn release_leases(
        &self,
        replica: &str,
        claimable_from: SystemTime,
    ) -> Result<usize, StoreError>;
    async fn release_sessions(
        &self,
        replica: &str,
        sessions: Vec<SessionId>,
        claimable_from: SystemTime,
    ) -> Result<usize, StoreError>;
    async fn held_sessions(&self, replica: &str) -> Result<Vec<SessionId>, StoreError>;
    async fn release_all_leases(&self) -> Result<usize, StoreError>;
    async fn replicas(&self, since: SystemTime) -> Result<Vec<ReplicaBeat>, StoreError>;
    async fn heartbeat(&self, replica: &str, now: SystemTime) -> Result<(), StoreError>;
    async fn prune_webhooks(
        &self,
        before: SystemTime,
        replicas_before: SystemTime,
    ) -> Result<Pruned, StoreError>;
    async fn keep_pending_webhook(
        &self,
        session: &SessionId,
        hint: String,
        authenticated: bool,
        now: SystemTime,
    ) -> Result<usize, StoreError>;
    async fn accept_webhook(
        &self,
        dedupe_key: String,
        session: Option<SessionId>,
        event: String,
        route: Route,
        event_name: Option<String>,
        origin: String,
        now: SystemTime,
    ) -> Result<WebhookFate, StoreError>;
    async fn webhooks_of(&self, sessions: Vec<SessionId>)
        -> Result<Vec<StoredWebhook>, StoreError>;
    async fn leased_webhooks(
        &self,
        replica: String,
        since: SystemTime,
    ) -> Result<Vec<StoredWebhook>, StoreError>;
    async fn claim_deliveries(
        &self,
        worker: &str,
        now: SystemTime,
        claim_for: Duration,
        limit: usize,
    ) -> Result<Vec<DueDelivery>, StoreError>;
    /// [`Engine::claim_deliveries`] with each claimed delivery's record (`None`: it could not
    /// be read), in one round where the engine can.
    async fn claim_deliveries_with_records(
        &self,
        worker: &str,
        now: SystemTime,
        claim_for: Duration,
        limit: usize,
    ) -> Result<Vec<(DueDelivery, Option<SessionRecord>)>, StoreError> {
        let due = self.claim_deliveries(worker, now, claim_for, limit).await?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let ids = due.iter().map(|d| d.session_id.clone()).collect();
        let records = self.get_sessions(ids).await?;
        Ok(crate::shared::paired(due, records))
    }
    async fn deliveries_attempted(
        &self,
        results: Vec<(SessionId, Attempt, AttemptDetail)>,
        now: SystemTime,
        replica: Option<String>,
    ) -> Result<usize, StoreError>;

    // Operations (docs/operations.md).
    async fn session_events(
        &self,
        session: &SessionId,
        after: i64,
        limit: usize,
    ) -> Result<Option<EventPage>, StoreError>;
    async fn append_events(
        &self,
        events: Vec<(SessionId, NewEvent)>,
        now: SystemTime,
        replica: Option<String>,
    ) -> Result<usize, StoreError>;
    async fn stats(&self, since: SystemTime) -> Result<Stats, StoreError>;
    async fn delivery_overview(&self) -> Result<DeliveryOverview, StoreError>;
    async fn set_delivery_paused(&self, paused: bool) -> Result<(), StoreError>;
    async fn redeliver(
        &self,
        session: &SessionId,
        force: bool,
        webhook_base: String,
        now: SystemTime,
        replica: Option<String>,
    ) -> Result<Redelivery, StoreError>;
    async fn recover_deliveries(
        &self,
        since: SystemTime,
        until: SystemTime,
        states: Vec<DeliveryState>,
        dry_run: bool,
        now: SystemTime,
        replica: Option<String>,
    ) -> Result<Recovered, StoreError>;
    async fn retrack(
        &self,
        session: &SessionId,
        now: SystemTime,
        lease: Option<(String, SystemTime)>,
        replica: Option<String>,
    ) -> Result<Retrack, StoreError>;
    async fn request_poll(
        &self,
        session: &SessionId,
        now: SystemTime,
        replica: Option<String>,
    ) -> Result<PollRequest, StoreError>;
    async fn purge_session(&self, session: &SessionId) -> Result<Purge, StoreError>;
    async fn prune_sessions(
        &self,
        before: SystemTime,
        batch: usize,
    ) -> Result<PrunedSessions, StoreError>;
}
