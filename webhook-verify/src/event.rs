//! Typed webhook events, read strictly from the JSON tree (`strict_json`) with errors that name the field.

use std::borrow::Cow;

use bankconnect_core::{
    AccountResult, AccountStatus, EventName, SessionId, Source, StageStatus, StatementErrorCode,
    WebhookHint,
};
use serde::Serialize;

use crate::limits::Limits;
use crate::strict_json::{self, Json};

/// Why a body is not a valid webhook event. `field` is a path such as `accounts[0].error_code`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The body is not acceptable JSON (syntax, duplicate keys, limits, trailing data).
    #[error("malformed JSON: {0}")]
    Json(String),
    /// A field is missing, of the wrong type, or out of bounds.
    #[error("{field}: {problem}")]
    Field {
        /// Where.
        field: String,
        /// What is wrong.
        problem: String,
    },
}

fn field_error(field: &str, problem: impl Into<String>) -> ParseError {
    ParseError::Field {
        field: if field.is_empty() {
            "(body)".to_owned()
        } else {
            field.to_owned()
        },
        problem: problem.into(),
    }
}

/// A webhook event, typed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum WebhookEvent {
    /// ENRICHMENT_NOTIFICATION: processing finished.
    Enrichment(EnrichmentEvent),
    /// SESSION_REQUIREMENT_COMPLETION_NOTIFICATION or SESSION_EXPIRY_NOTIFICATION.
    Session(SessionEvent),
    /// The older entity payload (no `event_name`).
    LegacyEntity(LegacyEntityEvent),
    /// An event name this version does not know, kept with what could be read of it.
    Other(OtherEvent),
}

/// ENRICHMENT_NOTIFICATION (older and newer shapes).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnrichmentEvent {
    /// Always `ENRICHMENT_NOTIFICATION`.
    pub event_name: EventName,
    /// The session.
    pub session_id: SessionId,
    /// Whether insights can be fetched (newer pages only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insights_available: Option<bool>,
    /// The accounts' verdicts.
    pub accounts: Vec<EnrichmentAccount>,
}

/// One account of an ENRICHMENT_NOTIFICATION.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnrichmentAccount {
    /// The verdict, with error code and extracted detail.
    #[serde(flatten)]
    pub result: AccountResult,
    /// The account holder's name (newer pages).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `individual`, … (newer pages).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_category: Option<String>,
    /// How statements were obtained (`PDF`, …; newer pages).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_types: Option<Vec<String>>,
}

/// SESSION_REQUIREMENT_COMPLETION_NOTIFICATION / SESSION_EXPIRY_NOTIFICATION.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionEvent {
    /// Which of the two.
    pub event_name: EventName,
    /// The session.
    pub session_id: SessionId,
    /// FinBox's message (`Upload Completed`, …).
    pub message: Option<String>,
    /// The requested statement period.
    pub session_date_range: Option<DateRange>,
    /// The accounts.
    pub accounts: Vec<UploadAccount>,
}

/// A `{from_date, to_date}` range, verbatim (`DD/MM/YYYY`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DateRange {
    /// Start.
    pub from_date: Option<String>,
    /// End.
    pub to_date: Option<String>,
}

/// One account of an upload-completion or expiry notification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UploadAccount {
    /// The account ID.
    pub account_id: Option<String>,
    /// The (possibly masked) account number.
    pub account_number: Option<String>,
    /// The bank.
    pub bank_name: Option<String>,
    /// `PARTIAL`, `completed`, … .
    pub account_status: Option<AccountStatus>,
    /// Months with data, `YYYY-MM`, verbatim.
    pub months: Vec<String>,
    /// Periods without data.
    pub missing_data: Vec<DateRange>,
    /// The statements.
    pub statements: Vec<UploadStatement>,
    /// Created, verbatim.
    pub created_at: Option<String>,
    /// Last updated, verbatim.
    pub last_updated_at: Option<String>,
}

/// One statement of an upload notification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UploadStatement {
    /// The statement ID.
    pub statement_id: Option<String>,
    /// Its status.
    pub statement_status: Option<StageStatus>,
    /// Why it failed; `""` reads as none.
    pub error_code: Option<StatementErrorCode>,
    /// FinBox's explanation; `""` reads as none.
    pub error_message: Option<String>,
    /// Where it came from.
    pub source: Option<Source>,
    /// The uploaded file's name.
    pub upload_file_name: Option<String>,
    /// The period it covers.
    pub statement_date_range: Option<DateRange>,
    /// Created, verbatim.
    pub created_at: Option<String>,
}

