//! # bankconnect-sim
//!
//! A faithful local BankConnect server, for tests, demos and your own CI (FinBox documents no
//! sandbox). It serves the documented endpoints (`update_webhook`, `progress`, `session_status`)
//! with both credentials checked, runs scripted sessions (stages advancing per poll or over time,
//! statements and accounts failing with any code, deleted sessions, processing never requested),
//! injects faults (5xx, 429 with `Retry-After`, slow answers, truncated bodies, dropped
//! connections, HTML pages, garbage JSON), delivers ENRICHMENT_NOTIFICATION webhooks (optionally
//! signed, duplicated or delayed) and logs every request and delivery attempt, secrets masked.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use bankconnect_sim::{Scenario, SessionScript, SimConfig, Simulator};
//! let scenario = Scenario {
//!     sessions: vec![SessionScript::new("s-1").complete_after_polls(2)],
//!     ..Scenario::default()
//! };
//! let sim = Simulator::start(SimConfig { scenario, ..SimConfig::default() }).await?;
//! println!("listening on {}", sim.base_url()); // http://127.0.0.1:PORT/bank-connect/v1
//! // … point a client at it with API key "sim-api-key" and server hash "sim-server-hash".
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

// Private modules; the API is the re-exports below.
mod faults;
mod responses;
mod scenario;
mod server;
mod state;
mod webhook_delivery;

pub use faults::{FaultKind, FaultRates};
pub use scenario::{
    AccountScript, Scenario, ScenarioError, ScriptedFault, SessionScript, SessionWebhook, Stage,
    StatementScript, WebhookSettings, ACCOUNT_ERROR_MESSAGES, BUILTIN_SESSIONS_HELP,
};
pub use server::{
    SimConfig, SimError, Simulator, API_PREFIX, DEFAULT_API_KEY, DEFAULT_SERVER_HASH,
};
pub use state::{LoggedRequest, Registration, WebhookAttempt};
