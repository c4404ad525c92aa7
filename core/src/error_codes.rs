//! Error codes: the API's (`{"error": {"code": …}}`), and the account and statement codes that
//! explain a failed verdict. Unknown codes are kept as strings.

use crate::upstream_enum::upstream_enum;

upstream_enum! {
    /// A code the API answers with when it refuses a request.
    pub enum ApiErrorCode {
        /// 404: the session ID is invalid. Terminal.
        SessionNotFound => "SESSION_NOT_FOUND",
        /// 400: processing has not been requested yet. Terminal unless a grace period is set.
        ProcessingNotRequested => "PROCESSING_NOT_REQUESTED",
        /// 410: the session was deleted. Terminal.
        SessionDeleted => "SESSION_DELETED",
        /// 403 (401 on older pages): credentials missing or wrong. Terminal.
        AccessDenied => "ACCESS_DENIED",
        /// 400 on data endpoints: processing has not finished yet. Retry later.
        ProcessingNotCompleted => "PROCESSING_NOT_COMPLETED",
        /// 409 on `initiate_processing`: already requested. Informational.
        DuplicateProcessingRequest => "DUPLICATE_PROCESSING_REQUEST",
        /// 400: a valid session_id is required. Terminal.
        KeyRequired => "KEY_REQUIRED",
    }
}

impl ApiErrorCode {
    /// The code to assume when a refusal carries no code of its own (HTML, empty or `detail` bodies).
    pub fn from_status(status: u16) -> Self {
        match status {
            401 | 403 => Self::AccessDenied,
            404 => Self::SessionNotFound,
            409 => Self::DuplicateProcessingRequest,
            410 => Self::SessionDeleted,
            other => Self::Other(format!("HTTP_{other}")),
        }
    }
}

upstream_enum! {
    /// Why an account failed (the webhook's and `session_status`'s `error_code`).
    pub enum AccountErrorCode {
        /// One or more transactions are missing in the range.
        MissingTransactions => "MISSING_TRANSACTIONS",
        /// Months without transactions; the months are extracted as detail.
        IncompleteMonths => "INCOMPLETE_MONTHS",
        /// The account number is unavailable or could not be identified.
        NullAccountNumber => "NULL_ACCOUNT_NUMBER",
        /// The calculated balance does not match the statement's.
        BalanceMismatch => "BALANCE_MISMATCH",
        /// Uploaded statements miss whole months; the months are extracted as detail.
        IncompleteMonthsUpload => "INCOMPLETE_MONTHS_UPLOAD",
        /// Uploaded statements miss dates; the month → days map is extracted as detail.
        IncompleteDatesUpload => "INCOMPLETE_DATES_UPLOAD",
        /// The statement could not be parsed (newer pages).
        Unparsable => "UNPARSABLE",
    }
}

upstream_enum! {
    /// Why a statement failed (statement-level `error_code` on other FinBox pages).
    pub enum StatementErrorCode {
        /// The PDF password was wrong.
        PasswordIncorrect => "PASSWORD_INCORRECT",
        /// The statement's bank is not the session's.
        BankNameMismatch => "BANK_NAME_MISMATCH",
        /// The format is not supported.
        StatementUnsupportedFormat => "STATEMENT_UNSUPPORTED_FORMAT",
        /// The statement was already uploaded.
        StatementDuplicate => "STATEMENT_DUPLICATE",
        /// The statement has too many pages.
        StatementTooManyPages => "STATEMENT_TOO_MANY_PAGES",
        /// The account aggregator returned no transactions.
        NoTransactionsFromAa => "NO_TRANSACTIONS_FROM_AA",
        /// The PDF is a scanned image.
        PdfIsImage => "PDF_IS_IMAGE",
        /// Extraction failed.
        ExtractionFailed => "EXTRACTION_FAILED",
        /// The statement is outside the requested date range.
        OutOfDateRange => "OUT_OF_DATE_RANGE",
        /// The statement has no transactions.
        StatementNoTransactions => "STATEMENT_NO_TRANSACTIONS",
        /// The bank could not be detected.
        BankNameUndetected => "BANK_NAME_UNDETECTED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_code_has_a_variant() {
        for code in [
            "SESSION_NOT_FOUND",
            "PROCESSING_NOT_REQUESTED",
            "SESSION_DELETED",
            "ACCESS_DENIED",
            "PROCESSING_NOT_COMPLETED",
            "DUPLICATE_PROCESSING_REQUEST",
            "KEY_REQUIRED",
        ] {
            let parsed = ApiErrorCode::parse(code);
            assert!(!parsed.is_other(), "{code}");
            assert_eq!(parsed.as_str(), code);
        }
        for code in [
            "MISSING_TRANSACTIONS",
            "INCOMPLETE_MONTHS",
            "NULL_ACCOUNT_NUMBER",
            "BALANCE_MISMATCH",
            "INCOMPLETE_MONTHS_UPLOAD",
            "INCOMPLETE_DATES_UPLOAD",
            "UNPARSABLE",
        ] {
            assert_eq!(AccountErrorCode::parse(code).as_str(), code);
            assert!(!AccountErrorCode::parse(code).is_other(), "{code}");
        }
        assert_eq!(StatementErrorCode::KNOWN.len(), 11);
        for code in StatementErrorCode::KNOWN {
            assert_eq!(&StatementErrorCode::parse(code.as_str()), code);
        }
        assert!(ApiErrorCode::parse("RATE_LIMITED").is_other());
    }

    #[test]
    fn status_fallback() {
        assert_eq!(ApiErrorCode::from_status(403), ApiErrorCode::AccessDenied);
        assert_eq!(ApiErrorCode::from_status(401), ApiErrorCode::AccessDenied);
        assert_eq!(
            ApiErrorCode::from_status(404),
            ApiErrorCode::SessionNotFound
        );
        assert_eq!(ApiErrorCode::from_status(410), ApiErrorCode::SessionDeleted);
        assert_eq!(ApiErrorCode::from_status(400).as_str(), "HTTP_400");
    }
}
