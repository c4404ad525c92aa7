//! A small seedable random source for jitter (SplitMix64): the core takes randomness as a seed,
//! never from the OS, so the same seed and inputs give the same decisions.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A deterministic pseudo-random generator. Not for secrets: only for spreading delays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JitterRng(u64);

impl JitterRng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator for one session: the shared seed mixed with the session ID (FNV-1a).
    pub fn for_session(seed: u64, session: &str) -> Self {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in session.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Self(seed ^ hash)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A duration drawn uniformly from `[0, bound]` (to the nanosecond).
    pub fn up_to(&mut self, bound: Duration) -> Duration {
        let nanos = bound.as_nanos().min(u128::from(u64::MAX));
        if nanos == 0 {
            return Duration::ZERO;
        }
        // Multiply-shift maps 64 random bits onto [0, nanos] without modulo bias worth noting.
        let scaled = (u128::from(self.next_u64()) * (nanos + 1)) >> 64;
        Duration::from_nanos(u64::try_from(scaled).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_bounded() {
        let mut a = JitterRng::for_session(7, "s1");
        let mut b = JitterRng::for_session(7, "s1");
        let mut c = JitterRng::for_session(7, "s2");
        let bound = Duration::from_millis(1500);
        let xs: Vec<_> = (0..100).map(|_| a.up_to(bound)).collect();
        let ys: Vec<_> = (0..100).map(|_| b.up_to(bound)).collect();
        let zs: Vec<_> = (0..100).map(|_| c.up_to(bound)).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        assert!(xs.iter().all(|d| *d <= bound));
        assert!(xs.iter().any(|d| *d > bound / 2) && xs.iter().any(|d| *d < bound / 2));
        assert_eq!(a.up_to(Duration::ZERO), Duration::ZERO);
    }
}
