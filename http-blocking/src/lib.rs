//! # bankconnect-http-blocking
//!
//! The blocking driver of the BankConnect SDK: a short loop over `bankconnect-core`'s decisions,
//! sending with [ureq](https://docs.rs/ureq) (rustls) or any [`BlockingTransport`] you bring. No
//! async runtime anywhere in its dependency tree.
//!
//! The same operations, under the same names, as `bankconnect-http-async`: `update_webhook`,
//! `progress`, `session_status`, `wait`, `track_many` (and a [`Tracker`] to add sessions and feed
//! webhooks while tracking).
//!
//! ```no_run
//! use bankconnect_core::{Api, BaseUrl, Credentials, SessionId};
//! use bankconnect_http_blocking::Client;
//!
//! let api = Api::new(BaseUrl::production(), Credentials::new("api-key", "server-hash")?);
//! let client = Client::new(api);
//! let mut tracker = client.track_many(["s-1", "s-2"].map(|id| SessionId::new(id).unwrap()))?;
//! let feed = tracker.webhook_feed(); // hand verified webhooks in from a receiver thread
//! # drop(feed);
//! while let Some(outcome) = tracker.next_outcome() {
//!     println!("{} {}", outcome.session_id, outcome.outcome);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod client;
mod transport;

// What a user of the driver names, so that this crate is the one dependency it needs.
pub use bankconnect_core::driver_surface::*;
/// Why a client call failed (the same type in both drivers).
pub use bankconnect_core::ClientError as Error;
pub use client::{Client, SessionFeed, Tracker, WebhookFeed};
pub use transport::{BlockingTransport, UreqTransport, CONNECTION_BUFFER};
