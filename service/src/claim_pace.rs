//! How many deliveries the worker keeps claimed ahead of those in flight. Pure: the worker
//! tells it what it started and when, and asks how much to claim.
//!
//! Too few ahead and attempts wait for the store: a claim waits behind the commit recording
//! the last results, and at thousands a second the attempts in flight run dry meanwhile (seen:
//! claims taking 5–23 ms while 512 claimed lasted 17 ms). Too many and, behind a slow
//! receiver, claims lapse before their turn (a claim holds 20 s and is not attempted in its
//! last 15). So what is kept ahead follows the recent pace: what is attempted in [`AHEAD`],
//! between [`MIN_AHEAD`] and [`MAX_AHEAD`].

use std::time::Duration;

/// How long the deliveries kept ahead should last at the recent pace: more than a claim's own
/// round trip under load (5-23 ms seen, most of it waiting for a record's commit).
pub(crate) const AHEAD: Duration = Duration::from_millis(50);
/// Fewest kept ahead: enough to refill every slot in flight once.
pub(crate) const MIN_AHEAD: usize = crate::delivery::MAX_IN_FLIGHT;
/// Most kept ahead (each holds the session's record in memory).
pub(crate) const MAX_AHEAD: usize = 2048;
/// What is kept ahead before any pace is known (the first claim after a start or a lull).
const FIRST_AHEAD: usize = 1024;

/// The recent pace of attempts and what it asks to keep claimed.
#[derive(Debug, Clone)]
pub(crate) struct ClaimPace {
    /// Attempts per second, smoothed; `None` until measured.
    rate: Option<f64>,
    /// Since when started attempts are counted; `None` until the first claim (after a start
    /// or a lull).
    since: Option<Duration>,
    started: u64,
}

impl ClaimPace {
    /// No pace known yet.
    pub(crate) fn new() -> Self {
        Self {
            rate: None,
            since: None,
            started: 0,
        }
    }

