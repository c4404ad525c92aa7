//! `/v1/sessions`: sessions to track, added (one or a batch), read, listed and cancelled. What
//! is answered 2xx is committed to the store first. The request and answer types here are the
//! ones the handlers parse and serialize, and the ones the OpenAPI document describes.

use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bankconnect_core::WebhookHint;
use bankconnect_store::{Added, NewSession, Purge, SessionFilter, SessionState, StoreError};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::body::{self, path_segment, session_id};
use super::App;
use crate::error::{ApiError, ErrorBody};
use crate::record::{record_body, RecordBody};
use crate::tracking::Command;

/// Most sessions in one batch.
pub(crate) const MAX_BATCH: usize = 1000;
/// Longest caller's reference, in bytes.
pub(crate) const MAX_REFERENCE: usize = 1024;

/// The sessions routes (behind the bearer check).
pub(super) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(add_sessions, list_sessions))
        .routes(routes!(get_session, cancel_session))
}

/// One session to add.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NewSessionBody {
    /// FinBox's session id.
    pub session_id: String,
    /// Free text of the caller's (a loan id, say), any characters, at most 1 024 bytes.
    #[schema(max_length = 1024)]
    pub reference: Option<String>,
    /// This session's own max wait, e.g. "30m" (at least 1 ms, at most the service's).
    pub max_wait: Option<String>,
}

/// A batch of sessions to add, all committed or none.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BatchBody {
    /// The sessions, 1 to 1 000.
    #[schema(min_items = 1, max_items = 1000)]
    pub sessions: Vec<NewSessionBody>,
}

/// One session, or a batch (`{"sessions": [...]}`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[non_exhaustive]
pub enum AddBody {
    /// A batch.
    Batch(BatchBody),
    /// One session.
    One(NewSessionBody),
}

impl<'de> Deserialize<'de> for AddBody {
    /// A body with a `sessions` member is a batch, any other a single session: each is then
    /// read as its own type, so an error names the field at fault (an untagged enum would only
    /// say that no variant matched).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        let batch = match &value {
            serde_json::Value::Object(map) => map.contains_key("sessions"),
            _ => {
                return Err(serde::de::Error::custom(
                    "the body must be a JSON object: a session or {\"sessions\": [...]}",
                ))
            }
        };
        let parsed = if batch {
            BatchBody::deserialize(value).map(AddBody::Batch)
        } else {
            NewSessionBody::deserialize(value).map(AddBody::One)
        };
        parsed.map_err(serde::de::Error::custom)
    }
}

/// The records of a batch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct BatchAnswer {
    /// One record per session of the batch, in its order.
    pub sessions: Vec<RecordBody>,
}

/// The record, or the records of a batch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[non_exhaustive]
pub enum AddAnswer {
    /// The session's record.
    One(Box<RecordBody>),
    /// The batch's records.
    Batch(BatchAnswer),
}

/// A page of records.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct PageBody {
    /// The records, in the order the sessions were added.
    pub sessions: Vec<RecordBody>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// `DELETE`'s query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DeleteQuery {
    /// `true`: delete a finished or cancelled session now, with its history, delivery and
    /// webhooks (erasure on request). Without it the session is cancelled.
    #[param(value_type = Option<bool>)]
    purge: Option<String>,
}

/// What a `DELETE` answers: the cancelled record, or (with `purge=true`) that it is gone.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[non_exhaustive]
pub enum DeleteAnswer {
    /// The record, cancelled.
    Cancelled(Box<RecordBody>),
    /// Purged.
    Purged(PurgedBody),
}

/// What a purge answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct PurgedBody {
    /// The session.
    pub session_id: String,
    /// Always true: it is gone.
    pub purged: bool,
}

/// The states a list may ask for.
#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum StateFilter {
    /// Every state (the default).
    #[default]
    All,
    Tracking,
    Finished,
    Cancelled,
}

/// A delivery state to filter on.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum DeliveryFilter {
    None,
    Pending,
    Delivered,
    Failing,
    GivenUp,
}

/// An outcome to filter on.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum OutcomeFilter {
    Completed,
    CompletedWithFailures,
    TimedOut,
    ApiError,
    TransportError,
}

/// A listing's order, by the time sessions were added.
#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum OrderParam {
    /// Oldest first (the default).
    #[default]
    Asc,
    /// Newest first.
    Desc,
}

