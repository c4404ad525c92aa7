//! # bankconnect-core
//!
//! The sans-IO core of the FinBox BankConnect processing-status SDK. It knows the API's requests,
//! responses, statuses and error codes, and decides what to send and when, but performs no IO, reads
//! no clock and starts no runtime. Transports (`bankconnect-http-async`, `bankconnect-http-blocking`,
//! or your own HTTP client) send the requests it builds and hand back the responses.
//!
//! Every operation is three steps: **build** the request as data, **send** it with any client,
//! **classify** the response as data.
//!
//! ```
//! use bankconnect_core::{classify_progress, Api, BaseUrl, Classified, Credentials, SessionId};
//!
//! let api = Api::new(BaseUrl::production(), Credentials::new("api-key", "server-hash")?);
//! let request = api.progress_request(&SessionId::new("bfb98ac5-7224-401b-a643-175235856187")?)?;
//! assert_eq!(request.headers()["x-api-key"], "api-key");
//!
//! // …send `request` with any HTTP client, then classify what came back:
//! let response = http::Response::builder().status(200).body(
//!     br#"{"session_id": "bfb98ac5-7224-401b-a643-175235856187", "session_progress": "completed", "progress": []}"#.to_vec(),
//! )?;
//! match classify_progress(Ok(response)) {
//!     Classified::Ok(report) => assert!(report.is_completed()),
//!     Classified::Api(refusal) => println!("refused: {refusal}"),
//!     Classified::Transient(failure) => println!("retry later: {failure}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod duration_serde;
mod upstream_enum;

// Modules are private, named for what they hold; the API is the one list of re-exports below,
// so each type has one path (`bankconnect_core::Name`).
mod account;
mod base_url;
mod classify;
mod client_settings;
mod credentials;
mod error_codes;
mod error_detail;
mod ids;
mod jitter;
mod json_guard;
mod one_shot;
mod outcome;
mod policy;
mod progress;
mod request;
mod retry_after;
mod scheduler;
mod session;
mod session_status;
mod status;
mod throttle;
mod tracker;
mod transport_error;
mod webhook_hint;

// The API, by area: ids and credentials; requests and URLs; classifying responses; policies
// and data; the per-session machine, scheduler and tracker; webhook hints.
pub use account::{AccountResult, AccountStatement};
pub use base_url::{check_port, is_loopback_host, BaseUrl, BaseUrlError, PRODUCTION_BASE_URL};
pub use classify::{
    classify_progress, classify_update_webhook, ApiError, Classified, HttpResult, TransientFailure,
    WebhookUpdated, MAX_RESPONSE_BODY,
};
pub use client_settings::ClientSettings;
pub use credentials::{Credentials, CredentialsError, Secret, MAX_SECRET_LEN};
pub use error_codes::{AccountErrorCode, ApiErrorCode, StatementErrorCode};
pub use error_detail::{ErrorDetail, YearMonth};
pub use ids::{AccountId, IdError, SessionId, StatementId, MAX_ID_LEN};
pub use jitter::JitterRng;
pub use json_guard::DEFAULT_MAX_DEPTH;
pub use one_shot::{ApiCall, CallError, ClientError, OneShot, Retry};
pub use outcome::{NotifiedBy, Outcome, OutcomeError, OutcomeKind};
pub use policy::{Backoff, PolicyError, PollPolicy};
pub use progress::{ProgressReport, StatementProgress};
pub use request::{
    Api, RequestError, WebhookMode, WebhookRegistration, API_KEY_HEADER, MAX_WEBHOOK_URL_LEN,
    SERVER_HASH_HEADER, USER_AGENT_VALUE,
};
pub use scheduler::{
    FailureUpdate, ProgressUpdate, RequestTicket, ScheduledRequest, Scheduler, SchedulerConfig,
    WebhookDisposition,
};
pub use session::{
    Action, Answer, Input, RequestKind, SessionSnapshot, TrackError, TrackedSession,
};
pub use session_status::{classify_session_status, SessionStatus, SessionStatusReply};
pub use status::{AccountStatus, EventName, SessionProgress, Source, StageStatus};
pub use throttle::RateLimit;
pub use tracker::{
    Output, PendingLimits, PendingStats, PendingWebhook, RequestId, SnapshotError, Tracker,
    TrackerEvent, TrackerSnapshot, Transmit,
};
pub use transport_error::{TransportError, TransportErrorKind};
pub use webhook_hint::WebhookHint;

/// What a driver's user names, re-exported whole by both drivers (`bankconnect_http_async` and
/// `bankconnect_http_blocking`), so that the driver is the one dependency an application needs.
pub mod driver_surface {
    pub use crate::{
        AccountErrorCode, AccountResult, Api, ApiErrorCode, BaseUrl, ClientError, ClientSettings,
        Credentials, ErrorDetail, NotifiedBy, Outcome, OutcomeError, OutcomeKind, PendingLimits,
        PendingStats, PollPolicy, ProgressReport, SchedulerConfig, SessionId, SessionSnapshot,
        SessionStatusReply, SnapshotError, TrackError, TrackerEvent, TrackerSnapshot,
        TransportError, TransportErrorKind, WebhookHint, WebhookMode, WebhookRegistration,
        WebhookUpdated,
    };
}

// Not part of the API: the parser the fuzz targets exercise directly.
#[doc(hidden)]
pub use retry_after::parse_retry_after;
