//! The OpenAPI description of the outcome object a record carries. The outcome is stored and
//! served as the core serialized it (`bankconnect_core::Outcome`, the CLI contract of
//! docs/cli.md), so these types describe that JSON; they are never built. Values FinBox defines
//! (statuses, codes) are strings, not closed enums: unknown upstream values are kept verbatim.

#![allow(dead_code)] // Descriptions only: the served value is the core's own serialization.

use utoipa::ToSchema;

/// The kind of ending.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum OutcomeKindSchema {
    /// Processing completed and nothing failed.
    Completed,
    /// Processing completed, but a statement stage or an account failed.
    CompletedWithFailures,
    /// The max wait passed first.
    TimedOut,
    /// FinBox refused (SESSION_NOT_FOUND, ACCESS_DENIED, …).
    ApiError,
    /// FinBox stayed unreachable past the retry budget.
    TransportError,
}

/// How the end was learnt.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum NotifiedBySchema {
    /// A webhook came (and a progress request confirmed it).
    Webhook,
    /// Polling found it.
    Poll,
}

/// The refusal or the last transport cause.
#[derive(ToSchema)]
pub(crate) struct OutcomeErrorSchema {
    /// The API's code, or CONNECT, TIMEOUT, RESET, TRANSPORT, SERVER_ERROR, RATE_LIMITED,
    /// UNPARSABLE_RESPONSE.
    code: String,
    /// The HTTP status, when there was a response.
    http_status: Option<u16>,
    /// For people.
    message: String,
}

/// One statement as last seen on the progress endpoint.
#[derive(ToSchema)]
pub(crate) struct StatementSchema {
    /// As FinBox sent it.
    statement_id: Option<String>,
    /// pdf, aa, netbanking, … (verbatim).
    source: Option<String>,
    /// Identity extraction: processing, completed, failed, … (verbatim).
    identity_status: Option<String>,
    /// Transaction extraction.
    transaction_status: Option<String>,
    /// Enrichment.
    processing_status: Option<String>,
    /// Fraud checks.
    fraud_status: Option<String>,
    /// Why a stage failed.
    message: Option<String>,
}

/// One account's verdict.
#[derive(ToSchema)]
pub(crate) struct AccountSchema {
    /// The account id.
    account_id: Option<String>,
    /// The bank's short name.
    bank_name: Option<String>,
    /// The (masked) account number, when given.
    #[schema(required = false)]
    account_number: Option<String>,
    /// completed, failed, … (verbatim).
    account_status: Option<String>,
    /// Why it failed (INCOMPLETE_MONTHS, …; verbatim).
    error_code: Option<String>,
    /// FinBox's explanation, verbatim.
    error_message: Option<String>,
    /// Months, or month → days, read from the message.
    #[schema(value_type = Option<Object>)]
    error_detail: Option<serde_json::Value>,
    /// When the account was created (session_status only), verbatim.
    #[schema(required = false)]
    created_at: Option<String>,
    /// When it was last updated (session_status only), verbatim.
    #[schema(required = false)]
    last_updated_at: Option<String>,
    /// The account's statements (session_status only).
    #[schema(required = false, value_type = Option<Vec<Object>>)]
    statements: Option<Vec<serde_json::Value>>,
}

/// A session's outcome: how it ended and what failed (docs/cli.md).
#[derive(ToSchema)]
pub(crate) struct OutcomeSchema {
    /// The session.
    session_id: String,
    /// How it ended.
    outcome: OutcomeKindSchema,
    /// For api_error and transport_error.
    error: Option<OutcomeErrorSchema>,
    /// The statements as last seen.
    statements: Vec<StatementSchema>,
    /// The accounts' verdicts.
    accounts: Vec<AccountSchema>,
    /// How the end was learnt.
    notified_by: NotifiedBySchema,
    /// Progress requests sent.
    polls: u32,
    /// Requests that were retries.
    retries: u32,
    /// From the start of tracking to the end.
    elapsed_ms: u64,
    /// The session's progress as last seen (verbatim).
    session_progress: Option<String>,
    /// Why the accounts could not be fetched, when that failed.
    #[schema(required = false)]
    accounts_error: Option<String>,
}