/// The list's query: every filter optional, combined with AND. Values are read one by one, so
/// that a bad one is named.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// tracking, finished, cancelled or all (default).
    #[param(value_type = Option<StateFilter>, inline)]
    pub(crate) state: Option<String>,
    /// none, pending, delivered, failing or given_up.
    #[param(value_type = Option<DeliveryFilter>, inline)]
    pub(crate) delivery: Option<String>,
    /// completed, completed_with_failures, timed_out, api_error or transport_error.
    #[param(value_type = Option<OutcomeFilter>, inline)]
    pub(crate) outcome: Option<String>,
    /// An error code any account (or the API error) of the outcome has.
    pub(crate) error_code: Option<String>,
    /// The caller's reference, exactly.
    pub(crate) reference: Option<String>,
    /// The start of a session id or of a reference.
    pub(crate) q: Option<String>,
    /// Added after this time (RFC 3339).
    pub(crate) added_after: Option<String>,
    /// Added before this time (RFC 3339).
    pub(crate) added_before: Option<String>,
    /// asc (default, oldest first) or desc.
    #[param(value_type = Option<OrderParam>, inline)]
    pub(crate) order: Option<String>,
    /// Page size, 1 to 1 000 (default 100).
    #[param(minimum = 1, maximum = 1000, value_type = Option<u32>)]
    pub(crate) limit: Option<String>,
    /// `next_cursor` of the previous page (of the same order).
    pub(crate) cursor: Option<String>,
}

/// One enum value of a query parameter, named in the error.
fn param<T: serde::de::DeserializeOwned>(
    name: &str,
    value: Option<&str>,
) -> Result<Option<T>, ApiError> {
    value
        .map(|text| {
            T::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(text))
                .map_err(|_| {
                    ApiError::invalid(format!(
                        "bad {name}: {:?}",
                        text.chars().take(64).collect::<String>()
                    ))
                })
        })
        .transpose()
}

/// A short text parameter (a code, a reference, a prefix), named in the error.
fn text_param(name: &str, value: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    match value {
        Some(text) if text.is_empty() => Err(ApiError::invalid(format!("bad {name}: empty"))),
        Some(text) if text.len() > max => Err(ApiError::invalid(format!(
            "bad {name}: longer than {max} bytes"
        ))),
        other => Ok(other),
    }
}

impl ListQuery {
    /// The filter, the page size and the cursor, each checked.
    pub(crate) fn checked(self) -> Result<(SessionFilter, usize, Option<String>), ApiError> {
        use bankconnect_store::{DeliveryState, Order};
        let mut filter = SessionFilter::all();
        filter.state =
            match param::<StateFilter>("state", self.state.as_deref())?.unwrap_or_default() {
                StateFilter::All => None,
                StateFilter::Tracking => Some(SessionState::Tracking),
                StateFilter::Finished => Some(SessionState::Finished),
                StateFilter::Cancelled => Some(SessionState::Cancelled),
            };
        filter.delivery =
            param::<DeliveryFilter>("delivery", self.delivery.as_deref())?.map(|d| match d {
                DeliveryFilter::None => DeliveryState::None,
                DeliveryFilter::Pending => DeliveryState::Pending,
                DeliveryFilter::Delivered => DeliveryState::Delivered,
                DeliveryFilter::Failing => DeliveryState::Failing,
                DeliveryFilter::GivenUp => DeliveryState::GivenUp,
            });
        filter.outcome = param::<OutcomeFilter>("outcome", self.outcome.as_deref())?.map(|o| {
            match o {
                OutcomeFilter::Completed => "completed",
                OutcomeFilter::CompletedWithFailures => "completed_with_failures",
                OutcomeFilter::TimedOut => "timed_out",
                OutcomeFilter::ApiError => "api_error",
                OutcomeFilter::TransportError => "transport_error",
            }
            .to_owned()
        });
        filter.error_code = text_param("error_code", self.error_code, 128)?;
        filter.reference = text_param("reference", self.reference, MAX_REFERENCE)?;
        filter.prefix = text_param("q", self.q, MAX_REFERENCE)?;
        let time = |name: &str, value: Option<String>| {
            value
                .map(|text| {
                    super::time::parse_rfc3339(&text)
                        .map_err(|err| ApiError::invalid(format!("bad {name}: {err}")))
                })
                .transpose()
        };
        filter.added_after = time("added_after", self.added_after)?;
        filter.added_before = time("added_before", self.added_before)?;
        filter.order =
            match param::<OrderParam>("order", self.order.as_deref())?.unwrap_or_default() {
                OrderParam::Asc => Order::Asc,
                OrderParam::Desc => Order::Desc,
            };
        let limit = match self.limit.as_deref().map(str::parse::<u32>) {
            None => 100,
            Some(Ok(n @ 1..=1000)) => n as usize,
            Some(_) => {
                return Err(ApiError::invalid(
                    "bad limit: it must be between 1 and 1000",
                ))
            }
        };
        Ok((filter, limit, self.cursor))
    }
}

