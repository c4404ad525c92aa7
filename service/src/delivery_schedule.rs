//! When to (re)attempt a delivery of a finished session to the lender's back end: a list of
//! delays with a jitter fraction, as validated plain data. Pure: the caller passes the attempts
//! made and a seeded [`JitterRng`], and adds the delay to its own clock.

use std::time::Duration;

use bankconnect_core::JitterRng;

/// Most delays a schedule may hold.
pub(crate) const MAX_ATTEMPTS: usize = 64;

/// Why a [`DeliverySchedule`] is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// No delays, or more than 64.
    #[error("a delivery schedule holds 1 to {MAX_ATTEMPTS} delays")]
    Length,
    /// The jitter fraction is not within 0..=1.
    #[error("delivery jitter must be between 0 and 1")]
    BadJitter,
}

/// Delays before each delivery attempt: the first entry before the first attempt (counted from
/// when the session finished), entry *i* before attempt *i + 1* (counted from the failure
/// before it). After the last attempt fails, the delivery is given up.
///
/// Each delay but the first is spread by ±`jitter` (a fraction), so that a back end coming back
/// is not hit by every retry at once.
///
/// ```
/// use std::time::Duration;
/// use bankconnect_core::JitterRng;
/// use bankconnect_service::DeliverySchedule;
///
/// let schedule = DeliverySchedule::new(vec![Duration::ZERO, Duration::from_secs(5)])?;
/// let mut rng = JitterRng::new(7);
/// assert_eq!(schedule.first_delay(), Duration::ZERO);
/// let retry = schedule.retry_after(1, &mut rng).expect("one retry left");
/// assert!(retry >= Duration::from_secs(4) && retry <= Duration::from_secs(6));
/// assert_eq!(schedule.retry_after(2, &mut rng), None); // given up
/// # Ok::<(), bankconnect_service::ScheduleError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DeliverySchedule {
    /// The delays, one per attempt.
    pub delays: Vec<Duration>,
    /// The spread of each retry delay, as a fraction of it (default 0.2: ±20 %).
    pub jitter: f64,
}

impl Default for DeliverySchedule {
    /// `0s, 5s, 5m, 30m, 2h, 5h, 10h, 10h` (Standard Webhooks' suggested schedule), ±20 %.
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        Self {
            delays: vec![
                Duration::ZERO,
                Duration::from_secs(5),
                minutes(5),
                minutes(30),
                minutes(120),
                minutes(300),
                minutes(600),
                minutes(600),
            ],
            jitter: 0.2,
        }
    }
}

impl DeliverySchedule {
    /// A schedule of these delays with the default jitter, validated.
    pub fn new(delays: Vec<Duration>) -> Result<Self, ScheduleError> {
        let schedule = Self {
            delays,
            ..Self::default()
        };
        schedule.validate()?;
        Ok(schedule)
    }

    /// Parses a comma-separated list of delays as people type them (`0s,5s,5m,30m`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let delays = text
            .split(',')
            .map(|part| crate::duration::parse_duration(part.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(delays).map_err(|err| format!("{err} (comma-separated)"))
    }

    /// The same schedule with another jitter fraction, validated.
    pub fn with_jitter(mut self, jitter: f64) -> Result<Self, ScheduleError> {
        self.jitter = jitter;
        self.validate()?;
        Ok(self)
    }

    /// Checks the bounds (1 to 64 delays, jitter within 0..=1).
    pub fn validate(&self) -> Result<(), ScheduleError> {
        if self.delays.is_empty() || self.delays.len() > MAX_ATTEMPTS {
            return Err(ScheduleError::Length);
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(ScheduleError::BadJitter);
        }
        Ok(())
    }

    /// The delay of the first attempt after the session finished (not jittered: it is usually
    /// zero, and a delivery should not wait at random for its first try).
    pub fn first_delay(&self) -> Duration {
        self.delays.first().copied().unwrap_or_default()
    }

    /// The delay before the next attempt after `attempts_made` failed ones, jittered; `None`
    /// when the schedule is spent and the delivery is given up.
    pub fn retry_after(&self, attempts_made: u64, rng: &mut JitterRng) -> Option<Duration> {
        let next = usize::try_from(attempts_made).ok()?;
        let delay = *self.delays.get(next)?;
        let low = delay.mul_f64(1.0 - self.jitter);
        Some(low + rng.up_to(delay.mul_f64(2.0 * self.jitter)))
    }

    /// How many attempts the schedule allows in all.
    pub fn attempts(&self) -> usize {
        self.delays.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn retries_follow_the_delays_within_the_jitter_then_give_up() {
        let schedule = DeliverySchedule::new(vec![secs(0), secs(10), secs(100)]).unwrap();
        let mut rng = JitterRng::new(42);
        assert_eq!(schedule.first_delay(), Duration::ZERO);
        for _ in 0..1000 {
            let first = schedule.retry_after(1, &mut rng).unwrap();
            assert!(first >= secs(8) && first <= secs(12), "{first:?}");
            let second = schedule.retry_after(2, &mut rng).unwrap();
            assert!(second >= secs(80) && second <= secs(120), "{second:?}");
        }
        assert_eq!(schedule.retry_after(3, &mut rng), None);
        assert_eq!(schedule.retry_after(u64::MAX, &mut rng), None);
        assert_eq!(schedule.attempts(), 3);
    }

    #[test]
    fn the_jitter_spreads_retries_and_zero_jitter_is_exact() {
        let schedule = DeliverySchedule::new(vec![secs(0), secs(10)]).unwrap();
        let mut rng = JitterRng::new(1);
        let spread: std::collections::HashSet<_> = (0..50)
            .map(|_| schedule.retry_after(1, &mut rng).unwrap())
            .collect();
        assert!(spread.len() > 10, "jittered: {spread:?}");
        let exact = schedule.with_jitter(0.0).unwrap();
        assert_eq!(exact.retry_after(1, &mut rng), Some(secs(10)));
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        let schedule = DeliverySchedule::default();
        let run = |seed| {
            let mut rng = JitterRng::new(seed);
            (1..8)
                .map(|n| schedule.retry_after(n, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
    }

    #[test]
    fn bad_schedules_are_refused() {
        assert_eq!(DeliverySchedule::new(vec![]), Err(ScheduleError::Length));
        assert_eq!(
            DeliverySchedule::new(vec![secs(1); MAX_ATTEMPTS + 1]),
            Err(ScheduleError::Length)
        );
        for jitter in [-0.1, 1.5, f64::NAN] {
            assert_eq!(
                DeliverySchedule::default().with_jitter(jitter),
                Err(ScheduleError::BadJitter)
            );
        }
        assert!(DeliverySchedule::default().validate().is_ok());
    }
}