/// The older entity payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LegacyEntityEvent {
    /// The entity.
    pub entity_id: String,
    /// The statement, if any (`""` reads as none).
    pub statement_id: Option<String>,
    /// The link, if any.
    pub link_id: Option<String>,
    /// `completed` or `failed`.
    pub progress: StageStatus,
    /// Why it failed.
    pub reason: Option<String>,
}

/// An event whose name this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OtherEvent {
    /// The name, verbatim.
    pub event_name: EventName,
    /// The session, if the event names a valid one.
    pub session_id: Option<SessionId>,
}

impl WebhookEvent {
    /// Parses a webhook body strictly under `limits`. Verify signatures on the raw bytes first.
    pub fn parse(body: &[u8], limits: &Limits) -> Result<Self, ParseError> {
        if body.len() > limits.max_body {
            return Err(ParseError::Json(format!(
                "body of {} bytes exceeds the limit of {}",
                body.len(),
                limits.max_body
            )));
        }
        let json = strict_json::parse(body, limits).map_err(|err| ParseError::Json(err.0))?;
        let root = Obj::new(&json, "")?;
        match root.opt_str("event_name")? {
            Some(name) => {
                let name = EventName::parse(name);
                match name {
                    EventName::EnrichmentNotification => {
                        Ok(Self::Enrichment(enrichment(&root, name, limits)?))
                    }
                    EventName::SessionRequirementCompletionNotification
                    | EventName::SessionExpiryNotification => {
                        Ok(Self::Session(session_event(&root, name, limits)?))
                    }
                    _ => Ok(Self::Other(OtherEvent {
                        session_id: root
                            .opt_str("session_id")?
                            .and_then(|id| SessionId::new(id).ok()),
                        event_name: name,
                    })),
                }
            }
            None if root.has("entity_id") => Ok(Self::LegacyEntity(legacy(&root)?)),
            None => Err(field_error(
                "event_name",
                "missing (and no entity_id for the older entity payload)",
            )),
        }
    }

    /// The event's name (`None` for the older entity payload).
    pub fn event_name(&self) -> Option<&EventName> {
        match self {
            Self::Enrichment(event) => Some(&event.event_name),
            Self::Session(event) => Some(&event.event_name),
            Self::Other(event) => Some(&event.event_name),
            Self::LegacyEntity(_) => None,
        }
    }

    /// The session the event is about, if any.
    pub fn session_id(&self) -> Option<&SessionId> {
        match self {
            Self::Enrichment(event) => Some(&event.session_id),
            Self::Session(event) => Some(&event.session_id),
            Self::Other(event) => event.session_id.as_ref(),
            Self::LegacyEntity(_) => None,
        }
    }

    /// The accounts' verdicts, for ENRICHMENT_NOTIFICATION.
    pub fn account_results(&self) -> Vec<AccountResult> {
        match self {
            Self::Enrichment(event) => event.accounts.iter().map(|a| a.result.clone()).collect(),
            _ => Vec::new(),
        }
    }

    /// What a tracked session learns from this event: only ENRICHMENT_NOTIFICATION ends
    /// processing. The hint is unauthenticated (the event alone proves nothing); a receiver's
    /// [`Delivery::hint`](crate::Delivery::hint) marks it authenticated when it checked a token
    /// or signature.
    pub fn hint(&self) -> Option<WebhookHint> {
        match self {
            Self::Enrichment(event) => Some(WebhookHint {
                session_id: event.session_id.clone(),
                event_name: Some(event.event_name.as_str().to_owned()),
                accounts: self.account_results(),
                authenticated: false,
            }),
            _ => None,
        }
    }

    /// The normalized JSON of the CLI contract:
    /// `{"event_name", "session_id", "duplicate", "accounts": [...]}` plus the event's other fields.
    pub fn to_json(&self, duplicate: bool) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let serde_json::Value::Object(map) = &mut value {
            map.entry("event_name").or_insert(serde_json::Value::Null);
            map.entry("session_id").or_insert(serde_json::Value::Null);
            map.insert("duplicate".into(), serde_json::Value::Bool(duplicate));
            map.entry("accounts")
                .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        }
        value
    }
}

