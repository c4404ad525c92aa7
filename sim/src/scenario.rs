//! Scenarios: per session, a script of what happens. Loaded from JSON files or built in code.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::faults::{FaultKind, FaultRates};

/// Why a scenario was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The JSON is invalid.
    #[error("invalid scenario: {0}")]
    Invalid(String),
}

/// A whole simulation: sessions, global faults and webhook delivery settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
#[allow(clippy::exhaustive_structs)] // plain data, built with `..Default::default()`
pub struct Scenario {
    /// The scripted sessions. Any other session ID answers 404 SESSION_NOT_FOUND.
    pub sessions: Vec<SessionScript>,
    /// Faults drawn at a rate over all API requests.
    pub faults: FaultRates,
    /// How webhooks are delivered.
    pub webhooks: WebhookSettings,
    /// The webhook registered from the start (as if `update_webhook` had been called).
    pub webhook_url: Option<String>,
    /// Seed for the fault draws (default 0).
    pub seed: u64,
}

impl Scenario {
    /// Reads a scenario from JSON text.
    pub fn from_json(text: &str) -> Result<Self, ScenarioError> {
        let scenario: Self =
            serde_json::from_str(text).map_err(|err| ScenarioError::Invalid(err.to_string()))?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Reads a scenario file (JSON).
    pub fn from_file(path: &std::path::Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text)
    }

    /// Checks IDs and numbers.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let mut seen = std::collections::HashSet::new();
        for session in &self.sessions {
            bankconnect_core::SessionId::new(&session.session_id)
                .map_err(|err| ScenarioError::Invalid(err.to_string()))?;
            if !seen.insert(session.session_id.as_str()) {
                return Err(ScenarioError::Invalid(format!(
                    "session {} appears twice",
                    session.session_id
                )));
            }
        }
        if !(0.0..=1.0).contains(&self.faults.rate) {
            return Err(ScenarioError::Invalid(
                "faults.rate must be within 0..=1".into(),
            ));
        }
        Ok(())
    }

    /// The built-in sessions: one per documented case. Used when no scenario is given.
    pub fn builtin() -> Self {
        let mut sessions = vec![
            SessionScript::new("sim-completed"),
            SessionScript::new("sim-failed-statement").fail_statement_stage(
                0,
                Stage::Transaction,
                "Statement is password protected",
            ),
            SessionScript::new("sim-deleted").deleted(),
            SessionScript::new("sim-not-requested").not_requested(None),
            SessionScript::new("sim-not-requested-then-processing").not_requested(Some(2)),
            SessionScript::new("sim-flaky")
                .fault_on(1, FaultKind::ServerError)
                .fault_on(2, FaultKind::RateLimited)
                .fault_on(3, FaultKind::Truncated)
                .fault_on(4, FaultKind::Garbage)
                .fault_on(5, FaultKind::Html)
                .fault_on(6, FaultKind::Reset)
                .complete_after_polls(3),
            SessionScript::new("sim-slow").complete_after(Duration::from_secs(10)),
            SessionScript::new("sim-no-webhook").without_webhook(),
            SessionScript::new("sim-duplicate-webhook").duplicate_webhook(),
        ];
        for (code, message) in ACCOUNT_ERROR_MESSAGES {
            let id = format!(
                "sim-account-{}",
                code.to_ascii_lowercase().replace('_', "-")
            );
            sessions.push(SessionScript::new(&id).account_failure(code, message));
        }
        Self {
            sessions,
            ..Self::default()
        }
    }
}

/// What each built-in session does (`bankconnect sim --help`, docs/cli.md and
/// `sim/scenarios/README.md` say the same); a test holds it to [`Scenario::builtin`].
pub const BUILTIN_SESSIONS_HELP: &str = "\
Built-in sessions (without --scenario):
  sim-completed                       completes after 3 polls, one statement, one account
  sim-failed-statement                completes; its statement failed at the transaction stage
  sim-deleted                         410 SESSION_DELETED
  sim-not-requested                   PROCESSING_NOT_REQUESTED on every poll
  sim-not-requested-then-processing   PROCESSING_NOT_REQUESTED twice, then processing
  sim-flaky                           500, 429, truncated, garbage, HTML, reset, then completes
  sim-slow                            completes 10 s after its first request
  sim-no-webhook                      completes, but no webhook is sent
  sim-duplicate-webhook               completes; its webhook is sent twice
  sim-account-<code>                  completes with the account failed with <code>, one per
                                      documented code: missing-transactions, incomplete-months,
                                      null-account-number, balance-mismatch,
                                      incomplete-months-upload, incomplete-dates-upload,
                                      unparsable";

