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

/// A statement as a tracked session keeps it between polls. Many sessions are held for long,
/// so the usual statement (every value one this version knows, a UUID for its id, no message)
/// is kept in 32 bytes with nothing else allocated, instead of the 168 of a [`StatementProgress`] and its id's
/// text; one with an unknown value is kept as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeptStatement {
    /// Every value known and no message: the id, and `[source, identity, transaction,
    /// processing, fraud]` as codes (0 absent, `n` the `n`th known value).
    Known {
        statement_id: KeptId,
        codes: [u8; 5],
    },
    /// A value this version does not know, kept verbatim.
    Verbatim(Box<StatementProgress>),
}

/// A statement id as kept: FinBox's are UUIDs, held as their 16 bytes when written in the
/// canonical lowercase form (so the text given back is the one received), other text as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeptId {
    /// No id.
    Absent,
    /// A canonical lowercase UUID's bytes.
    Uuid([u8; 16]),
    /// Any other text.
    Text(Box<str>),
}

impl KeptId {
    fn keep(id: Option<String>) -> Self {
        match id {
            None => Self::Absent,
            Some(text) => match uuid_bytes(&text) {
                Some(bytes) => Self::Uuid(bytes),
                None => Self::Text(text.into_boxed_str()),
            },
        }
    }

    fn into_text(self) -> Option<String> {
        match self {
            Self::Absent => None,
            Self::Uuid(bytes) => Some(uuid_text(&bytes)),
            Self::Text(text) => Some(text.into()),
        }
    }

    fn is(&self, id: Option<&str>) -> bool {
        match (self, id) {
            (Self::Absent, None) => true,
            (Self::Uuid(bytes), Some(id)) => uuid_bytes(id).as_ref() == Some(bytes),
            (Self::Text(text), Some(id)) => **text == *id,
            _ => false,
        }
    }
}

/// Where the hyphens of a canonical UUID's 36 characters are.
const UUID_HYPHENS: [usize; 4] = [8, 13, 18, 23];

/// The bytes of `text` if it is a UUID in canonical lowercase form (`8-4-4-4-12` hex digits).
fn uuid_bytes(text: &str) -> Option<[u8; 16]> {
    let text = text.as_bytes();
    if text.len() != 36 || UUID_HYPHENS.iter().any(|&at| text.get(at) != Some(&b'-')) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut digits = text
        .iter()
        .enumerate()
        .filter(|(at, _)| !UUID_HYPHENS.contains(at))
        .map(|(_, &c)| digit(c));
    let mut bytes = [0u8; 16];
    for byte in &mut bytes {
        *byte = (digits.next()?? << 4) | digits.next()??;
    }
    Some(bytes)
}