impl NewSessionBody {
    /// The session to store, checked: its id, the reference's length, a `max_wait` of at
    /// least 1 ms and at most `service_max`.
    fn checked(self, service_max: Duration) -> Result<NewSession, ApiError> {
        let mut session = NewSession::new(session_id(&self.session_id)?);
        if let Some(reference) = self.reference {
            if reference.len() > MAX_REFERENCE {
                return Err(ApiError::invalid(format!(
                    "reference is longer than {MAX_REFERENCE} bytes"
                )));
            }
            session = session.with_reference(reference);
        }
        if let Some(text) = self.max_wait {
            let max_wait = crate::duration::parse_millis_duration(&text)
                .map_err(|err| ApiError::invalid(format!("bad max_wait: {err}")))?;
            if max_wait > service_max {
                return Err(ApiError::invalid(format!(
                    "bad max_wait: longer than the service's max wait ({})",
                    humantime::format_duration(service_max)
                )));
            }
            session = session.with_max_wait(max_wait);
        }
        Ok(session)
    }
}

#[utoipa::path(
    post,
    path = "/v1/sessions",
    tag = "sessions",
    request_body(content = AddBody, description = "one session, or {\"sessions\": [...]} (at most 1 000)", content_type = "application/json"),
    responses(
        (status = 202, description = "committed; the record, or {\"sessions\": [records]} for a batch", body = AddAnswer),
        (status = 200, description = "already known: the stored record(s), unchanged", body = AddAnswer),
        (status = 400, description = "bad body or id", body = ErrorBody),
        (status = 401, description = "missing or wrong bearer token", body = ErrorBody),
        (status = 413, description = "body over 1 MiB", body = ErrorBody),
        (status = 415, description = "not application/json", body = ErrorBody),
        (status = 408, description = "the body did not arrive within 30 s", body = ErrorBody),
        (status = 500, description = "the store refused (retrying will not help)", body = ErrorBody),
        (status = 503, description = "the store did not answer, or too many bodies in flight; try again", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn add_sessions(
    State(app): State<App>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let parsed: AddBody = body::json(&headers, body, &app.body_budget).await?;
    let (batch, entries) = match parsed {
        AddBody::One(one) => (false, vec![one]),
        AddBody::Batch(batch) if batch.sessions.is_empty() => {
            return Err(ApiError::invalid("the batch is empty"))
        }
        AddBody::Batch(batch) if batch.sessions.len() > MAX_BATCH => {
            return Err(ApiError::invalid(format!(
                "a batch holds at most {MAX_BATCH} sessions"
            )))
        }
        AddBody::Batch(batch) => (true, batch.sessions),
    };
    let sessions = entries
        .into_iter()
        .map(|entry| entry.checked(app.max_wait))
        .collect::<Result<Vec<_>, _>>()?;
    // Leased to this replica in the same transaction: polled here at once, with no claim.
    let now = SystemTime::now();
    let added = app
        .store
        .add_sessions_leased(sessions, now, &app.replica, now + app.hold)
        .await
        .map_err(|err| ApiError::store(&err))?;
    let mut created = Vec::new();
    let mut kept = Vec::new();
    for entry in &added {
        if let Added::Created {
            record,
            pending_webhooks,
        } = entry
        {
            created.push(record.clone());
            tracing::debug!(session = %record.session_id, "session added");
            kept.extend(
                pending_webhooks
                    .iter()
                    .filter_map(|value| WebhookHint::deserialize(value).ok()),
            );
        }
    }
    let status = if created.is_empty() {
        StatusCode::OK
    } else {
        // Committed already: if the tracker is gone (shutting down), its leases are released
        // or lapse, and another process (or the next start) polls them.
        let _ = app.commands.send(Command::Track(created, kept)).await;
        StatusCode::ACCEPTED
    };
    let mut records = added.iter().map(|a| record_body(a.record().clone()));
    let answer = if batch {
        AddAnswer::Batch(BatchAnswer {
            sessions: records.collect(),
        })
    } else {
        match records.next() {
            Some(record) => AddAnswer::One(Box::new(record)),
            None => return Err(ApiError::invalid("nothing to add")),
        }
    };
    Ok((status, Json(answer)).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/sessions/{id}",
    tag = "sessions",
    params(("id" = String, Path, description = "the session id")),
    responses(
        (status = 200, description = "the record", body = RecordBody),
        (status = 400, description = "bad id", body = ErrorBody),
        (status = 401, description = "missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "unknown", body = ErrorBody),
        (status = 503, description = "the store did not answer; try again", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn get_session(
    State(app): State<App>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<RecordBody>, ApiError> {
    let id = session_id(&path_segment(id)?)?;
    match app.store.get_session(&id).await {
        Ok(Some(record)) => Ok(Json(record_body(record))),
        Ok(None) => Err(ApiError::not_found(format!("no session {id}"))),
        Err(err) => Err(ApiError::store(&err)),
    }
}

#[utoipa::path(
    delete,
    path = "/v1/sessions/{id}",
    tag = "sessions",
    params(("id" = String, Path, description = "the session id"), DeleteQuery),
    responses(
        (status = 200, description = "the record, cancelled (no delivery); with purge=true, {session_id, purged: true}", body = DeleteAnswer),
        (status = 403, description = "the read-only token may not change anything", body = ErrorBody),
        (status = 400, description = "bad id", body = ErrorBody),
        (status = 401, description = "missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "unknown", body = ErrorBody),
        (status = 409, description = "finished: nothing to cancel (NOT_TRACKING); purge of a session still tracking (TRACKING)", body = ErrorBody),
        (status = 415, description = "a body that is not application/json", body = ErrorBody),
        (status = 503, description = "the store did not answer; try again", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn cancel_session(
    State(app): State<App>,
    headers: HeaderMap,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    query: Result<Query<DeleteQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    body::json_if_any_body(&headers)?;
    let id = session_id(&path_segment(id)?)?;
    let Query(query) =
        query.map_err(|err| ApiError::invalid(format!("bad query: {}", err.body_text())))?;
    let purge = match query.purge.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::invalid("bad purge: true or false")),
    };
    if purge {
        return match app.store.purge_session(&id).await {
            Ok(Purge::Purged) => {
                app.metrics.operator_action("purge");
                tracing::info!(session = %id, "session purged");
                Ok(Json(DeleteAnswer::Purged(PurgedBody {
                    session_id: id.as_str().to_owned(),
                    purged: true,
                }))
                .into_response())
            }
            Ok(Purge::Tracking) => Err(ApiError::new(
                StatusCode::CONFLICT,
                "TRACKING",
                format!("session {id} is still tracking: cancel it first"),
            )),
            Ok(_) => Err(ApiError::not_found(format!("no session {id}"))),
            Err(err) => Err(ApiError::store(&err)),
        };
    }
    let record = crate::actions::cancel(&app, &id).await?;
    Ok(Json(DeleteAnswer::Cancelled(Box::new(record_body(record)))).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/sessions",
    tag = "sessions",
    params(ListQuery),
    responses(
        (status = 200, description = "a page, in the order sessions were added", body = PageBody),
        (status = 400, description = "bad query", body = ErrorBody),
        (status = 401, description = "missing or wrong bearer token", body = ErrorBody),
        (status = 503, description = "the store did not answer; try again", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn list_sessions(
    State(app): State<App>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PageBody>, ApiError> {
    let Query(query) =
        query.map_err(|err| ApiError::invalid(format!("bad query: {}", err.body_text())))?;
    let (filter, limit, cursor) = query.checked()?;
    match app
        .store
        .list_filtered(filter, limit, cursor.as_deref())
        .await
    {
        Ok(page) => Ok(Json(PageBody {
            sessions: page.sessions.into_iter().map(record_body).collect(),
            next_cursor: page.next_cursor,
        })),
        Err(StoreError::InvalidCursor) => Err(ApiError::invalid("invalid cursor")),
        Err(err) => Err(ApiError::store(&err)),
    }
}
