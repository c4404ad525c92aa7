//! A session's history: the events written in the same transaction as the change each records
//! (docs/operations.md), bounded per session, and the details a delivery attempt leaves.

use std::time::{Duration, SystemTime};

use serde_json::{json, Map, Value};

/// The first events of a session always kept.
pub const FIRST_KEPT: u64 = 20;
/// The last events of a session always kept; those in between the first and the last go.
pub const LAST_KEPT: u64 = 200;
/// Most bytes of text kept from FinBox or the lender's back end in one field.
const TEXT_MAX: usize = 1024;
/// Most bytes of a delivery answer kept.
pub(crate) const EXCERPT_MAX: usize = 256;

/// One entry of a session's history, oldest first.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Event {
    /// Its number within the session, from 1.
    pub seq: u64,
    /// When it happened.
    pub at: SystemTime,
    /// What happened: `added`, `webhook`, `progress`, `api_error`, `outcome`,
    /// `delivery_attempt`, `delivered`, `given_up`, `redeliver`, `poll_requested`, `cancelled`,
    /// `lease`, …
    pub kind: String,
    /// The replica that wrote it, when known.
    pub replica: Option<String>,
    /// The kind's own fields, each always present (null or false where it does not apply).
    pub fields: Map<String, Value>,
}

/// One page of a session's history.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EventPage {
    /// The events, oldest first.
    pub events: Vec<Event>,
    /// Where the next page starts; `None` on the last.
    pub next_cursor: Option<String>,
    /// Events between the first and the last kept that went to keep the history bounded.
    pub dropped: u64,
}

/// An event to write.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NewEvent {
    /// Its kind.
    pub kind: &'static str,
    /// Its fields.
    pub fields: Map<String, Value>,
}

/// What one delivery attempt saw, for its `delivery_attempt` event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttemptDetail {
    /// The HTTP status answered, if any.
    pub status: Option<u16>,
    /// The class of failure: `timeout`, `connect`, `request`, `http_4xx`, `http_5xx`, …; `None`
    /// when it was delivered.
    pub error: Option<String>,
    /// How long the attempt took.
    pub duration: Duration,
    /// The start of the answer's body, as text with control characters escaped.
    pub response_excerpt: Option<String>,
}

impl AttemptDetail {
    /// An attempt's detail; `response` is the start of the answer's body (escaped and cut to
    /// 256 bytes here).
    pub fn new(
        status: Option<u16>,
        error: Option<String>,
        duration: Duration,
        response: Option<&[u8]>,
    ) -> Self {
        Self {
            status,
            error,
            duration,
            response_excerpt: response.map(|bytes| escaped(bytes, EXCERPT_MAX)),
        }
    }
}

/// Bytes from outside as text: invalid UTF-8 replaced, control characters escaped (`\n`,
/// `\u{1b}`), at most `max` bytes.
pub(crate) fn escaped(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    for ch in text.chars() {
        let piece: String = if ch.is_control() {
            ch.escape_default().collect()
        } else {
            ch.to_string()
        };
        if out.len() + piece.len() > max {
            break;
        }
        out.push_str(&piece);
    }
    out
}

fn text(value: Option<&str>) -> Value {
    value.map_or(Value::Null, |v| {
        Value::String(escaped(v.as_bytes(), TEXT_MAX))
    })
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

pub(crate) fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

impl NewEvent {
    fn new(kind: &'static str, fields: Value) -> Self {
        Self {
            kind,
            fields: object(fields),
        }
    }

    /// A poll showed a change: the session's progress, each statement's stages, polls so far.
    pub fn progress(session_progress: Option<&str>, statements: Value, polls: u32) -> Self {
        Self::new(
            "progress",
            json!({"session_progress": session_progress, "statements": statements, "polls": polls}),
        )
    }

    /// FinBox refused or failed, `count` times in a row.
    pub fn api_error(code: &str, status: Option<u16>, message: &str, count: u32) -> Self {
        Self::new(
            "api_error",
            json!({"code": text(Some(code)), "status": status, "message": text(Some(message)), "count": count}),
        )
    }

    pub(crate) fn added(reference: Option<&str>, max_wait: Option<Duration>) -> Self {
        Self::new(
            "added",
            json!({
                "reference": text(reference),
                "max_wait": max_wait.map(|d| humantime::format_duration(d).to_string()),
                "max_wait_ms": max_wait.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            }),
        )
    }

    pub(crate) fn webhook(event_name: Option<&str>, authenticated: bool, duplicate: bool) -> Self {
        Self::new(
            "webhook",
            json!({"event_name": text(event_name), "authenticated": authenticated, "duplicate": duplicate}),
        )
    }

    pub(crate) fn outcome(outcome: &Value) -> Self {
        Self::new(
            "outcome",
            json!({
                "outcome": outcome.get("outcome").cloned().unwrap_or(Value::Null),
                "notified_by": outcome.get("notified_by").cloned().unwrap_or(Value::Null),
            }),
        )
    }

    pub(crate) fn redeliver(by: &str, force: bool) -> Self {
        Self::new("redeliver", json!({"by": by, "force": force}))
    }

    pub(crate) fn by(kind: &'static str, by: &str) -> Self {
        Self::new(kind, json!({ "by": by }))
    }

    pub(crate) fn lease(from: Option<&str>) -> Self {
        Self::new("lease", json!({ "from": from }))
    }

    pub(crate) fn body(&self) -> String {
        // Written from the fields in place (an object of them), not from a copy of them.
        serde_json::to_string(&self.fields).unwrap_or_else(|_| "{}".to_owned())
    }

    /// As it is written.
    pub(crate) fn rendered(&self) -> Rendered {
        Rendered {
            kind: self.kind,
            body: self.body(),
        }
    }
}

/// An event as it is written: its kind and its fields as JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rendered {
    pub(crate) kind: &'static str,
    pub(crate) body: String,
}