/// The fields every event has.
macro_rules! event_schema {
    ($name:ident, $kind:literal, $doc:literal { $($(#[$meta:meta])* $field:ident: $ty:ty,)* }) => {
        #[doc = $doc]
        #[derive(ToSchema, serde::Serialize)]
        pub(crate) struct $name {
            /// Its number within the session, from 1.
            seq: u64,
            /// RFC 3339.
            at: String,
            #[doc = concat!("`", $kind, "`.")]
            #[schema(pattern = $kind)]
            kind: String,
            /// The replica that wrote it, if known.
            replica: Option<String>,
            $($(#[$meta])* $field: $ty,)*
        }
    };
}

event_schema!(AddedEventSchema, "^added$", "The session was added." {
    /// The caller's reference.
    reference: Option<String>,
    /// Its own max wait (e.g. `30m`), if any.
    max_wait: Option<String>,
    /// The same in milliseconds.
    max_wait_ms: Option<u64>,
});
event_schema!(WebhookEventSchema, "^webhook$", "A FinBox webhook for it was accepted." {
    /// FinBox's event name.
    event_name: Option<String>,
    /// It came with a valid token or signature.
    authenticated: bool,
    /// Seen before (by its dedupe key).
    duplicate: bool,
});
event_schema!(ProgressEventSchema, "^progress$", "A poll showed a change." {
    /// The session's progress (verbatim).
    session_progress: Option<String>,
    /// Statement id → `{identity, transaction, processing, fraud}` stages (verbatim).
    #[schema(value_type = Object)]
    statements: serde_json::Value,
    /// Progress requests answered so far.
    polls: u32,
});
event_schema!(ApiErrorEventSchema, "^api_error$", "FinBox refused or failed (a run of the same failure is one event)." {
    /// The code.
    code: Option<String>,
    /// The HTTP status.
    status: Option<u16>,
    /// The message.
    message: Option<String>,
    /// How many in a row.
    count: u32,
});
event_schema!(OutcomeEventSchema, "^outcome$", "The outcome was committed." {
    /// Its kind.
    outcome: Option<String>,
    /// How it was learnt.
    notified_by: Option<String>,
});
event_schema!(AttemptEventSchema, "^delivery_attempt$", "A delivery attempt ended." {
    /// Its number.
    attempt: u32,
    /// The HTTP status answered.
    status: Option<u16>,
    /// The failure's class: http_5xx, http_4xx, timeout, connect, request, …
    error: Option<String>,
    /// How long it took.
    duration_ms: u64,
    /// The start of the answer (≤ 256 bytes, control characters escaped).
    response_excerpt: Option<String>,
    /// When the next attempt is due (RFC 3339).
    next_attempt_at: Option<String>,
});
event_schema!(DeliveryEndedEventSchema, "^(delivered|given_up)$", "The delivery's final state." {
    /// Attempts made.
    attempts: u32,
});
event_schema!(RedeliverEventSchema, "^redeliver$", "An operator or a recovery requeued the delivery." {
    /// `admin` or `recover`.
    by: String,
    /// Delivered again although delivered.
    force: bool,
});
event_schema!(ActionEventSchema, "^(retrack|poll_requested|cancelled|purged)$", "An operator's action." {
    /// Who: `admin`.
    by: String,
});
event_schema!(LeaseEventSchema, "^lease$", "A replica took the session over from another." {
    /// The replica before.
    from: Option<String>,
});

/// One event of a session's history, by kind.
#[derive(ToSchema, serde::Serialize)]
#[serde(untagged)]
pub(crate) enum EventSchema {
    /// `added`.
    Added(AddedEventSchema),
    /// `webhook`.
    Webhook(WebhookEventSchema),
    /// `progress`.
    Progress(ProgressEventSchema),
    /// `api_error`.
    ApiError(ApiErrorEventSchema),
    /// `outcome`.
    Outcome(OutcomeEventSchema),
    /// `delivery_attempt`.
    Attempt(AttemptEventSchema),
    /// `delivered`, `given_up`.
    Ended(DeliveryEndedEventSchema),
    /// `redeliver`.
    Redeliver(RedeliverEventSchema),
    /// `retrack`, `poll_requested`, `cancelled`, `purged`.
    Action(ActionEventSchema),
    /// `lease`.
    Lease(LeaseEventSchema),
}