    /// `n` attempts started (what drains the claimed).
    pub(crate) fn handle_started(&mut self, n: usize) {
        self.started = self
            .started
            .saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// How many to keep claimed ahead at the pace measured so far.
    pub(crate) fn ahead(&self) -> usize {
        match self.rate {
            None => FIRST_AHEAD,
            Some(rate) => {
                let want = rate * AHEAD.as_secs_f64();
                if want.is_finite() && want > 0.0 {
                    // Bounded both ways: the float-to-int cast saturates.
                    (want.ceil() as usize).clamp(MIN_AHEAD, MAX_AHEAD)
                } else {
                    MIN_AHEAD
                }
            }
        }
    }

    /// With `ready` claimed and waiting at `now` (any monotonic clock's reading, as a
    /// duration since its start): how many to claim now, if any. A claim is made once fewer
    /// than [`ClaimPace::ahead`] wait, for twice that less what waits (so claims come in
    /// batches, not one per attempt finished), at most [`MAX_AHEAD`]. Each call that claims
    /// measures the pace since the last.
    pub(crate) fn poll_claim(&mut self, ready: usize, now: Duration) -> Option<usize> {
        if ready >= self.ahead() {
            return None;
        }
        match self.since {
            // The first claim: counting starts here.
            None => {
                self.since = Some(now);
                self.started = 0;
            }
            // Too short an interval measures nothing but noise.
            Some(since) if now.saturating_sub(since) >= Duration::from_millis(5) => {
                #[allow(clippy::cast_precision_loss)] // counts far below 2^52
                let measured = self.started as f64 / now.saturating_sub(since).as_secs_f64();
                self.rate = Some(match self.rate {
                    // Rising fast (a burst must not wait on the smoothing), falling by halves.
                    Some(rate) if measured < rate => (rate + measured) / 2.0,
                    _ => measured,
                });
                self.since = Some(now);
                self.started = 0;
            }
            Some(_) => {}
        }
        // At least one: a pace that just fell may ask for less than waits already.
        Some((2 * self.ahead()).saturating_sub(ready).clamp(1, MAX_AHEAD))
    }

    /// Nothing was due: the next burst starts from the first guess, not from a pace measured
    /// over a lull.
    pub(crate) fn handle_drained(&mut self) {
        *self = Self::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_first_claim_takes_the_first_guess_twice_over() {
        let mut pace = ClaimPace::new();
        assert_eq!(pace.poll_claim(0, ms(0)), Some(2 * FIRST_AHEAD));
        // Enough wait: nothing to claim.
        assert_eq!(pace.poll_claim(FIRST_AHEAD, ms(1)), None);
    }

    #[test]
    fn a_fast_receiver_gets_what_lasts_the_window_up_to_the_cap() {
        let mut pace = ClaimPace::new();
        pace.poll_claim(0, ms(0));
        // 30 000 a second: 1 500 in 50 ms.
        pace.handle_started(1500);
        let claimed = pace.poll_claim(100, ms(50)).expect("a claim");
        let ahead = (30_000.0 * AHEAD.as_secs_f64()).ceil() as usize;
        assert_eq!(pace.ahead(), ahead.min(MAX_AHEAD));
        assert_eq!(claimed, (2 * pace.ahead() - 100).min(MAX_AHEAD));
        // Far faster: capped.
        pace.handle_started(1_000_000);
        pace.poll_claim(0, ms(100));
        assert_eq!(pace.ahead(), MAX_AHEAD);
    }

    #[test]
    fn a_slow_receiver_keeps_few_ahead_so_claims_do_not_lapse() {
        let mut pace = ClaimPace::new();
        assert!(pace.poll_claim(0, ms(0)).is_some());
        // 64 in flight taking 15 s each: about 4 a second.
        for step in 1..=10u64 {
            pace.handle_started(4);
            pace.poll_claim(0, Duration::from_secs(step));
        }
        assert_eq!(pace.ahead(), MIN_AHEAD);
        // What is kept ahead is attempted well within a claim's 20 s at 4 a second... once
        // the slots in flight free up; never more than twice the floor.
        assert!(
            pace.poll_claim(0, Duration::from_secs(11))
                .expect("a claim")
                <= 2 * MIN_AHEAD
        );
    }

    #[test]
    fn the_pace_falls_by_halves_and_rises_at_once() {
        let mut pace = ClaimPace::new();
        pace.poll_claim(0, ms(0));
        pace.handle_started(2000);
        pace.poll_claim(0, ms(100)); // 20 000/s
        let high = pace.ahead();
        pace.handle_started(100);
        pace.poll_claim(0, ms(200)); // 1 000/s measured: (20 000 + 1 000) / 2
        let half = pace.ahead();
        assert!(half < high && half > high / 3, "{half} vs {high}");
        pace.handle_started(2000);
        pace.poll_claim(0, ms(300));
        assert_eq!(pace.ahead(), high);
    }

    #[test]
    fn an_interval_too_short_to_measure_keeps_the_pace() {
        let mut pace = ClaimPace::new();
        pace.poll_claim(0, ms(0));
        pace.handle_started(10);
        pace.poll_claim(0, ms(1));
        assert_eq!(pace.ahead(), FIRST_AHEAD);
    }

    #[test]
    fn a_lull_forgets_the_pace() {
        let mut pace = ClaimPace::new();
        pace.poll_claim(0, ms(0));
        pace.handle_started(4);
        pace.poll_claim(0, Duration::from_secs(1));
        assert_eq!(pace.ahead(), MIN_AHEAD);
        pace.handle_drained();
        assert_eq!(pace.ahead(), FIRST_AHEAD);
        // Woken after a minute of nothing: the first claim is the guess, not the lull's pace.
        assert_eq!(
            pace.poll_claim(0, Duration::from_secs(60)),
            Some(2 * FIRST_AHEAD)
        );
    }
}
