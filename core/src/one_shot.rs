//! A single call with the policy's transient-error retries (`bankconnect progress`, `status`,
//! `webhook set`): the retry decisions, sans-IO, shared by every driver.

use std::time::Duration;

use crate::classify::{ApiError, Classified, HttpResult, TransientFailure};
use crate::jitter::JitterRng;
use crate::policy::PollPolicy;

/// Why a single call failed for good.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The API refused.
    #[error("{0}")]
    Api(ApiError),
    /// Transient failures past the retry budget; the last one.
    #[error("gave up after {attempts} attempts: {last}")]
    Transient {
        /// The last failure.
        last: TransientFailure,
        /// Attempts made.
        attempts: u32,
    },
}

/// What to do after an attempt.
#[derive(Debug)]
#[allow(clippy::exhaustive_enums)] // closed: retry or done
pub enum Retry<T> {
    /// Finished: the value or the final error.
    Done(Result<T, CallError>),
    /// Try again after this delay.
    After(Duration),
}

/// Retry state of one call: full-jitter backoff, capped `Retry-After`, the retry budget.
#[derive(Debug, Clone)]
pub struct OneShot {
    policy: PollPolicy,
    attempts: u32,
    rng: JitterRng,
}

impl OneShot {
    /// A call under `policy`, with jitter from `seed`.
    pub fn new(policy: PollPolicy, seed: u64) -> Self {
        Self {
            policy,
            attempts: 0,
            rng: JitterRng::new(seed),
        }
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Takes an attempt's classified result and says what next.
    pub fn handle<T>(&mut self, result: Classified<T>) -> Retry<T> {
        self.attempts = self.attempts.saturating_add(1);
        match result {
            Classified::Ok(value) => Retry::Done(Ok(value)),
            Classified::Api(err) => Retry::Done(Err(CallError::Api(err))),
            Classified::Transient(failure) => {
                if self.attempts > self.policy.call_retry_budget {
                    return Retry::Done(Err(CallError::Transient {
                        last: failure,
                        attempts: self.attempts,
                    }));
                }
                let delay = match failure.retry_after() {
                    Some(asked) => self.policy.capped_retry_after(asked),
                    None => self.policy.backoff.delay(self.attempts, &mut self.rng),
                };
                Retry::After(delay)
            }
        }
    }
}

/// One API call with the policy's retries, sans-IO: send [`ApiCall::request`], feed the result
/// to [`ApiCall::handle`], and sleep or stop as it says. Both drivers' single calls are this loop.
#[derive(Debug)]
pub struct ApiCall<T> {
    request: http::Request<Vec<u8>>,
    classify: fn(HttpResult) -> Classified<T>,
    retry: OneShot,
}

impl<T> ApiCall<T> {
    /// A call of `request`, classified by `classify`, retried as `retry` decides.
    pub fn new(
        request: http::Request<Vec<u8>>,
        classify: fn(HttpResult) -> Classified<T>,
        retry: OneShot,
    ) -> Self {
        Self {
            request,
            classify,
            retry,
        }
    }

    /// A fresh copy of the request to send for the next attempt.
    pub fn request(&self) -> http::Request<Vec<u8>> {
        let mut copy = http::Request::new(self.request.body().clone());
        *copy.method_mut() = self.request.method().clone();
        *copy.uri_mut() = self.request.uri().clone();
        *copy.version_mut() = self.request.version();
        *copy.headers_mut() = self.request.headers().clone();
        copy
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.retry.attempts()
    }

    /// Takes an attempt's result and says what next.
    pub fn handle(&mut self, result: HttpResult) -> Retry<T> {
        self.retry.handle((self.classify)(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport_error::{TransportError, TransportErrorKind};

    fn transient() -> Classified<u8> {
        Classified::Transient(TransientFailure::Transport(TransportError::new(
            TransportErrorKind::Reset,
            "reset",
        )))
    }

    #[test]
    fn retries_up_to_the_budget() {
        let policy = PollPolicy {
            call_retry_budget: 2,
            ..PollPolicy::default()
        };
        let mut call = OneShot::new(policy, 1);
        assert!(matches!(call.handle(transient()), Retry::After(d) if d <= Duration::from_secs(1)));
        assert!(matches!(call.handle(transient()), Retry::After(d) if d <= Duration::from_secs(2)));
        assert!(matches!(
            call.handle(transient()),
            Retry::Done(Err(CallError::Transient { attempts: 3, .. }))
        ));
        let mut call = OneShot::new(PollPolicy::default(), 1);
        assert!(matches!(
            call.handle(Classified::Ok(7u8)),
            Retry::Done(Ok(7))
        ));
        let rate_limited: Classified<u8> = Classified::Transient(TransientFailure::RateLimited {
            retry_after: Some(Duration::from_secs(900)),
        });
        assert!(
            matches!(call.handle(rate_limited), Retry::After(d) if d == Duration::from_secs(60))
        );
    }
}

/// Why a driver's call failed: the one error type both drivers return.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The API refused, or transient failures outlasted the retry budget.
    #[error(transparent)]
    Call(#[from] CallError),
    /// A request could not be built.
    #[error(transparent)]
    Request(#[from] crate::request::RequestError),
    /// A session could not be tracked.
    #[error(transparent)]
    Track(#[from] crate::session::TrackError),
    /// The policy or limits are invalid.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    /// The tracker stopped before the session ended (its event channel closed).
    #[error("tracking stopped before session {0} ended")]
    Stopped(crate::ids::SessionId),
}
