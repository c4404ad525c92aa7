//! What a tracked session learns from a webhook: that its processing may have ended, and the
//! accounts' verdicts. Produced by `bankconnect-webhook-verify` (or any receiver) from a verified event.

use serde::{Deserialize, Serialize};

use crate::account::AccountResult;
use crate::ids::SessionId;

/// A webhook's news for one session. A hint only: the session confirms it with one progress request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookHint {
    /// The session the webhook names.
    pub session_id: SessionId,
    /// The event name (`ENRICHMENT_NOTIFICATION`, …), kept verbatim.
    pub event_name: Option<String>,
    /// The accounts' verdicts the webhook carried.
    pub accounts: Vec<AccountResult>,
}
