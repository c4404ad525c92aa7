//! What every driver's client is configured with, as plain data: the API, the poll policy, the
//! client-wide limits and the jitter seed. A driver adds only its transport.

use crate::one_shot::{ClientError, OneShot};
use crate::policy::PollPolicy;
use crate::request::Api;
use crate::scheduler::{Scheduler, SchedulerConfig};

/// A client's configuration, shared by the async and blocking drivers.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Where and as whom to call.
    pub api: Api,
    /// How sessions are polled and calls retried.
    pub policy: PollPolicy,
    /// Requests in flight, rate limit, 429 slow-down.
    pub limits: SchedulerConfig,
    /// The jitter seed (a driver picks one per process unless told).
    pub seed: u64,
}

impl ClientSettings {
    /// Default policy and limits for `api`, with jitter from `seed`.
    pub fn new(api: Api, seed: u64) -> Self {
        Self {
            api,
            policy: PollPolicy::default(),
            limits: SchedulerConfig::default(),
            seed,
        }
    }

    /// The retry state of one single call, after checking the policy.
    pub fn one_shot(&self) -> Result<OneShot, ClientError> {
        self.policy.validate()?;
        Ok(OneShot::new(self.policy.clone(), self.seed))
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
