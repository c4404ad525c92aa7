//! Fault injection: what can go wrong with a response, per session or as a rate over all requests.

use serde::{Deserialize, Serialize};

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(clippy::exhaustive_enums)] // the simulator's own closed set
pub enum FaultKind {
    /// 503 with an HTML page.
    ServerError,
    /// 429 with `Retry-After`.
    RateLimited,
    /// The answer comes after `slow_ms`.
    Slow,
    /// The body stops half-way and the connection closes.
    Truncated,
    /// The connection is reset before any answer.
    Reset,
    /// 502 with a gateway's HTML error page.
    Html,
    /// 200 with a body that is not JSON.
    Garbage,
    /// 404 SESSION_NOT_FOUND, as if the session vanished (for scripting refusals mid-session).
    NotFound,
}

impl FaultKind {
    /// Every transient kind (the default draw; `NotFound` is for scripts only).
    pub const ALL: [FaultKind; 7] = [
        Self::ServerError,
        Self::RateLimited,
        Self::Slow,
        Self::Truncated,
        Self::Reset,
        Self::Html,
        Self::Garbage,
    ];

    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ServerError => "server_error",
            Self::RateLimited => "rate_limited",
            Self::Slow => "slow",
            Self::Truncated => "truncated",
            Self::Reset => "reset",
            Self::Html => "html",
            Self::Garbage => "garbage",
            Self::NotFound => "not_found",
        }
    }
}

/// Faults drawn at a rate over all API requests (with a seeded generator).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(clippy::exhaustive_structs)] // plain data, built with `..Default::default()`
pub struct FaultRates {
    /// Share of requests that get a fault, 0–1 (default 0).
    pub rate: f64,
    /// Which kinds to draw from, evenly (default all).
    pub kinds: Vec<FaultKind>,
    /// `Retry-After` seconds on 429s (default 1).
    pub retry_after_secs: u64,
    /// Delay of `slow` answers (default 3 000 ms).
    pub slow_ms: u64,
}

impl Default for FaultRates {
    fn default() -> Self {
        Self {
            rate: 0.0,
            kinds: FaultKind::ALL.to_vec(),
            retry_after_secs: 1,
            slow_ms: 3_000,
        }
    }
}
