//! Typed statuses as FinBox sends them: session progress, per-stage statement status, source,
//! account status. Unknown values are kept as their text.

use crate::upstream_enum::upstream_enum;

upstream_enum! {
    /// A session's overall `session_progress` on the progress endpoint.
    pub enum SessionProgress {
        /// Every statement has been processed (documented).
        Completed => "completed",
        /// Processing is still going on (documented).
        Processing => "processing",
    }
}

upstream_enum! {
    /// The status of one processing stage of a statement (`identity_status`, `transaction_status`,
    /// `processing_status`, `fraud_status`), or of a statement as a whole on `session_status`.
    pub enum StageStatus {
        /// The stage finished (documented).
        Completed => "completed",
        /// The stage is running (used by FinBox's own older SDK).
        Processing => "processing",
        /// The stage failed; the statement's `message` says why (used by FinBox's older SDK).
        Failed => "failed",
    }
}

upstream_enum! {
    /// Where a statement came from. Compared case-insensitively: FinBox writes `pdf` and `PDF`.
    pub enum Source {
        /// An uploaded PDF statement (documented).
        Pdf => "pdf",
        /// Fetched through the account aggregator (a session mode; inferred).
        Aa => "aa",
        /// Fetched by net banking (a session mode; inferred).
        Online => "online",
    }
}

upstream_enum! {
    /// An account's verdict, from a webhook or from `session_status`.
    pub enum AccountStatus {
        /// The account's data is complete (documented).
        Completed => "completed",
        /// The account failed; its `error_code` says why (documented).
        Failed => "failed",
        /// Some months are missing (upload-completion notification).
        Partial => "PARTIAL",
    }
}

upstream_enum! {
    /// A webhook's `event_name`.
    pub enum EventName {
        /// Processing finished (completed or failed); carries the accounts' verdicts.
        EnrichmentNotification => "ENRICHMENT_NOTIFICATION",
        /// The user finished uploading; carries accounts, months and statements.
        SessionRequirementCompletionNotification => "SESSION_REQUIREMENT_COMPLETION_NOTIFICATION",
        /// The session expired.
        SessionExpiryNotification => "SESSION_EXPIRY_NOTIFICATION",
    }
}

impl SessionProgress {
    /// Whether FinBox reports the whole session as processed.
    pub fn is_completed(&self) -> bool {
        *self == Self::Completed
    }
}

impl StageStatus {
    /// Whether the stage has finished, successfully or not.
    pub fn is_finished(&self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }

    /// Whether the stage failed.
    pub fn is_failed(&self) -> bool {
        *self == Self::Failed
    }
}

impl AccountStatus {
    /// Whether the account is reported as failed (anything but `completed` that names a failure).
    pub fn is_failed(&self) -> bool {
        *self == Self::Failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_read_case_insensitively_and_write_documented_spelling() {
        assert_eq!(Source::parse("PDF"), Source::Pdf);
        assert_eq!(Source::parse("PDF").as_str(), "pdf");
        assert_eq!(AccountStatus::parse("partial").as_str(), "PARTIAL");
        assert_eq!(StageStatus::parse("Failed"), StageStatus::Failed);
    }

    #[test]
    fn unknown_values_are_kept_and_compared_case_insensitively() {
        let queued = StageStatus::parse("queued");
        assert_eq!(queued, StageStatus::Other("queued".into()));
        assert_eq!(queued.as_str(), "queued");
        assert_eq!(Source::parse("Email"), Source::parse("EMAIL"));
        assert_eq!(
            serde_json::to_string(&Source::parse("Email")).unwrap(),
            "\"Email\""
        );
    }

    #[test]
    fn serde_round_trip() {
        for value in SessionProgress::KNOWN {
            let json = serde_json::to_string(value).unwrap();
            let back: SessionProgress = serde_json::from_str(&json).unwrap();
            assert_eq!(&back, value);
        }
        let back: SessionProgress = serde_json::from_str("\"paused\"").unwrap();
        assert_eq!(back, SessionProgress::Other("paused".into()));
    }
}
