//! Poll policies as validated plain data. A policy never reads a clock: every decision takes `now`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::jitter::JitterRng;

/// Why a policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A duration that must be positive is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// The backoff's maximum is below its initial delay.
    #[error("backoff max_ms must be at least initial_ms")]
    BackoffMaxBelowInitial,
    /// The multiplier is not a finite number of at least 1.
    #[error("backoff multiplier must be a finite number >= 1")]
    BadMultiplier,
    /// The jitter fraction is not within 0..=1.
    #[error("interval_jitter must be between 0 and 1")]
    BadJitter,
}

/// Capped exponential backoff with full jitter, for transient failures.
///
/// The n-th consecutive failure waits a uniformly random delay in `[0, min(max, initial × multiplierⁿ⁻¹)]`
/// (AWS's "full jitter"), and never less than the poll interval since the last request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(clippy::exhaustive_structs)] // plain data, built with `..Default::default()`
pub struct Backoff {
    /// The ceiling after the first failure (default 1 s).
    #[serde(rename = "initial_ms", with = "crate::duration_serde")]
    pub initial: Duration,
    /// The largest ceiling (default 30 s).
    #[serde(rename = "max_ms", with = "crate::duration_serde")]
    pub max: Duration,
    /// Growth per failure (default 2).
    pub multiplier: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            multiplier: 2.0,
        }
    }
}

impl Backoff {
    /// The ceiling for the `attempt`-th consecutive failure (1-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.initial.as_secs_f64() * self.multiplier.powi(exponent);
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(secs.max(0.0))
        }
    }

    /// A full-jitter delay for the `attempt`-th consecutive failure.
    pub fn delay(&self, attempt: u32, rng: &mut JitterRng) -> Duration {
        rng.up_to(self.ceiling(attempt))
    }
}

/// How one session is polled: interval, max wait, retries, grace. Defaults follow FinBox's docs.
///
/// ```
/// use std::time::Duration;
/// use bankconnect_core::PollPolicy;
/// let policy = PollPolicy { max_wait: Duration::from_secs(300), ..PollPolicy::default() };
/// policy.validate().unwrap();
/// assert_eq!(policy.interval, Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(clippy::exhaustive_structs)] // plain data, built with `..Default::default()`
pub struct PollPolicy {
    /// Least time between two polls of a session (default 2 s, FinBox's documented rate).
    #[serde(rename = "interval_ms", with = "crate::duration_serde")]
    pub interval: Duration,
    /// Extra random delay added to each interval, as a fraction of it (default 0.1), so that
    /// sessions added together drift apart instead of polling in lockstep. Never shortens it.
    pub interval_jitter: f64,
    /// How long to track a session before giving up with `timed_out` (default 15 minutes).
    #[serde(rename = "max_wait_ms", with = "crate::duration_serde")]
    pub max_wait: Duration,
    /// Backoff for transient failures (5xx, 429, timeouts, resets, unparsable 2xx).
    pub backoff: Backoff,
    /// Largest `Retry-After` honoured (default 60 s); longer requests are capped to it.
    #[serde(rename = "retry_after_cap_ms", with = "crate::duration_serde")]
    pub retry_after_cap: Duration,
    /// Consecutive transient failures tolerated; one more ends the session with
    /// `transport_error` naming the last cause (default 6: with the default backoff, about half
    /// a minute of failures on average).
    pub retry_budget: u32,
    /// Retries of a single call (`progress`, `status`, `webhook set`) before it gives up
    /// (default 3: a one-off command should answer within seconds).
    pub call_retry_budget: u32,
    /// How long PROCESSING_NOT_REQUESTED is polled like `processing` before it is final
    /// (default 0: final at once).
    #[serde(rename = "not_requested_grace_ms", with = "crate::duration_serde")]
    pub not_requested_grace: Duration,
    /// Least time between a webhook's confirming request and the request before it (default
    /// 1 s, or the interval if shorter). The one early request a webhook may cause.
    #[serde(rename = "webhook_confirm_spacing_ms", with = "crate::duration_serde")]
    pub webhook_confirm_spacing: Duration,
    /// After completion learnt by polling alone, fetch `session_status` once for the accounts'
    /// verdicts (default true).
    pub fetch_accounts: bool,
}