/// Every documented account error code with a realistic message.
pub const ACCOUNT_ERROR_MESSAGES: &[(&str, &str)] = &[
    ("MISSING_TRANSACTIONS", "One or more transactions are missing in the specified date range"),
    ("INCOMPLETE_MONTHS", "Insufficient data to generate report. There are no transactions for Nov 2023, Dec 2023"),
    ("NULL_ACCOUNT_NUMBER", "Account number is either unavailable or could not be identified"),
    ("BALANCE_MISMATCH", "The calculated balance does not match the balance in the statement"),
    ("INCOMPLETE_MONTHS_UPLOAD", "Statement(s) uploaded contain incomplete months. Missing data present for Nov 2023, Dec 2023"),
    ("INCOMPLETE_DATES_UPLOAD", "Statement(s) uploaded contain incomplete dates. Missing dates present for {\"Jan 2024\": [1, 2, 3, 4]}"),
    ("UNPARSABLE", "The statement could not be parsed"),
];

#[cfg(test)]
mod builtin_help_tests {
    use super::*;

    #[test]
    fn the_help_names_every_built_in_session() {
        for session in Scenario::builtin().sessions {
            let id = session.session_id.as_str();
            let named = match id.strip_prefix("sim-account-") {
                Some(code) => BUILTIN_SESSIONS_HELP.contains(code),
                None => BUILTIN_SESSIONS_HELP.contains(&format!("  {id} ")),
            };
            assert!(named, "{id} is not in the help");
        }
    }
}

/// The stage fields of a progress entry, in order.
pub(crate) const STAGES: [&str; 4] = [
    "identity_status",
    "transaction_status",
    "processing_status",
    "fraud_status",
];

/// A processing stage of a statement, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(clippy::exhaustive_enums)] // the four stages of a statement
pub enum Stage {
    /// `identity_status`.
    Identity,
    /// `transaction_status`.
    Transaction,
    /// `processing_status`.
    Processing,
    /// `fraud_status`.
    Fraud,
}

impl Stage {
    /// Its position, 0–3.
    pub fn index(self) -> usize {
        match self {
            Self::Identity => 0,
            Self::Transaction => 1,
            Self::Processing => 2,
            Self::Fraud => 3,
        }
    }
}

/// One statement of a scripted session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(clippy::exhaustive_structs)] // plain data, built with `..Default::default()`
pub struct StatementScript {
    /// Its ID.
    pub statement_id: String,
    /// `pdf`, `aa`, `online`, … (default `pdf`).
    #[serde(default = "default_source")]
    pub source: String,
    /// The stage at which it fails (that stage and the later ones are `failed`).
    #[serde(default)]
    pub fail_at: Option<Stage>,
    /// The failure message.
    #[serde(default)]
    pub message: Option<String>,
}

fn default_source() -> String {
    "pdf".into()
}

/// One account of a scripted session: what the webhook and `session_status` report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(clippy::exhaustive_structs)] // plain data, built with `..Default::default()`
pub struct AccountScript {
    /// Its ID.
    pub account_id: String,
    /// The bank (default `sbi`).
    #[serde(default = "default_bank")]
    pub bank_name: String,
    /// The masked account number (default `XXXXXXXX1234`).
    #[serde(default = "default_account_number")]
    pub account_number: String,
    /// `completed` or `failed` (default: `failed` if there is an error code, else `completed`).
    #[serde(default)]
    pub account_status: Option<String>,
    /// The error code, any string.
    #[serde(default)]
    pub error_code: Option<String>,
    /// The error message.
    #[serde(default)]
    pub error_message: Option<String>,
}

fn default_bank() -> String {
    "sbi".into()
}

fn default_account_number() -> String {
    "XXXXXXXX1234".into()
}

impl AccountScript {
    /// The account's status as reported.
    pub fn status(&self) -> &str {
        match (&self.account_status, &self.error_code) {
            (Some(status), _) => status,
            (None, Some(_)) => "failed",
            (None, None) => "completed",
        }
    }
}

/// How a session's webhook is delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(clippy::exhaustive_structs)] // plain data, built with `..Default::default()`
pub struct SessionWebhook {
    /// Send one at all (default true).
    pub send: bool,
    /// Delay after completion (default 0).
    pub delay_ms: u64,
    /// Deliver it twice (default false).
    pub duplicate: bool,
}

impl Default for SessionWebhook {
    fn default() -> Self {
        Self {
            send: true,
            delay_ms: 0,
            duplicate: false,
        }
    }
}

/// A fault at a given request of a session (1-based, progress and session_status counted together).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(clippy::exhaustive_structs)] // plain data, built with `..Default::default()`
pub struct ScriptedFault {
    /// Which request.
    pub on_request: u32,
    /// What goes wrong.
    pub kind: FaultKind,
}

