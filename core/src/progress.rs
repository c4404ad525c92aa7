//! The progress report: what `GET …/session_data/<id>/progress/` says about a session.

use serde::{Deserialize, Deserializer, Serialize};

use crate::ids::SessionId;
use crate::status::{SessionProgress, Source, StageStatus};

/// A session's progress, normalized.
///
/// Read from the upstream body (whose list is called `progress`) and written in the normalized
/// shape of the CLI contract (the list is called `statements`); either name is accepted on input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::exhaustive_structs)] // the documented progress object, field for field
pub struct ProgressReport {
    /// The session this report is about.
    pub session_id: SessionId,
    /// The session's overall progress.
    pub session_progress: SessionProgress,
    /// Per-statement stage statuses.
    #[serde(alias = "progress", default, deserialize_with = "null_as_empty")]
    pub statements: Vec<StatementProgress>,
}

/// One statement's processing stages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::exhaustive_structs)] // the documented statement object, field for field
pub struct StatementProgress {
    /// The statement ID, as sent (kept as text so that an unusual ID never loses the report).
    #[serde(default)]
    pub statement_id: Option<String>,
    /// Where the statement came from.
    #[serde(default)]
    pub source: Option<Source>,
    /// Identity extraction.
    #[serde(default)]
    pub identity_status: Option<StageStatus>,
    /// Transaction extraction.
    #[serde(default)]
    pub transaction_status: Option<StageStatus>,
    /// Enrichment.
    #[serde(default)]
    pub processing_status: Option<StageStatus>,
    /// Fraud checks.
    #[serde(default)]
    pub fraud_status: Option<StageStatus>,
    /// Why a stage failed; `""` and `null` both read as none.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub message: Option<String>,
}

/// Reads `null`, `""` and an absent field alike as `None`.
pub(crate) fn empty_as_none<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(deserializer)?;
    Ok(value.filter(|text| !text.is_empty()))
}

pub(crate) fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// The number of processing stages per statement.
pub(crate) const STAGES_PER_STATEMENT: usize = 4;

impl StatementProgress {
    /// The four stages, named as upstream names them.
    pub fn stages(&self) -> [(&'static str, Option<&StageStatus>); STAGES_PER_STATEMENT] {
        [
            ("identity_status", self.identity_status.as_ref()),
            ("transaction_status", self.transaction_status.as_ref()),
            ("processing_status", self.processing_status.as_ref()),
            ("fraud_status", self.fraud_status.as_ref()),
        ]
    }

    /// Whether any stage failed.
    pub fn has_failed_stage(&self) -> bool {
        self.stages()
            .iter()
            .any(|(_, status)| status.is_some_and(StageStatus::is_failed))
    }

    /// How many stages have finished (completed or failed).
    pub fn finished_stages(&self) -> usize {
        self.stages()
            .iter()
            .filter(|(_, status)| status.is_some_and(StageStatus::is_finished))
            .count()
    }
}

impl ProgressReport {
    /// Whether FinBox reports the session as processed.
    pub fn is_completed(&self) -> bool {
        self.session_progress.is_completed()
    }

    /// Whether any statement has a failed stage.
    pub fn has_failed_stage(&self) -> bool {
        self.statements
            .iter()
            .any(StatementProgress::has_failed_stage)
    }

    /// `(finished stages, total stages)` over all statements, for progress displays.
    pub fn stage_counts(&self) -> (usize, usize) {
        let done = self
            .statements
            .iter()
            .map(StatementProgress::finished_stages)
            .sum();
        (done, self.statements.len() * STAGES_PER_STATEMENT)
    }
}