fn enrichment(
    root: &Obj<'_>,
    name: EventName,
    limits: &Limits,
) -> Result<EnrichmentEvent, ParseError> {
    let session_id = root.session_id()?;
    let insights_available = root.opt_bool("insights_available")?;
    let mut accounts = Vec::new();
    for (i, item) in root
        .opt_array("accounts", limits.max_accounts)?
        .iter()
        .enumerate()
    {
        let account = Obj::item(item, "accounts", i)?;
        let mut result = AccountResult::new(
            account.opt_text("account_id")?,
            account.opt_text("bank_name")?,
            account.opt_str("account_status")?.map(AccountStatus::parse),
            account.opt_str("error_code")?.map(Into::into),
            account.opt_str("error_message")?.map(Into::into),
        );
        result.account_number = account
            .opt_text("account_number")?
            .filter(|t| !t.is_empty());
        let attempt_types = match account.get("attempt_types") {
            None | Some(Json::Null) => None,
            Some(_) => Some(
                account
                    .opt_array("attempt_types", limits.max_statements)?
                    .iter()
                    .enumerate()
                    .map(|(j, t)| string_at(t, || format!("accounts[{i}].attempt_types[{j}]")))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        accounts.push(EnrichmentAccount {
            result,
            name: account.opt_nonempty("name")?,
            account_category: account.opt_nonempty("account_category")?,
            attempt_types,
        });
    }
    Ok(EnrichmentEvent {
        event_name: name,
        session_id,
        insights_available,
        accounts,
    })
}

fn session_event(
    root: &Obj<'_>,
    name: EventName,
    limits: &Limits,
) -> Result<SessionEvent, ParseError> {
    let mut accounts = Vec::new();
    for (i, item) in root
        .opt_array("accounts", limits.max_accounts)?
        .iter()
        .enumerate()
    {
        let path = format!("accounts[{i}]");
        let account = Obj::new(item, &path)?;
        let months = account
            .opt_array("months", limits.max_statements)?
            .iter()
            .enumerate()
            .map(|(j, m)| string_at(m, || format!("{path}.months[{j}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let missing_data = account
            .opt_array("missing_data", limits.max_statements)?
            .iter()
            .enumerate()
            .map(|(j, r)| date_range(&Obj::new(r, &format!("{path}.missing_data[{j}]"))?))
            .collect::<Result<Vec<_>, _>>()?;
        let mut statements = Vec::new();
        for (j, item) in account
            .opt_array("statements", limits.max_statements)?
            .iter()
            .enumerate()
        {
            let statement = Obj::new(item, &format!("{path}.statements[{j}]"))?;
            statements.push(UploadStatement {
                statement_id: statement.opt_nonempty("statement_id")?,
                statement_status: statement
                    .opt_str("statement_status")?
                    .map(StageStatus::parse),
                error_code: statement
                    .opt_nonempty("error_code")?
                    .map(|c| StatementErrorCode::parse(&c)),
                error_message: statement.opt_nonempty("error_message")?,
                source: statement.opt_str("source")?.map(Source::parse),
                upload_file_name: statement.opt_nonempty("upload_file_name")?,
                statement_date_range: statement
                    .opt_obj("statement_date_range")?
                    .map(|r| date_range(&r))
                    .transpose()?,
                created_at: statement.opt_nonempty("created_at")?,
            });
        }
        accounts.push(UploadAccount {
            account_id: account.opt_text("account_id")?.filter(|t| !t.is_empty()),
            account_number: account
                .opt_text("account_number")?
                .filter(|t| !t.is_empty()),
            bank_name: account.opt_text("bank_name")?.filter(|t| !t.is_empty()),
            account_status: account.opt_str("account_status")?.map(AccountStatus::parse),
            months,
            missing_data,
            statements,
            created_at: account.opt_nonempty("created_at")?,
            last_updated_at: account.opt_nonempty("last_updated_at")?,
        });
    }
    Ok(SessionEvent {
        event_name: name,
        session_id: root.session_id()?,
        message: root.opt_nonempty("message")?,
        session_date_range: root
            .opt_obj("session_date_range")?
            .map(|r| date_range(&r))
            .transpose()?,
        accounts,
    })
}

fn legacy(root: &Obj<'_>) -> Result<LegacyEntityEvent, ParseError> {
    Ok(LegacyEntityEvent {
        entity_id: root.req_str("entity_id")?.to_owned(),
        statement_id: root.opt_nonempty("statement_id")?,
        link_id: root.opt_nonempty("link_id")?,
        progress: StageStatus::parse(root.req_str("progress")?),
        reason: root.opt_nonempty("reason")?,
    })
}

fn date_range(obj: &Obj<'_>) -> Result<DateRange, ParseError> {
    Ok(DateRange {
        from_date: obj.opt_nonempty("from_date")?,
        to_date: obj.opt_nonempty("to_date")?,
    })
}

fn string_at(value: &Json<'_>, path: impl FnOnce() -> String) -> Result<String, ParseError> {
    match value {
        Json::String(text) => Ok(text.to_string()),
        other => Err(field_error(
            &path(),
            format!("expected a string, found {}", other.kind()),
        )),
    }
}

/// An object with where it sits (`parent[index]`), for field-naming errors. The path is only
/// formatted when an error needs it, so reading valid events allocates no paths.
struct Obj<'a> {
    map: &'a [(Cow<'a, str>, Json<'a>)],
    parent: Cow<'a, str>,
    index: Option<usize>,
}

impl<'a> Obj<'a> {
    fn new(value: &'a Json<'a>, path: &str) -> Result<Self, ParseError> {
        Self::at(value, Cow::Owned(path.to_owned()), None)
    }

    /// The `index`-th item of the array at `parent`.
    fn item(value: &'a Json<'a>, parent: &'a str, index: usize) -> Result<Self, ParseError> {
        Self::at(value, Cow::Borrowed(parent), Some(index))
    }

    fn at(
        value: &'a Json<'a>,
        parent: Cow<'a, str>,
        index: Option<usize>,
    ) -> Result<Self, ParseError> {
        match value {
            Json::Object(map) => Ok(Self { map, parent, index }),
            other => {
                let path = match index {
                    Some(i) => format!("{parent}[{i}]"),
                    None => parent.into_owned(),
                };
                Err(field_error(
                    &path,
                    format!("expected an object, found {}", other.kind()),
                ))
            }
        }
    }

    fn path(&self) -> String {
        match self.index {
            Some(i) => format!("{}[{i}]", self.parent),
            None => self.parent.to_string(),
        }
    }

    fn field(&self, key: &str) -> String {
        let path = self.path();
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    }

    fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    fn get(&self, key: &str) -> Option<&'a Json<'a>> {
        Json::get(self.map, key)
    }

    fn req_str(&self, key: &str) -> Result<&'a str, ParseError> {
        match self.get(key) {
            Some(Json::String(text)) => Ok(text),
            Some(other) => Err(field_error(
                &self.field(key),
                format!("expected a string, found {}", other.kind()),
            )),
            None => Err(field_error(&self.field(key), "missing")),
        }
    }

    fn opt_str(&self, key: &str) -> Result<Option<&'a str>, ParseError> {
        match self.get(key) {
            Some(Json::String(text)) => Ok(Some(text)),
            Some(Json::Null) | None => Ok(None),
            Some(other) => Err(field_error(
                &self.field(key),
                format!("expected a string or null, found {}", other.kind()),
            )),
        }
    }

    /// A pass-through field kept as text whatever scalar type it drifts to (a numeric
    /// `account_id`): a string as is, a number or boolean as written; `null` is none.
    /// Arrays and objects are still refused: that is structure, not drift.
    fn opt_text(&self, key: &str) -> Result<Option<String>, ParseError> {
        match self.get(key) {
            Some(Json::String(text)) => Ok(Some(text.to_string())),
            Some(Json::Number(n)) if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 => {
                Ok(Some(format!("{}", *n as i64)))
            }
            Some(Json::Number(n)) => Ok(Some(n.to_string())),
            Some(Json::Bool(b)) => Ok(Some(b.to_string())),
            Some(Json::Null) | None => Ok(None),
            Some(other) => Err(field_error(
                &self.field(key),
                format!("expected a string or null, found {}", other.kind()),
            )),
        }
    }

    /// A string where `""` and `null` both mean none.
    fn opt_nonempty(&self, key: &str) -> Result<Option<String>, ParseError> {
        Ok(self.opt_str(key)?.filter(|t| !t.is_empty()).map(Into::into))
    }

    fn opt_bool(&self, key: &str) -> Result<Option<bool>, ParseError> {
        match self.get(key) {
            Some(Json::Bool(value)) => Ok(Some(*value)),
            Some(Json::Null) | None => Ok(None),
            Some(other) => Err(field_error(
                &self.field(key),
                format!("expected a boolean or null, found {}", other.kind()),
            )),
        }
    }

    fn opt_array(&self, key: &str, max: usize) -> Result<&'a [Json<'a>], ParseError> {
        match self.get(key) {
            Some(Json::Array(items)) if items.len() > max => Err(field_error(
                &self.field(key),
                format!("{} items exceed the limit of {max}", items.len()),
            )),
            Some(Json::Array(items)) => Ok(items),
            Some(Json::Null) | None => Ok(&[]),
            Some(other) => Err(field_error(
                &self.field(key),
                format!("expected an array or null, found {}", other.kind()),
            )),
        }
    }

    fn opt_obj(&self, key: &str) -> Result<Option<Obj<'a>>, ParseError> {
        match self.get(key) {
            Some(Json::Null) | None => Ok(None),
            Some(value) => Obj::new(value, &self.field(key)).map(Some),
        }
    }

    fn session_id(&self) -> Result<SessionId, ParseError> {
        let text = self.req_str("session_id")?;
        SessionId::new(text).map_err(|err| field_error(&self.field("session_id"), err.to_string()))
    }
}
