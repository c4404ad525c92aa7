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