/// A `delivery_attempt` event's fields, in the order a map of them sorts its keys: written
/// straight from the attempt, without a map built and dropped per delivery.
#[derive(serde::Serialize)]
struct AttemptFields {
    attempt: u32,
    duration_ms: u64,
    error: Option<String>,
    next_attempt_at: Option<String>,
    response_excerpt: Option<String>,
    status: Option<u16>,
}

/// The `delivery_attempt` event of attempt number `attempt`.
pub(crate) fn delivery_attempt(
    attempt: u32,
    detail: &AttemptDetail,
    next_attempt_at: Option<SystemTime>,
) -> Rendered {
    let fields = AttemptFields {
        attempt,
        duration_ms: u64::try_from(detail.duration.as_millis()).unwrap_or(u64::MAX),
        error: detail
            .error
            .as_deref()
            .map(|v| escaped(v.as_bytes(), TEXT_MAX)),
        next_attempt_at: next_attempt_at.map(rfc3339),
        response_excerpt: detail
            .response_excerpt
            .as_deref()
            .map(|t| escaped(t.as_bytes(), EXCERPT_MAX)),
        status: detail.status,
    };
    Rendered {
        kind: "delivery_attempt",
        body: serde_json::to_string(&fields).unwrap_or_else(|_| "{}".to_owned()),
    }
}