impl Default for PollPolicy {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(2),
            interval_jitter: 0.1,
            max_wait: Duration::from_secs(15 * 60),
            backoff: Backoff::default(),
            retry_after_cap: Duration::from_secs(60),
            retry_budget: 6,
            call_retry_budget: 3,
            not_requested_grace: Duration::ZERO,
            webhook_confirm_spacing: Duration::from_secs(1),
            fetch_accounts: true,
        }
    }
}

impl PollPolicy {
    /// Checks the policy's invariants.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.interval.is_zero() {
            return Err(PolicyError::Zero("interval"));
        }
        if self.max_wait.is_zero() {
            return Err(PolicyError::Zero("max_wait"));
        }
        if self.backoff.initial.is_zero() {
            return Err(PolicyError::Zero("backoff initial"));
        }
        if self.backoff.max < self.backoff.initial {
            return Err(PolicyError::BackoffMaxBelowInitial);
        }
        if !self.backoff.multiplier.is_finite() || self.backoff.multiplier < 1.0 {
            return Err(PolicyError::BadMultiplier);
        }
        if !(0.0..=1.0).contains(&self.interval_jitter) {
            return Err(PolicyError::BadJitter);
        }
        Ok(())
    }

    /// The delay before the next regular poll: the interval plus its jitter.
    pub fn next_interval(&self, rng: &mut JitterRng) -> Duration {
        let spread = self.interval.mul_f64(self.interval_jitter.clamp(0.0, 1.0));
        self.interval + rng.up_to(spread)
    }

    /// Least spacing before a webhook's confirming request.
    pub fn confirm_spacing(&self) -> Duration {
        self.webhook_confirm_spacing.min(self.interval)
    }

    /// A `Retry-After` capped by the policy.
    pub fn capped_retry_after(&self, retry_after: Duration) -> Duration {
        retry_after.min(self.retry_after_cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_documented_values_and_valid() {
        let policy = PollPolicy::default();
        policy.validate().unwrap();
        assert_eq!(policy.interval, Duration::from_secs(2));
        assert_eq!(policy.max_wait, Duration::from_secs(900));
        assert_eq!(policy.not_requested_grace, Duration::ZERO);
    }

    #[test]
    fn validation() {
        let bad = [
            PollPolicy {
                interval: Duration::ZERO,
                ..PollPolicy::default()
            },
            PollPolicy {
                max_wait: Duration::ZERO,
                ..PollPolicy::default()
            },
            PollPolicy {
                interval_jitter: 2.0,
                ..PollPolicy::default()
            },
            PollPolicy {
                backoff: Backoff {
                    multiplier: f64::NAN,
                    ..Backoff::default()
                },
                ..PollPolicy::default()
            },
            PollPolicy {
                backoff: Backoff {
                    max: Duration::from_millis(1),
                    ..Backoff::default()
                },
                ..PollPolicy::default()
            },
        ];
        for policy in bad {
            assert!(policy.validate().is_err(), "{policy:?}");
        }
    }

    #[test]
    fn backoff_ceiling_grows_and_caps() {
        let backoff = Backoff::default();
        assert_eq!(backoff.ceiling(1), Duration::from_secs(1));
        assert_eq!(backoff.ceiling(2), Duration::from_secs(2));
        assert_eq!(backoff.ceiling(5), Duration::from_secs(16));
        assert_eq!(backoff.ceiling(6), Duration::from_secs(30));
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(30));
        let mut rng = JitterRng::new(1);
        for attempt in 1..50 {
            assert!(backoff.delay(attempt, &mut rng) <= backoff.ceiling(attempt));
        }
    }

    #[test]
    fn serde_uses_milliseconds_and_defaults() {
        let policy: PollPolicy =
            serde_json::from_str(r#"{"interval_ms": 5000, "backoff": {"max_ms": 60000}}"#).unwrap();
        assert_eq!(policy.interval, Duration::from_secs(5));
        assert_eq!(policy.backoff.max, Duration::from_secs(60));
        assert_eq!(policy.max_wait, Duration::from_secs(900));
        assert!(serde_json::from_str::<PollPolicy>(r#"{"intervall_ms": 1}"#).is_err());
        let json = serde_json::to_value(PollPolicy::default()).unwrap();
        assert_eq!(json["interval_ms"], 2000);
    }
}