/// The canonical lowercase text of a UUID's bytes.
fn uuid_text(bytes: &[u8; 16]) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(36);
    for (at, byte) in bytes.iter().enumerate() {
        if matches!(at, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// The code of a known value (0: absent); `None` for an unknown one.
fn code_of<T: PartialEq>(
    value: Option<&T>,
    known: &[T],
    is_other: impl Fn(&T) -> bool,
) -> Option<u8> {
    match value {
        None => Some(0),
        Some(value) if is_other(value) => None,
        Some(value) => known
            .iter()
            .position(|k| k == value)
            .and_then(|at| u8::try_from(at + 1).ok()),
    }
}

/// The known value a code stands for (0 and unknown codes: absent).
fn value_of<T: Clone>(code: u8, known: &[T]) -> Option<T> {
    known.get(usize::from(code).checked_sub(1)?).cloned()
}

impl KeptStatement {
    /// The compact form of `statement` (its texts moved, not copied).
    pub(crate) fn keep(statement: StatementProgress) -> Self {
        match Self::keep_codes(&statement) {
            // A message comes with a failed stage: rare, so kept with the rest as received.
            Some(codes) if statement.message.is_none() => Self::Known {
                statement_id: KeptId::keep(statement.statement_id),
                codes,
            },
            _ => Self::Verbatim(Box::new(statement)),
        }
    }

    /// The statement as received.
    pub(crate) fn progress(&self) -> StatementProgress {
        self.clone().into_progress()
    }

    /// The statement as received (its texts moved, not copied).
    pub(crate) fn into_progress(self) -> StatementProgress {
        match self {
            Self::Known {
                statement_id,
                codes: [source, identity, transaction, processing, fraud],
            } => StatementProgress {
                statement_id: statement_id.into_text(),
                source: value_of(source, Source::KNOWN),
                identity_status: value_of(identity, StageStatus::KNOWN),
                transaction_status: value_of(transaction, StageStatus::KNOWN),
                processing_status: value_of(processing, StageStatus::KNOWN),
                fraud_status: value_of(fraud, StageStatus::KNOWN),
                message: None,
            },
            Self::Verbatim(statement) => *statement,
        }
    }

    /// Whether `statement` is the one kept (as [`StatementProgress`]'s equality has it).
    pub(crate) fn is(&self, statement: &StatementProgress) -> bool {
        match self {
            Self::Known {
                statement_id,
                codes,
            } => {
                statement_id.is(statement.statement_id.as_deref())
                    && statement.message.is_none()
                    && Self::keep_codes(statement).as_ref() == Some(codes)
            }
            Self::Verbatim(kept) => **kept == *statement,
        }
    }

    fn keep_codes(statement: &StatementProgress) -> Option<[u8; 5]> {
        let stage = |status: &Option<StageStatus>| {
            code_of(status.as_ref(), StageStatus::KNOWN, StageStatus::is_other)
        };
        Some([
            code_of(statement.source.as_ref(), Source::KNOWN, Source::is_other)?,
            stage(&statement.identity_status)?,
            stage(&statement.transaction_status)?,
            stage(&statement.processing_status)?,
            stage(&statement.fraud_status)?,
        ])
    }

    /// The four stages' statuses.
    fn stages(&self) -> [Option<StageStatus>; STAGES_PER_STATEMENT] {
        match self {
            Self::Known {
                codes: [_, stages @ ..],
                ..
            } => stages.map(|code| value_of(code, StageStatus::KNOWN)),
            Self::Verbatim(statement) => statement.stages().map(|(_, status)| status.cloned()),
        }
    }

    /// Whether any stage failed.
    pub(crate) fn has_failed_stage(&self) -> bool {
        self.stages()
            .iter()
            .any(|status| status.as_ref().is_some_and(StageStatus::is_failed))
    }

    /// How many stages have finished (completed or failed).
    pub(crate) fn finished_stages(&self) -> usize {
        self.stages()
            .iter()
            .filter(|status| status.as_ref().is_some_and(StageStatus::is_finished))
            .count()
    }
}

/// `statements` kept, in a list of their number exactly (never one collected in place into
/// the received list's larger allocation).
pub(crate) fn keep_all(statements: Vec<StatementProgress>) -> Box<[KeptStatement]> {
    let mut kept = Vec::with_capacity(statements.len());
    kept.extend(statements.into_iter().map(KeptStatement::keep));
    kept.into_boxed_slice()
}

/// Whether `kept` holds exactly `statements`.
pub(crate) fn kept_are(kept: &[KeptStatement], statements: &[StatementProgress]) -> bool {
    kept.len() == statements.len() && kept.iter().zip(statements).all(|(k, s)| k.is(s))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn statement(json: &str) -> StatementProgress {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_kept_statement_is_small_and_gives_back_what_was_received() {
        assert!(std::mem::size_of::<KeptStatement>() <= 32);
        let cases = [
            r#"{"statement_id":"4164bc05-7b3f-4a5c-8e31-ca3c2648ec6b","source":"PDF","identity_status":"completed","transaction_status":"processing","processing_status":null,"fraud_status":"failed","message":"bad page"}"#,
            r#"{}"#,
            // Unknown values are kept verbatim, their spelling included.
            r#"{"statement_id":"s","source":"Scan","identity_status":"Queued"}"#,
            r#"{"fraud_status":"Paused","message":""}"#,
            // Ids that are not canonical lowercase UUIDs are kept as text.
            r#"{"statement_id":"4164BC05-7B3F-4A5C-8E31-CA3C2648EC6B","source":"pdf"}"#,
            r#"{"statement_id":"4164bc05-7b3f-4a5c-8e31-ca3c2648ec6","source":"pdf"}"#,
            r#"{"statement_id":"4164bc05-7b3f-4a5c-8e31-ca3c2648ec6bb","source":"pdf"}"#,
            r#"{"statement_id":"4164bc05+7b3f-4a5c-8e31-ca3c2648ec6b","source":"pdf"}"#,
            r#"{"statement_id":"4164bc05-7b3f-4a5c-8e31-ca3c2648ec6g","source":"pdf"}"#,
            r#"{"statement_id":"","source":"pdf"}"#,
        ];
        for json in cases {
            let received = statement(json);
            let kept = KeptStatement::keep(received.clone());
            assert!(kept.is(&received), "{json}");
            assert_eq!(kept.finished_stages(), received.finished_stages(), "{json}");
            assert_eq!(
                kept.has_failed_stage(),
                received.has_failed_stage(),
                "{json}"
            );
            let back = kept.into_progress();
            assert_eq!(back, received, "{json}");
            assert_eq!(
                serde_json::to_string(&back).unwrap(),
                serde_json::to_string(&received).unwrap(),
                "{json}"
            );
        }
        let known = KeptStatement::keep(statement(
            r#"{"source":"pdf","statement_id":"00ff10a0-7b3f-4a5c-8e31-ca3c2648ec6b"}"#,
        ));
        assert!(matches!(
            known,
            KeptStatement::Known {
                statement_id: KeptId::Uuid(_),
                ..
            }
        ));
        assert!(!known.is(&statement(
            r#"{"source":"pdf","statement_id":"00ff10a0-7b3f-4a5c-8e31-ca3c2648ec6c"}"#
        )));
        assert!(!known.is(&statement(r#"{"source":"pdf"}"#)));
        let unknown = KeptStatement::keep(statement(r#"{"source":"Scan"}"#));
        assert!(matches!(unknown, KeptStatement::Verbatim(_)));
        let with_message = KeptStatement::keep(statement(r#"{"message":"bad page"}"#));
        assert!(matches!(with_message, KeptStatement::Verbatim(_)));
        // Another report is told apart from the kept one.
        let kept = KeptStatement::keep(statement(r#"{"identity_status":"processing"}"#));
        assert!(!kept.is(&statement(r#"{"identity_status":"completed"}"#)));
        assert!(!kept.is(&statement(
            r#"{"identity_status":"processing","statement_id":"x"}"#
        )));
        assert!(!kept_are(&[kept], &[]));
    }
}
