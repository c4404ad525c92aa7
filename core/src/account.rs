//! Account-level results: an account's verdict, its error code and the detail in the message.
//!
//! The same shape arrives in the ENRICHMENT_NOTIFICATION webhook and from `session_status`, and
//! is what an outcome carries.

use serde::{Deserialize, Deserializer, Serialize};

use crate::error_codes::AccountErrorCode;
use crate::error_detail::ErrorDetail;
use crate::status::AccountStatus;

/// One account's result.
///
/// Deserializing reads the upstream account object: `""` and `null` error fields both become
/// `None`, unknown fields are ignored, and `error_detail` is always derived from the code and message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
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
        Ok(result)
    }
}
