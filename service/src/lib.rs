//! # bankconnect-service
//!
//! The BankConnect status service as a library: it takes sessions to track over HTTP, receives
//! FinBox's webhooks, polls as the backup, keeps everything in a durable store
//! ([`bankconnect_store`]: SQLite for one node, PostgreSQL for a fleet) and tells the lender's
//! back end when each session ends, by a signed, retried webhook of its own and by a query API.
//! `bankconnect serve` is this crate behind a thin command; a lender's own axum app can mount
//! the same router:
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! # let api = bankconnect_core::Api::new(
//! #     bankconnect_core::BaseUrl::production(),
//! #     bankconnect_core::Credentials::new("api-key", "server-hash")?,
//! # );
//! # let client = bankconnect_http_async::Client::new(api);
//! # let store = bankconnect_store::Store::open("sqlite:bankconnect.db").await?;
//! # let config = bankconnect_service::ServiceConfig::default();
//! let (service, tasks) = bankconnect_service::Service::start(config, store, client).await?;
//! let app: axum::Router = axum::Router::new().nest("/status", service.router());
//! # let _ = app;
//! tasks.shutdown(std::time::Duration::from_secs(10)).await;
//! # Ok(()) }
//! ```
//!
//! ## Inside
//! - the API and the intake ([`Service::router`]) commit to the store before any 2xx;
//! - the tracking task drives the async driver's tracker over the sessions this replica leases
//!   and never waits on the store: outcomes go to a commit worker behind a bounded queue;
//! - the coordinator renews leases and claims or hands back sessions as a pure fleet policy
//!   plans it;
//! - the delivery worker POSTs each finished record, signed per Standard Webhooks, retried on a
//!   [`DeliverySchedule`], with many attempts in flight;
//! - every change is written on the session's history in its own transaction, and retention
//!   prunes what is old in batches (docs/operations.md).
#![forbid(unsafe_code)]

mod actions;
mod api;
mod claim_pace;
mod commit;
mod config;
mod console;
mod coordinator;
mod delivery;
mod delivery_client;
mod delivery_schedule;
pub mod duration;
mod error;
mod fleet;
mod metrics;
mod outcome_schema;
mod record;
mod retention;
mod service;
mod single_process;
mod tracking;

// The public API: the service, its settings, and the wire types of its API.
pub use api::{
    AddAnswer, AddBody, BatchAnswer, BatchBody, CodeCountBody, DeleteAnswer, DeliveryCountsBody,
    DeliveryOverviewBody, EmptyBody, EventBody, EventsBody, FailureBody, NewSessionBody, PageBody,
    PollAskedBody, PurgedBody, RecoverBody, RecoverState, RecoveredBody, RedeliverBody,
    SessionCountsBody, StatsBody,
};
/// The bounded listener `serve` runs the router on (connection cap, head timeout, graceful
/// stop), for apps that want the same limits.
pub use bankconnect_webhook_verify::axum_handler::{serve_with as serve, ListenerLimits};
pub use config::{ConfigError, DeliveryConfig, ServiceConfig, DEFAULT_RETENTION};
pub use delivery_schedule::{DeliverySchedule, ScheduleError};
pub use error::{ErrorBody, ErrorDetailBody};
pub use record::{DeliveryBody, DeliveryStateBody, LeaseBody, RecordBody, StateBody};
pub use service::{Service, ServiceTasks, StartError};
pub use single_process::{LockError, SingleProcessLock};
