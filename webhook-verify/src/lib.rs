//! # bankconnect-webhook-verify
//!
//! Safe intake of FinBox BankConnect webhooks. FinBox signs nothing and promises no delivery, so a
//! receiver must never fall over on hostile input, never let a forged body change anything without
//! confirmation from the API, and never process one event twice. This crate does that with no IO
//! and no web framework:
//!
//! 1. **bounds** the input (body size checked before reading it all, accounts, strings, depth);
//! 2. optionally **authenticates** it over the raw bytes (shared token, Standard Webhooks v1, hex HMAC);
//! 3. **parses strictly** every documented payload (duplicate keys, wrong types and trailing data
//!    refused with the field named; unknown names and codes kept);
//! 4. extracts **structured error detail** (months, month → days) through `bankconnect-core`;
//! 5. **dedupes** by `webhook-id` or by the normalized event;
//! 6. says which **HTTP status** to answer.
//!
//! ```
//! use bankconnect_webhook_verify::{Limits, WebhookEvent};
//! let body = br#"{"session_id": "abcd", "event_name": "ENRICHMENT_NOTIFICATION",
//!   "accounts": [{"bank_name": "sbi", "account_id": "a1", "account_status": "failed",
//!                 "error_code": "INCOMPLETE_MONTHS",
//!                 "error_message": "There are no transactions for Nov 2023, Dec 2023"}]}"#;
//! let event = WebhookEvent::parse(body, &Limits::default()).unwrap();
//! let json = event.to_json(false);
//! assert_eq!(json["accounts"][0]["error_detail"]["months"][0], "2023-11");
//! ```
#![forbid(unsafe_code)]

// The axum integration is a module of its own (`axum_handler::router`, behind the `axum`
// feature); everything else is private, and the API is the re-exports below.
#[cfg(feature = "axum")]
pub mod axum_handler;
mod dedupe;
mod event;
mod limits;
#[cfg(feature = "axum")]
mod listener;
mod receiver;
mod signature;
mod strict_json;

pub use dedupe::{DedupeStore, EventKey, MemoryDedupe};
pub use event::{ParseError, WebhookEvent};
pub use limits::Limits;
pub use receiver::{Delivery, Receiver, ReceiverConfig, Reception, Rejection, TOKEN_HEADER};
pub use signature::{
    sign_hex, sign_standard, AuthError, Authenticator, SecretError, WebhookSecret,
    DEFAULT_TOLERANCE, MAX_SIGNATURE_ENTRIES, MAX_SIGNATURE_HEADER, WEBHOOK_ID, WEBHOOK_SIGNATURE,
    WEBHOOK_TIMESTAMP,
};
pub use strict_json::{check_strict_json, JsonError};
