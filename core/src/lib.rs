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
//! use bankconnect_core::{classify::{classify_progress, Classified}, Api, BaseUrl, Credentials, SessionId};
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

pub mod account;
pub mod base_url;
pub mod classify;
pub mod client_settings;
pub mod credentials;
pub mod delivery_schedule;
pub mod error_codes;
pub mod error_detail;
pub mod ids;
pub mod jitter;
pub mod json_guard;
pub mod one_shot;
pub mod outcome;
pub mod policy;
pub mod progress;
pub mod request;
pub mod retry_after;
pub mod scheduler;
pub mod session;
pub mod session_status;
pub mod status;
pub mod throttle;
pub mod tracker;
pub mod transport_error;
pub mod webhook_hint;

pub use account::{AccountResult, AccountStatement};
pub use base_url::{BaseUrl, BaseUrlError};
pub use classify::{
    classify_progress, classify_update_webhook, ApiError, Classified, HttpResult, TransientFailure,
    WebhookUpdated,
};
pub use client_settings::ClientSettings;
pub use credentials::{Credentials, CredentialsError, Secret};
pub use delivery_schedule::{DeliverySchedule, ScheduleError};
pub use error_codes::{AccountErrorCode, ApiErrorCode, StatementErrorCode};
pub use error_detail::{ErrorDetail, YearMonth};
pub use ids::{AccountId, IdError, SessionId, StatementId};
pub use jitter::JitterRng;
pub use one_shot::{ApiCall, CallError, ClientError, OneShot, Retry};
pub use outcome::{NotifiedBy, Outcome, OutcomeError, OutcomeKind};
pub use policy::{Backoff, PolicyError, PollPolicy};
pub use progress::{ProgressReport, StatementProgress};
pub use request::{Api, RequestError, WebhookMode, WebhookRegistration};
pub use scheduler::{
    ProgressUpdate, RequestTicket, ScheduledRequest, Scheduler, SchedulerConfig, WebhookDisposition,
};
pub use session::{Action, Input, RequestKind, SessionSnapshot, TrackError, TrackedSession};
pub use session_status::{classify_session_status, SessionStatus, SessionStatusReply};
pub use status::{AccountStatus, EventName, SessionProgress, Source, StageStatus};
pub use throttle::RateLimit;
pub use tracker::{
    Output, PendingLimits, PendingStats, PendingWebhook, RequestId, SnapshotError, Tracker,
    TrackerEvent, TrackerSnapshot, Transmit,
};
pub use transport_error::{TransportError, TransportErrorKind};
pub use webhook_hint::WebhookHint;