/// What happens to one session. Processing starts at its first API request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(clippy::exhaustive_structs)] // plain data, built with `..Default::default()`
pub struct SessionScript {
    /// The session ID.
    pub session_id: String,
    /// Its statements (default one PDF statement).
    #[serde(default = "default_statements")]
    pub statements: Vec<StatementScript>,
    /// Its accounts (default one completed account).
    #[serde(default = "default_accounts")]
    pub accounts: Vec<AccountScript>,
    /// Complete after this many progress requests (default 3 when `complete_after_ms` is unset).
    #[serde(default)]
    pub complete_after_polls: Option<u32>,
    /// Complete this long after the first request, whatever the polls.
    #[serde(default)]
    pub complete_after_ms: Option<u64>,
    /// Answer PROCESSING_NOT_REQUESTED to the first N progress requests (`null`: never;
    /// a very large number: always).
    #[serde(default)]
    pub not_requested_polls: Option<u32>,
    /// Answer 410 SESSION_DELETED.
    #[serde(default)]
    pub deleted: bool,
    /// Webhook delivery.
    #[serde(default)]
    pub webhook: SessionWebhook,
    /// Faults at given requests.
    #[serde(default)]
    pub faults: Vec<ScriptedFault>,
}

fn default_statements() -> Vec<StatementScript> {
    vec![StatementScript {
        statement_id: "stmt-1".into(),
        source: default_source(),
        fail_at: None,
        message: None,
    }]
}

fn default_accounts() -> Vec<AccountScript> {
    vec![AccountScript {
        account_id: "acct-1".into(),
        bank_name: default_bank(),
        account_number: default_account_number(),
        account_status: None,
        error_code: None,
        error_message: None,
    }]
}

impl SessionScript {
    /// A session that completes cleanly after three polls, with one statement and one account.
    pub fn new(session_id: &str) -> Self {
        let mut statements = default_statements();
        let mut accounts = default_accounts();
        for statement in &mut statements {
            statement.statement_id = format!("{session_id}-stmt-1");
        }
        for account in &mut accounts {
            account.account_id = format!("{session_id}-acct-1");
        }
        Self {
            session_id: session_id.to_owned(),
            statements,
            accounts,
            complete_after_polls: None,
            complete_after_ms: None,
            not_requested_polls: None,
            deleted: false,
            webhook: SessionWebhook::default(),
            faults: Vec::new(),
        }
    }

    /// Completes after `polls` progress requests.
    pub fn complete_after_polls(mut self, polls: u32) -> Self {
        self.complete_after_polls = Some(polls);
        self
    }

    /// Completes `after` the first request.
    pub fn complete_after(mut self, after: Duration) -> Self {
        self.complete_after_ms = Some(u64::try_from(after.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Answers PROCESSING_NOT_REQUESTED to the first `polls` progress requests (`None`: always).
    pub fn not_requested(mut self, polls: Option<u32>) -> Self {
        self.not_requested_polls = Some(polls.unwrap_or(u32::MAX));
        self
    }

    /// Answers SESSION_DELETED.
    pub fn deleted(mut self) -> Self {
        self.deleted = true;
        self
    }

    /// Adds a statement.
    pub fn statement(mut self, statement_id: &str, source: &str) -> Self {
        self.statements.push(StatementScript {
            statement_id: statement_id.into(),
            source: source.into(),
            fail_at: None,
            message: None,
        });
        self
    }

    /// Makes statement `index` fail at `stage` with `message`.
    pub fn fail_statement_stage(mut self, index: usize, stage: Stage, message: &str) -> Self {
        if let Some(statement) = self.statements.get_mut(index) {
            statement.fail_at = Some(stage);
            statement.message = Some(message.into());
        }
        self
    }

    /// Makes the first account fail with `code` and `message`.
    pub fn account_failure(mut self, code: &str, message: &str) -> Self {
        if let Some(account) = self.accounts.first_mut() {
            account.error_code = Some(code.into());
            account.error_message = Some(message.into());
        }
        self
    }

    /// Sends no webhook for this session.
    pub fn without_webhook(mut self) -> Self {
        self.webhook.send = false;
        self
    }

    /// Delivers the webhook twice.
    pub fn duplicate_webhook(mut self) -> Self {
        self.webhook.duplicate = true;
        self
    }

    /// Delays the webhook.
    pub fn webhook_delay(mut self, delay: Duration) -> Self {
        self.webhook.delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Injects `kind` at the `on_request`-th request (1-based).
    pub fn fault_on(mut self, on_request: u32, kind: FaultKind) -> Self {
        self.faults.push(ScriptedFault { on_request, kind });
        self
    }
}

/// How webhooks are delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(clippy::exhaustive_structs)] // plain data, built with `..Default::default()`
pub struct WebhookSettings {
    /// Sign with Standard Webhooks v1 using this `whsec_…` secret (FinBox signs nothing; this is
    /// for testing verifying receivers).
    pub signing_secret: Option<String>,
    /// Extra attempts when the receiver does not answer 2xx (default 0: FinBox documents none).
    pub retries: u32,
    /// Per-attempt timeout (default 5 000 ms).
    pub timeout_ms: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            signing_secret: None,
            retries: 0,
            timeout_ms: 5_000,
        }
    }
}
