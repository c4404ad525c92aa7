//! `GET /v1/sessions/{id}/events`: a session's story, oldest first, as the store wrote it in
//! the same transaction as each change.

use axum::extract::{Path, Query, State};
use axum::Json;
use bankconnect_store::StoreError;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::body::{path_segment, session_id};
use super::App;
use crate::error::{ApiError, ErrorBody};
use crate::record::rfc3339;

/// The history routes (behind the bearer check).
pub(super) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new().routes(routes!(session_events))
}

/// One event of a session's history: the common fields, then its kind's own (each always
/// present, null or false where it does not apply; docs/operations.md lists them per kind).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct EventBody {
    /// Its number within the session, from 1 (numbers between the first 20 and the last 200
    /// may be missing: see `dropped`).
    pub seq: u64,
    /// RFC 3339.
    pub at: String,
    /// added, webhook, progress, api_error, outcome, delivery_attempt, delivered, given_up,
    /// redeliver, retrack, poll_requested, cancelled or lease.
    pub kind: String,
    /// The replica that wrote it, if known.
    pub replica: Option<String>,
    /// The kind's own fields.
    #[serde(flatten)]
    #[schema(value_type = std::collections::HashMap<String, serde_json::Value>)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// A page of a session's history.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct EventsBody {
    /// The events, oldest first.
    #[schema(value_type = Vec<crate::outcome_schema::EventSchema>)]
    pub events: Vec<EventBody>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
    /// Events between the first 20 and the last 200 that went to keep the history bounded.
    pub dropped: u64,
}

/// The history's query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    /// Page size, 1 to 1 000 (default 100).
    #[param(minimum = 1, maximum = 1000, value_type = Option<u32>)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/sessions/{id}/events",
    tag = "history",
    params(("id" = String, Path, description = "the session id"), EventsQuery),
    responses(
        (status = 200, description = "a page of the session's history, oldest first", body = EventsBody),
        (status = 400, description = "bad id or query", body = ErrorBody),
        (status = 401, description = "missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "unknown session", body = ErrorBody),
        (status = 503, description = "the store did not answer; try again", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn session_events(
    State(app): State<App>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EventsBody>, ApiError> {
    let id = session_id(&path_segment(id)?)?;
    let Query(query) =
        query.map_err(|err| ApiError::invalid(format!("bad query: {}", err.body_text())))?;
    let limit = match query.limit.as_deref().map(str::parse::<u32>) {
        None => 100,
        Some(Ok(n @ 1..=1000)) => n as usize,
        Some(_) => {
            return Err(ApiError::invalid(
                "bad limit: it must be between 1 and 1000",
            ))
        }
    };
    match app
        .store
        .session_events(&id, limit, query.cursor.as_deref())
        .await
    {
        Ok(Some(page)) => Ok(Json(EventsBody {
            events: page
                .events
                .into_iter()
                .map(|event| EventBody {
                    seq: event.seq,
                    at: rfc3339(event.at),
                    kind: event.kind,
                    replica: event.replica,
                    fields: event.fields,
                })
                .collect(),
            next_cursor: page.next_cursor,
            dropped: page.dropped,
        })),
        Ok(None) => Err(ApiError::not_found(format!("no session {id}"))),
        Err(StoreError::InvalidCursor) => Err(ApiError::invalid("bad cursor")),
        Err(err) => Err(ApiError::store(&err)),
    }
}
