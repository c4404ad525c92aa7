//! Client-wide protection of the API and the caller's quota: a token bucket (an optional global
//! request rate) and an AIMD window that halves the requests in flight on every 429 and grows back
//! one request per window of successes, plus a pause honouring the 429's `Retry-After`.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::policy::PollPolicy;

/// A global request-rate limit across all sessions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(clippy::exhaustive_structs)] // plain data, built with `..Default::default()`
pub struct RateLimit {
    /// Sustained requests per second (> 0).
    pub per_second: f64,
    /// Requests that may go at once after a quiet period (≥ 1).
    pub burst: u32,
}

/// A token bucket over virtual time.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    refilled_at: Option<Instant>,
}

impl TokenBucket {
    pub(crate) fn new(limit: &RateLimit) -> Self {
        let burst = f64::from(limit.burst.max(1));
        Self {
            per_second: limit.per_second,
            burst,
            tokens: burst,
            refilled_at: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        if let Some(at) = self.refilled_at {
            let earned = now.saturating_duration_since(at).as_secs_f64() * self.per_second;
            self.tokens = (self.tokens + earned).min(self.burst);
        }
        self.refilled_at = Some(self.refilled_at.map_or(now, |at| at.max(now)));
    }

    /// When one token will be available (now if it already is).
    pub(crate) fn ready_at(&mut self, now: Instant) -> Instant {
        self.refill(now);
        if self.tokens >= 1.0 {
            now
        } else {
            let wait = (1.0 - self.tokens) / self.per_second;
            now + Duration::from_secs_f64(wait.clamp(0.0, 86_400.0))
        }
    }

    pub(crate) fn take(&mut self, now: Instant) {
        self.refill(now);
        self.tokens -= 1.0;
    }
}

/// The adaptive slow-down: an AIMD limit on requests in flight and a pause after a 429.
#[derive(Debug, Clone)]
pub(crate) struct Adaptive {
    max: f64,
    window: f64,
    paused_until: Option<Instant>,
    rate_limited_in_row: u32,
}

impl Adaptive {
    pub(crate) fn new(max_in_flight: usize) -> Self {
        let max = max_in_flight.max(1) as f64;
        Self {
            max,
            window: max,
            paused_until: None,
            rate_limited_in_row: 0,
        }
    }

    /// How many requests may be in flight now.
    pub(crate) fn window(&self) -> usize {
        // The window is within [1, max], so the cast cannot truncate meaningfully.
        self.window.floor().max(1.0) as usize
    }

    pub(crate) fn paused_until(&self) -> Option<Instant> {
        self.paused_until
    }

    /// A 429: halve the window and pause everyone. The pause starts at the backoff's first
    /// ceiling and doubles with each 429 in a row, never beyond the (capped) `Retry-After`: an
    /// isolated 429 costs the client a moment, a sustained one stops it as long as the server asks.
    /// (The session that got the 429 waits the whole `Retry-After` itself.)
    pub(crate) fn on_rate_limited(
        &mut self,
        now: Instant,
        retry_after: Option<Duration>,
        policy: &PollPolicy,
    ) {
        self.rate_limited_in_row = self.rate_limited_in_row.saturating_add(1);
        self.window = (self.window / 2.0).max(1.0);
        let escalation = policy.backoff.ceiling(self.rate_limited_in_row);
        let pause = match retry_after {
            Some(asked) => policy.capped_retry_after(asked).min(escalation),
            None => escalation,
        };
        let until = now + pause;
        self.paused_until = Some(self.paused_until.map_or(until, |at| at.max(until)));
    }

    /// Any answer that is not a 429: grow the window by one per window of answers.
    pub(crate) fn on_answer(&mut self) {
        self.rate_limited_in_row = 0;
        self.window = (self.window + 1.0 / self.window).min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(&RateLimit {
            per_second: 10.0,
            burst: 3,
        });
        for _ in 0..3 {
            assert_eq!(bucket.ready_at(t0), t0);
            bucket.take(t0);
        }
        let next = bucket.ready_at(t0);
        assert!(next > t0 && next <= t0 + Duration::from_millis(101));
        assert_eq!(bucket.ready_at(next), next);
    }

    #[test]
    fn aimd_halves_and_recovers_gradually() {
        let t0 = Instant::now();
        let policy = PollPolicy::default();
        let mut adaptive = Adaptive::new(32);
        // An isolated 429: a short pause (the backoff's first ceiling, 1 s), half the window.
        adaptive.on_rate_limited(t0, Some(Duration::from_secs(5)), &policy);
        assert_eq!(adaptive.window(), 16);
        assert_eq!(adaptive.paused_until(), Some(t0 + Duration::from_secs(1)));
        // In a row, the pause doubles up to what the server asks (capped at 60 s).
        adaptive.on_rate_limited(t0, Some(Duration::from_secs(500)), &policy);
        assert_eq!(adaptive.window(), 8);
        assert_eq!(adaptive.paused_until(), Some(t0 + Duration::from_secs(2)));
        for _ in 0..10 {
            adaptive.on_rate_limited(t0, Some(Duration::from_secs(500)), &policy);
        }
        assert_eq!(
            adaptive.paused_until(),
            Some(t0 + Duration::from_secs(30)),
            "the backoff's cap"
        );
        adaptive.on_rate_limited(t0, Some(Duration::from_secs(3)), &policy);
        assert_eq!(
            adaptive.paused_until(),
            Some(t0 + Duration::from_secs(30)),
            "never shortened"
        );
        assert_eq!(adaptive.window(), 1);
        for _ in 0..3 {
            adaptive.on_answer();
        }
        assert_eq!(adaptive.window(), 2, "answers add about one per window");
        for _ in 0..2000 {
            adaptive.on_answer();
        }
        assert_eq!(adaptive.window(), 32);
    }
}
