//! What every driver's client is configured with, as plain data: the API, the poll policy, the
//! client-wide limits and the jitter seed. A driver adds only its transport.

use crate::classify::{classify_progress, classify_update_webhook, WebhookUpdated};
use crate::ids::SessionId;
use crate::one_shot::{ApiCall, ClientError, OneShot};
use crate::policy::PollPolicy;
use crate::progress::ProgressReport;
use crate::request::Api;
use crate::request::WebhookRegistration;
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::session_status::{classify_session_status, SessionStatusReply};
use crate::tracker::PendingLimits;

/// A client's configuration, shared by the async and blocking drivers.
#[derive(Debug, Clone)]
#[allow(clippy::exhaustive_structs)] // plain settings with a builder; fields are public to read
pub struct ClientSettings {
    /// Where and as whom to call.
    pub api: Api,
    /// How sessions are polled and calls retried.
    pub policy: PollPolicy,
    /// Requests in flight, rate limit, 429 slow-down.
    pub limits: SchedulerConfig,
    /// The jitter seed (a driver picks one per process unless told).
    pub seed: u64,
    /// Bounds of the webhooks kept for sessions not (yet) tracked.
    pub pending: PendingLimits,
}

impl ClientSettings {
    /// Default policy and limits for `api`, with jitter from `seed`.
    pub fn new(api: Api, seed: u64) -> Self {
        Self {
            api,
            policy: PollPolicy::default(),
            limits: SchedulerConfig::default(),
            seed,
            pending: PendingLimits::default(),
        }
    }

    /// The retry state of one single call, after checking the policy.
    pub fn one_shot(&self) -> Result<OneShot, ClientError> {
        self.policy.validate()?;
        Ok(OneShot::new(self.policy.clone(), self.seed))
    }

    /// Sets the poll policy (validated when used).
    pub fn with_policy(mut self, policy: PollPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets the client-wide limits (requests in flight, rate limit).
    pub fn with_limits(mut self, limits: SchedulerConfig) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the jitter seed (for reproducible runs).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the bounds of webhooks kept for sessions not (yet) tracked.
    pub fn with_pending_limits(mut self, pending: PendingLimits) -> Self {
        self.pending = pending;
        self
    }

    /// A seed that differs between processes, from a wall-clock reading the caller makes.
    pub fn seed_from(wall: std::time::SystemTime) -> u64 {
        wall.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x5eed)
    }

    /// The call that registers the webhook URL.
    pub fn update_webhook_call(
        &self,
        registration: &WebhookRegistration,
    ) -> Result<ApiCall<WebhookUpdated>, ClientError> {
        let request = self.api.update_webhook_request(registration)?;
        Ok(ApiCall::new(
            request,
            classify_update_webhook,
            self.one_shot()?,
        ))
    }

    /// The call that reads one progress report.
    pub fn progress_call(
        &self,
        session: &SessionId,
    ) -> Result<ApiCall<ProgressReport>, ClientError> {
        let request = self.api.progress_request(session)?;
        Ok(ApiCall::new(request, classify_progress, self.one_shot()?))
    }

    /// The call that reads the accounts' verdicts (`NotYet` before processing ends).
    pub fn session_status_call(
        &self,
        session: &SessionId,
    ) -> Result<ApiCall<SessionStatusReply>, ClientError> {
        let request = self.api.session_status_request(session)?;
        Ok(ApiCall::new(
            request,
            classify_session_status,
            self.one_shot()?,
        ))
    }

    /// An empty scheduler for tracking sessions, after checking the policy and limits.
    pub fn scheduler(&self) -> Result<Scheduler, ClientError> {
        Ok(Scheduler::new(
            self.api.clone(),
            self.policy.clone(),
            self.limits.clone(),
            self.seed,
        )?)
    }
}