/// The event that ends a delivery (`delivered` or `given_up`) after `attempts`.
pub(crate) fn delivery_ended(kind: &'static str, attempts: u32) -> Rendered {
    Rendered {
        kind,
        body: format!(r#"{{"attempts":{attempts}}}"#),
    }
}

/// The seq of the event that falls out of the bound when event `seq` is written, if any.
pub(crate) fn falls_out(seq: i64) -> Option<i64> {
    let last = i64::try_from(LAST_KEPT).unwrap_or(i64::MAX);
    let first = i64::try_from(FIRST_KEPT).unwrap_or(i64::MAX);
    let out = seq - last;
    (out > first).then_some(out)
}

/// How many events went, once `written` were written.
pub(crate) fn dropped(written: i64) -> u64 {
    u64::try_from(written)
        .unwrap_or(0)
        .saturating_sub(FIRST_KEPT + LAST_KEPT)
}

/// Events as read: `(seq, at_ms, kind, replica, body)`.
pub(crate) fn events(
    rows: Vec<(i64, i64, String, Option<String>, String)>,
) -> Result<Vec<Event>, crate::StoreError> {
    rows.into_iter()
        .map(|(seq, at, kind, replica, body)| {
            let fields = match serde_json::from_str(&body) {
                Ok(Value::Object(map)) => map,
                _ => {
                    return Err(crate::StoreError::Corrupt(format!(
                        "event {seq} of a session"
                    )))
                }
            };
            Ok(Event {
                seq: u64::try_from(seq).unwrap_or(0),
                at: crate::model::from_ms(at),
                kind,
                replica,
                fields,
            })
        })
        .collect()
}

/// What finishing writes beside the outcome itself.
#[derive(Debug, Clone)]
pub(crate) struct OutcomeFacts {
    /// `completed`, `timed_out`, … (for the filter).
    pub(crate) kind: Option<String>,
    /// Its error codes (for the filter and the counts).
    pub(crate) codes: Vec<String>,
    /// Its `outcome` event.
    pub(crate) event: NewEvent,
}

impl OutcomeFacts {
    pub(crate) fn of(outcome: &Value) -> Self {
        Self {
            kind: outcome
                .get("outcome")
                .and_then(Value::as_str)
                .filter(|kind| kind.len() <= 64)
                .map(str::to_owned),
            codes: error_codes(outcome),
            event: NewEvent::outcome(outcome),
        }
    }
}

/// A page of events from `limit + 1` rows read, `written` in all so far.
pub(crate) fn page(
    rows: Vec<(i64, i64, String, Option<String>, String)>,
    limit: i64,
    written: i64,
) -> Result<EventPage, crate::StoreError> {
    let mut events = events(rows)?;
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = events.len() > limit;
    events.truncate(limit);
    let next_cursor = if more {
        events.last().map(|event| format!("e{:x}", event.seq))
    } else {
        None
    };
    Ok(EventPage {
        events,
        next_cursor,
        dropped: dropped(written),
    })
}

/// The position an events cursor names.
pub(crate) fn decode_cursor(cursor: &str) -> Result<i64, crate::StoreError> {
    cursor
        .strip_prefix('e')
        .filter(|hex| !hex.is_empty() && hex.len() <= 16)
        .and_then(|hex| i64::from_str_radix(hex, 16).ok())
        .filter(|seq| *seq >= 0)
        .ok_or(crate::StoreError::InvalidCursor)
}

/// The error codes of an outcome (any account's, and the API error's), for the filter.
pub(crate) fn error_codes(outcome: &Value) -> Vec<String> {
    let mut codes: Vec<String> = outcome
        .get("accounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|account| account.get("error_code").and_then(Value::as_str))
        .chain(
            outcome
                .get("error")
                .and_then(|e| e.get("code"))
                .and_then(Value::as_str),
        )
        .filter(|code| !code.is_empty() && code.len() <= 128)
        .map(str::to_owned)
        .collect();
    codes.sort();
    codes.dedup();
    codes.truncate(32);
    codes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_twenty_and_the_last_two_hundred_stay() {
        assert_eq!(falls_out(220), None);
        assert_eq!(falls_out(221), Some(21));
        assert_eq!(falls_out(400), Some(200));
        assert_eq!(dropped(220), 0);
        assert_eq!(dropped(225), 5);
    }

    #[test]
    fn delivery_events_are_the_json_of_their_fields() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_790_000_000_123);
        let details = [
            AttemptDetail::new(Some(200), None, Duration::from_millis(12), Some(b"ok")),
            AttemptDetail::new(
                Some(503),
                Some("http_5xx \"\n\u{1b}".into()),
                Duration::from_secs(3),
                Some("é\x00\"</>".as_bytes()),
            ),
            AttemptDetail::new(None, Some("x".repeat(2000)), Duration::MAX, None),
        ];
        for (detail, next) in details.iter().zip([None, Some(at), Some(at)]) {
            let fields = json!({
                "attempt": 7,
                "status": detail.status,
                "error": text(detail.error.as_deref()),
                "duration_ms": u64::try_from(detail.duration.as_millis()).unwrap_or(u64::MAX),
                "response_excerpt": detail.response_excerpt.as_deref().map(|t| escaped(t.as_bytes(), EXCERPT_MAX)),
                "next_attempt_at": next.map(rfc3339),
            });
            assert_eq!(
                delivery_attempt(7, detail, next),
                NewEvent::new("delivery_attempt", fields).rendered()
            );
        }
        assert_eq!(
            delivery_ended("given_up", 12),
            NewEvent::new("given_up", json!({"attempts": 12})).rendered()
        );
    }

    #[test]
    fn outside_text_is_escaped_and_bounded() {
        assert_eq!(escaped(b"ok\n\x1b[31m", 100), "ok\\n\\u{1b}[31m");
        assert_eq!(escaped(&[b'a'; 400], EXCERPT_MAX).len(), EXCERPT_MAX);
        assert_eq!(escaped(&[0xff, b'x'], 10), "\u{fffd}x");
        // A multi-byte character is never cut in half.
        assert_eq!(escaped("é".repeat(200).as_bytes(), 5), "éé");
    }

    #[test]
    fn error_codes_come_from_accounts_and_the_api_error() {
        let outcome = json!({
            "accounts": [{"error_code": "INCOMPLETE_MONTHS"}, {"error_code": null}, {"error_code": "INCOMPLETE_MONTHS"}],
            "error": {"code": "SESSION_NOT_FOUND"}
        });
        assert_eq!(
            error_codes(&outcome),
            ["INCOMPLETE_MONTHS", "SESSION_NOT_FOUND"]
        );
        assert!(error_codes(&json!({})).is_empty());
    }
}
