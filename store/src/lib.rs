//! # bankconnect-store
//!
//! The durable store under `bankconnect serve`: tracked sessions and their outcomes, accepted
//! webhooks (dedupe shared by every process), webhooks kept for sessions not added yet, leases
//! and replica heartbeats, and the delivery outbox. Two backends behind one [`Store`], chosen by
//! URL, with the same semantics (one conformance suite runs on both):
//!
//! - `sqlite:PATH`: the embedded default, one file in WAL mode, created with its schema if
//!   missing;
//! - `postgres://USER@HOST:PORT/DATABASE`: for several processes sharing the work.
//!
//! ## Why these libraries
//! [rusqlite](https://docs.rs/rusqlite) (SQLite compiled in, so nothing to install) and
//! [tokio-postgres](https://docs.rs/tokio-postgres) with
//! [deadpool-postgres](https://docs.rs/deadpool-postgres) for pooling. Both are the most used,
//! well-kept drivers of their engine; each gives full control of transactions (SQLite's
//! `IMMEDIATE` transactions, PostgreSQL's `FOR UPDATE SKIP LOCKED` and advisory locks) and
//! compiles far less than a query toolkit spanning both engines would. SQL is written per engine
//! with bound parameters only; no SQL is ever built from input.
//!
//! Every time is an argument (`now`), never read inside, so behaviour is reproducible in tests.
//! Errors name the engine, host and database, never a password.
#![forbid(unsafe_code)]

mod engine;
mod error;
mod history;
mod model;
mod notices;
mod operations;
mod postgres;
mod row;
mod schema;
mod shared;
mod sqlite;
mod store;
mod tls;
mod url;

pub use engine::Capabilities;
pub use error::{Cause, StoreError};
pub use history::{AttemptDetail, Event, EventPage, NewEvent, FIRST_KEPT, LAST_KEPT};
pub use model::{
    Added, DeliveryState, DeliveryStatus, DueDelivery, Finish, Lease, NewSession, Page,
    ReplicaBeat, Route, SessionRecord, SessionState, StoredWebhook, WebhookFate,
};
pub use notices::{WebhookNotice, WebhookNotices};
pub use operations::{
    DeliveryCounts, DeliveryOverview, Order, PollRequest, PrunedSessions, Purge, Recovered,
    Redelivery, Retrack, SessionFilter, Stats,
};
pub use schema::LATEST as SCHEMA_VERSION;
pub use shared::{Attempt, Bounds, Pruned, StateCounts};
pub use store::Store;
pub use tls::redacted as redacted_url;
pub use url::StoreUrl;
