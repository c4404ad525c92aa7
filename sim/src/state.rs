//! The simulator's shared state: scripted sessions as they advance, the registered webhook, and
//! the logs tests read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bankconnect_core::{Credentials, JitterRng};
use serde::Serialize;

use crate::faults::{FaultKind, FaultRates};
use crate::scenario::{Scenario, SessionScript, WebhookSettings, STAGES};

/// One API request as the simulator saw it. Secrets are masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LoggedRequest {
    /// Milliseconds since the simulator started.
    pub at_ms: u64,
    /// The method.
    pub method: String,
    /// The path.
    pub path: String,
    /// The session named in the path, if any.
    pub session_id: Option<String>,
    /// Every header, with `x-api-key` and `server-hash` masked.
    pub headers: Vec<(String, String)>,
    /// Whether both credentials were present and right.
    pub credentials_ok: bool,
    /// The status answered (`None` for a reset).
    pub status: Option<u16>,
    /// The fault injected, if any.
    pub fault: Option<FaultKind>,
}

impl LoggedRequest {
    /// The value of a header (masked for the secrets).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// One webhook delivery attempt and how the receiver answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WebhookAttempt {
    /// The session.
    pub session_id: String,
    /// Where it went.
    pub url: String,
    /// Milliseconds since the simulator started.
    pub at_ms: u64,
    /// Which delivery of this event (1, or 2 for a duplicate).
    pub delivery: u32,
    /// Which attempt of that delivery (1-based).
    pub attempt: u32,
    /// The receiver's status, if it answered.
    pub status: Option<u16>,
    /// The error, if it did not.
    pub error: Option<String>,
}

/// The webhook registered through `update_webhook`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Registration {
    /// The URL.
    pub webhook_url: String,
    /// 0: net banking only; 1: all sessions.
    pub webhook_mode: u8,
}

#[derive(Debug)]
pub(crate) struct SessionRuntime {
    pub(crate) script: SessionScript,
    /// API requests of any kind for this session (fault scripts count these).
    pub(crate) requests: u32,
    /// Progress requests answered with PROCESSING_NOT_REQUESTED.
    pub(crate) not_requested_answers: u32,
    /// Progress requests answered normally.
    pub(crate) polls: u32,
    pub(crate) first_request: Option<Instant>,
    pub(crate) completed: bool,
}

impl SessionRuntime {
    fn new(script: SessionScript) -> Self {
        Self {
            script,
            requests: 0,
            not_requested_answers: 0,
            polls: 0,
            first_request: None,
            completed: false,
        }
    }

    /// How many of the 4 stages are done at `now`.
    pub(crate) fn steps(&self, now: Instant) -> usize {
        if self.completed {
            return STAGES.len();
        }
        let by_polls = match (
            self.script.complete_after_polls,
            self.script.complete_after_ms,
        ) {
            (Some(polls), _) => Some(f64::from(self.polls) / f64::from(polls.max(1))),
            (None, None) => Some(f64::from(self.polls) / 3.0),
            (None, Some(_)) => None,
        };
        let by_time = match (self.script.complete_after_ms, self.first_request) {
            (Some(ms), Some(first)) => Some(
                now.saturating_duration_since(first).as_secs_f64() * 1000.0 / (ms.max(1) as f64),
            ),
            _ => None,
        };
        let fraction = by_polls.into_iter().chain(by_time).fold(0.0f64, f64::max);
        ((fraction * STAGES.len() as f64).floor() as usize).min(STAGES.len())
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) sessions: HashMap<String, SessionRuntime>,
    pub(crate) registration: Option<Registration>,
    pub(crate) log: Vec<LoggedRequest>,
    pub(crate) attempts: Vec<WebhookAttempt>,
    pub(crate) rng: JitterRng,
}

/// State shared by the handlers, the completion ticker and the webhook sender.
#[derive(Debug)]
pub(crate) struct SimState {
    pub(crate) credentials: Credentials,
    pub(crate) started: Instant,
    pub(crate) faults: FaultRates,
    pub(crate) webhooks: WebhookSettings,
    pub(crate) client: reqwest::Client,
    pub(crate) connections: std::sync::atomic::AtomicU64,
    inner: Mutex<Inner>,
}

impl SimState {
    pub(crate) fn new(scenario: Scenario, credentials: Credentials) -> Arc<Self> {
        let sessions = scenario
            .sessions
            .into_iter()
            .map(|script| (script.session_id.clone(), SessionRuntime::new(script)))
            .collect();
        let registration = scenario.webhook_url.map(|url| Registration {
            webhook_url: url,
            webhook_mode: 1,
        });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(scenario.webhooks.timeout_ms.max(1)))
            .build()
            .unwrap_or_default();
        Arc::new(Self {
            credentials,
            started: Instant::now(),
            faults: scenario.faults,
            webhooks: scenario.webhooks,
            client,
            connections: std::sync::atomic::AtomicU64::new(0),
            inner: Mutex::new(Inner {
                sessions,
                registration,
                log: Vec::new(),
                attempts: Vec::new(),
                rng: JitterRng::new(scenario.seed),
            }),
        })
    }

    /// The state, even if a handler panicked while holding it (the data stays consistent: every
    /// update is a single assignment or push).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn since_start(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn add_session(&self, script: SessionScript) {
        self.lock()
            .sessions
            .insert(script.session_id.clone(), SessionRuntime::new(script));
    }
}
