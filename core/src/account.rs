//! Account-level results: an account's verdict, its error code and the detail in the message.
//!
//! The same shape arrives in the ENRICHMENT_NOTIFICATION webhook and from `session_status`, and
//! is what an outcome carries.

use serde::{Deserialize, Deserializer, Serialize};

use crate::error_codes::{AccountErrorCode, StatementErrorCode};
use crate::error_detail::ErrorDetail;
use crate::progress::empty_as_none;
use crate::status::{AccountStatus, Source, StageStatus};

/// One account's result.
///
/// Deserializing reads the upstream account object: `""` and `null` error fields both become
/// `None`, unknown fields are ignored, and `error_detail` is always derived from the code and message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[non_exhaustive]
pub struct AccountResult {
    /// The account ID.
    pub account_id: Option<String>,
    /// The bank's short name (`sbi`, `hdfc`, …).
    pub bank_name: Option<String>,
    /// The (usually masked) account number, when the source gives it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_number: Option<String>,
    /// The verdict.
    pub account_status: Option<AccountStatus>,
    /// Why the account failed, if it did.
    pub error_code: Option<AccountErrorCode>,
    /// FinBox's explanation, verbatim.
    pub error_message: Option<String>,
    /// Structure extracted from the message (months, or month → days), if any.
    pub error_detail: Option<ErrorDetail>,
    /// When the account was created (`session_status` only), verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// When the account was last updated (`session_status` only), verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_updated_at: Option<String>,
    /// The account's statements (`session_status` and upload notifications only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub statements: Vec<AccountStatement>,
}

/// One statement of an account, as `session_status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AccountStatement {
    /// The statement ID, verbatim.
    #[serde(default)]
    pub statement_id: Option<String>,
    /// The statement's status.
    #[serde(default)]
    pub statement_status: Option<StageStatus>,
    /// Why it failed, if it did; `""` reads as none.
    #[serde(default, deserialize_with = "empty_code")]
    pub error_code: Option<StatementErrorCode>,
    /// FinBox's explanation; `""` reads as none.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub error_message: Option<String>,
    /// Where it came from.
    #[serde(default)]
    pub source: Option<Source>,
    /// When it was created, verbatim.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub created_at: Option<String>,
}

impl AccountStatement {
    /// Whether the statement failed.
    pub fn is_failed(&self) -> bool {
        self.statement_status
            .as_ref()
            .is_some_and(StageStatus::is_failed)
            || self.error_code.is_some()
    }
}

fn empty_code<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<StatementErrorCode>, D::Error> {
    Ok(empty_as_none(deserializer)?.map(|code| StatementErrorCode::parse(&code)))
}

impl AccountResult {
    /// Builds a result, deriving `error_detail` from the code and message and reading `""` as none.
    pub fn new(
        account_id: Option<String>,
        bank_name: Option<String>,
        account_status: Option<AccountStatus>,
        error_code: Option<String>,
        error_message: Option<String>,
    ) -> Self {
        let error_code = non_empty(error_code).map(|code| AccountErrorCode::parse(&code));
        let error_message = non_empty(error_message);
        let error_detail = match (&error_code, &error_message) {
            (Some(code), Some(message)) => ErrorDetail::extract(code, message),
            _ => None,
        };
        Self {
            account_id: non_empty(account_id),
            bank_name: non_empty(bank_name),
            account_number: None,
            account_status,
            error_code,
            error_message,
            error_detail,
            created_at: None,
            last_updated_at: None,
            statements: Vec::new(),
        }
    }

    /// Whether this account failed: a `failed` status, or an error code whatever the status says.
    pub fn is_failed(&self) -> bool {
        self.account_status
            .as_ref()
            .is_some_and(AccountStatus::is_failed)
            || self.error_code.is_some()
    }
}

fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.is_empty())
}

impl<'de> Deserialize<'de> for AccountResult {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            account_id: Option<String>,
            #[serde(default)]
            bank_name: Option<String>,
            #[serde(default)]
            account_number: Option<String>,
            #[serde(default)]
            account_status: Option<AccountStatus>,
            #[serde(default)]
            error_code: Option<String>,
            #[serde(default)]
            error_message: Option<String>,
            #[serde(default)]
            created_at: Option<String>,
            #[serde(default)]
            last_updated_at: Option<String>,
            #[serde(default, deserialize_with = "crate::progress::null_as_empty")]
            statements: Vec<AccountStatement>,
        }
        let raw = Raw::deserialize(deserializer)?;
        let mut result = Self::new(
            raw.account_id,
            raw.bank_name,
            raw.account_status,
            raw.error_code,
            raw.error_message,
        );
        result.account_number = non_empty(raw.account_number);
        result.created_at = non_empty(raw.created_at);
        result.last_updated_at = non_empty(raw.last_updated_at);
        result.statements = raw.statements;
        Ok(result)
    }
}
