//! What the drivers are measured against, small enough to run as processes of their own (so a
//! baseline's peak RSS is its own, not a bench binary's): the pollers a competent user would
//! write by hand with reqwest + tokio or ureq + threads, and a fast stand-in for the progress
//! endpoint.
//!
//! The `throughput` bench of `bankconnect-cli` builds this crate's binaries on their own
//! (`poller-async`, `poller-blocking`, `standin`) and runs the release `bankconnect` command
//! beside them; the `drivers` bench calls the pollers in-process.
//!
//! ```no_run
//! use std::time::Duration;
//! use bankconnect_bench_peers::{poll_blocking, Target};
//!
//! let target = Target {
//!     base: "http://127.0.0.1:8080/bank-connect/v1".into(),
//!     api_key: "test-key".into(),
//!     server_hash: "test-hash".into(),
//!     interval: Duration::from_millis(20),
//! };
//! poll_blocking(&target, vec!["s-1".into()], 16, |ended| println!("{}", ended.line()));
//! ```
#![forbid(unsafe_code)]

pub mod args;
mod pollers;
pub mod standin;

pub use pollers::{poll_async, poll_blocking, Ended, Target};
