//! What a tracked session learns from a webhook: that its processing may have ended, and, when the
//! webhook was authenticated, the accounts' verdicts. Produced by `bankconnect-webhook-verify` (or
//! any receiver) from an accepted event.

use serde::{Deserialize, Serialize};

use crate::account::AccountResult;
use crate::ids::SessionId;

/// A webhook's news for one session. A hint only: the session confirms it with one progress
/// request before it ends.
///
/// Its `accounts` reach an outcome only when `authenticated` is set (the receiver checked a token
/// or a signature). An unauthenticated webhook (FinBox signs nothing) only makes the session poll
/// at once; the verdicts then come from `session_status`, so a forged body changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::exhaustive_structs)] // a hint is built by receivers of one's own; its three fields are the contract
pub struct WebhookHint {
    /// The session the webhook names.
    pub session_id: SessionId,
    /// The event name (`ENRICHMENT_NOTIFICATION`, …), kept verbatim.
    pub event_name: Option<String>,
    /// The accounts' verdicts the webhook carried.
    pub accounts: Vec<AccountResult>,
    /// Whether the receiver authenticated the webhook (token or signature).
    #[serde(default)]
    pub authenticated: bool,
}

impl WebhookHint {
    /// An unauthenticated hint for `session_id`: poll now, trust nothing it says.
    pub fn unauthenticated(session_id: SessionId) -> Self {
        Self {
            session_id,
            event_name: None,
            accounts: Vec::new(),
            authenticated: false,
        }
    }

    /// The accounts, when they may decide an outcome (authenticated webhooks only).
    pub fn trusted_accounts(&self) -> Option<&[AccountResult]> {
        self.authenticated.then_some(self.accounts.as_slice())
    }
}
