//! The JSON shapes of session records, as the API answers and deliveries carry them.

use std::time::SystemTime;

use bankconnect_store::SessionRecord;
use serde_json::Value;

/// RFC 3339 in UTC with milliseconds.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// Where a session stands.
#[derive(Debug, Clone, Copy, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StateBody {
    /// Being polled.
    Tracking,
    /// Ended with an outcome.
    Finished,
    /// Cancelled; no delivery.
    Cancelled,
}

/// Where a finished session's delivery stands.
#[derive(Debug, Clone, Copy, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeliveryStateBody {
    /// No delivery (not finished, cancelled, or none configured).
    None,
    /// Not attempted yet.
    Pending,
    /// Answered 2xx.
    Delivered,
    /// Failed; will be retried.
    Failing,
    /// Failed on every attempt of the schedule.
    GivenUp,
}

/// A session's delivery.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct DeliveryBody {
    /// Where the delivery stands.
    pub state: DeliveryStateBody,
    /// Attempts made.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// The replica polling a session, while tracking.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct LeaseBody {
    /// The replica's id.
    pub replica: String,
    /// RFC 3339.
    pub until: String,
}

/// A session record, as the API and deliveries show it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct RecordBody {
    /// FinBox's session id.
    pub session_id: String,
    /// The caller's reference, as given.
    pub reference: Option<String>,
    /// Where the session stands.
    pub state: StateBody,
    /// RFC 3339.
    pub added_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// This session's own max wait, when not the service's.
    pub max_wait_ms: Option<u64>,
    /// The outcome object of the CLI contract, once finished.
    #[schema(value_type = Option<crate::outcome_schema::OutcomeSchema>)]
    pub outcome: Option<Value>,
    /// Its delivery to the lender's back end.
    pub delivery: DeliveryBody,
    /// The replica polling it, while tracking.
    pub lease: Option<LeaseBody>,
}

/// A session record as the API and deliveries show it (taken, so its outcome is moved, not
/// copied).
pub(crate) fn record_body(record: SessionRecord) -> RecordBody {
    use bankconnect_store::{DeliveryState, SessionState};
    RecordBody {
        session_id: record.session_id.as_str().to_owned(),
        reference: record.reference,
        state: match record.state {
            SessionState::Finished => StateBody::Finished,
            SessionState::Cancelled => StateBody::Cancelled,
            _ => StateBody::Tracking,
        },
        added_at: rfc3339(record.added_at),
        updated_at: rfc3339(record.updated_at),
        max_wait_ms: record
            .max_wait
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        outcome: record.outcome,
        delivery: DeliveryBody {
            state: match record.delivery.state {
                DeliveryState::Pending => DeliveryStateBody::Pending,
                DeliveryState::Delivered => DeliveryStateBody::Delivered,
                DeliveryState::Failing => DeliveryStateBody::Failing,
                DeliveryState::GivenUp => DeliveryStateBody::GivenUp,
                _ => DeliveryStateBody::None,
            },
            attempts: record.delivery.attempts,
            last_error: record.delivery.last_error,
        },
        lease: record.lease.map(|lease| LeaseBody {
            replica: lease.owner,
            until: rfc3339(lease.until),
        }),
    }
}
