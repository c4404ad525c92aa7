//! One session row as both engines read it, turned into a [`SessionRecord`] in one place.

use bankconnect_core::SessionId;

use crate::model::{from_ms, DeliveryState, DeliveryStatus, Lease, SessionRecord, SessionState};
use crate::StoreError;

/// The columns every session query selects, in this order (`s` is sessions, `o` the outbox).
pub(crate) const COLUMNS: &str = "s.seq, s.session_id, s.reference, s.state, s.added_at_ms, \
     s.updated_at_ms, s.max_wait_ms, s.outcome, s.tracker_state, s.lease_owner, s.lease_until_ms, \
     o.state, o.attempts, o.last_error, o.webhook_id, o.next_attempt_ms, s.tracked_at_ms";

/// `FROM` with the outbox joined, for [`COLUMNS`].
pub(crate) const FROM: &str = "sessions s LEFT JOIN outbox o ON o.session_id = s.session_id";

/// A session row's raw values.
#[derive(Debug)]
pub(crate) struct RawRecord {
    pub(crate) seq: i64,
    pub(crate) session_id: String,
    pub(crate) reference: Option<String>,
    pub(crate) state: String,
    pub(crate) added_at_ms: i64,
    pub(crate) updated_at_ms: i64,
    pub(crate) max_wait_ms: Option<i64>,
    pub(crate) outcome: Option<String>,
    pub(crate) tracker_state: Option<String>,
    pub(crate) lease_owner: Option<String>,
    pub(crate) lease_until_ms: i64,
    pub(crate) delivery_state: Option<String>,
    pub(crate) delivery_attempts: Option<i64>,
    pub(crate) delivery_error: Option<String>,
    pub(crate) webhook_id: Option<String>,
    pub(crate) next_attempt_ms: Option<i64>,
    pub(crate) tracked_at_ms: Option<i64>,
}

impl RawRecord {
    /// The row just inserted by an add, from the values inserted: no read back.
    pub(crate) fn added(
        seq: i64,
        session_id: &str,
        reference: Option<String>,
        now_ms: i64,
        max_wait_ms: Option<i64>,
        lease: (Option<&str>, i64),
    ) -> Self {
        Self {
            seq,
            session_id: session_id.to_owned(),
            reference,
            state: "tracking".into(),
            added_at_ms: now_ms,
            updated_at_ms: now_ms,
            max_wait_ms,
            outcome: None,
            tracker_state: None,
            lease_owner: lease.0.map(str::to_owned),
            lease_until_ms: lease.1,
            delivery_state: None,
            delivery_attempts: None,
            delivery_error: None,
            webhook_id: None,
            next_attempt_ms: None,
            tracked_at_ms: None,
        }
    }
}

fn json(text: Option<String>, what: &str) -> Result<Option<serde_json::Value>, StoreError> {
    text.map(|text| {
        serde_json::from_str(&text).map_err(|err| StoreError::Corrupt(format!("{what}: {err}")))
    })
    .transpose()
}

impl RawRecord {
    pub(crate) fn into_record(self) -> Result<(i64, SessionRecord), StoreError> {
        let session_id = SessionId::new(&self.session_id)
            .map_err(|err| StoreError::Corrupt(format!("session id: {err}")))?;
        let state = SessionState::parse(&self.state)
            .ok_or_else(|| StoreError::Corrupt(format!("session state {:?}", self.state)))?;
        let delivery = match self.delivery_state {
            None => DeliveryStatus::none(),
            Some(text) => DeliveryStatus {
                state: DeliveryState::parse(&text)
                    .ok_or_else(|| StoreError::Corrupt(format!("delivery state {text:?}")))?,
                attempts: u32::try_from(self.delivery_attempts.unwrap_or(0)).unwrap_or(0),
                last_error: self.delivery_error,
                webhook_id: self.webhook_id,
                next_attempt_at: self.next_attempt_ms.map(from_ms),
            },
        };
        let lease = match self.lease_owner {
            Some(owner) if state == SessionState::Tracking => Some(Lease {
                owner,
                until: from_ms(self.lease_until_ms),
            }),
            _ => None,
        };
        let record = SessionRecord {
            session_id,
            reference: self.reference,
            state,
            added_at: from_ms(self.added_at_ms),
            tracking_since: from_ms(self.tracked_at_ms.unwrap_or(self.added_at_ms)),
            updated_at: from_ms(self.updated_at_ms),
            max_wait: self
                .max_wait_ms
                .map(|ms| std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
            outcome: json(self.outcome, "outcome")?,
            tracker_state: json(self.tracker_state, "tracker state")?,
            lease,
            delivery,
        };
        Ok((self.seq, record))
    }
}
