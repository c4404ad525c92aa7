//! The HTTP API (`/v1/sessions`), FinBox's webhook intake, and the operations endpoints. What is
//! answered 2xx is committed to the store first.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bankconnect_core::{SessionId, WebhookHint};
use bankconnect_store::{Added, NewSession, Route, SessionState, Store, StoreError, WebhookFate};
use bankconnect_webhook_verify::{Receiver, Reception, Rejection, WebhookSecret};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::sync::mpsc;

use super::metrics::{label, Metrics};
use super::record::{record_body, record_json, ApiError, ErrorBody, RecordBody, StateBody};
use super::tracking::Command;

/// Largest API request body (a batch of 1 000 sessions fits many times over).
pub(crate) const MAX_API_BODY: usize = 1024 * 1024;
/// Most sessions in one batch.
pub(crate) const MAX_BATCH: usize = 1000;
/// Longest caller's reference.
pub(crate) const MAX_REFERENCE: usize = 1024;

/// One session to add.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Documents the body; the handler parses it itself for precise errors.
pub(crate) struct NewSessionBody {
    session_id: String,
    #[schema(max_length = 1024)]
    reference: Option<String>,
    /// e.g. "30m"; the service's --max-wait otherwise.
    max_wait: Option<String>,
}

/// A batch of sessions to add.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Documents the body.
pub(crate) struct BatchBody {
    #[schema(min_items = 1, max_items = 1000)]
    sessions: Vec<NewSessionBody>,
}

/// One session or a batch.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Documents the body.
pub(crate) enum AddBody {
    One(NewSessionBody),
    Batch(BatchBody),
}

/// The records of a batch.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct BatchAnswer {
    sessions: Vec<RecordBody>,
}

/// The record, or the records of a batch.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum AddAnswer {
    One(Box<RecordBody>),
    Batch(BatchAnswer),
}

/// A page of records.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct PageBody {
    sessions: Vec<RecordBody>,
    next_cursor: Option<String>,
}

/// What the webhook intake answers (built by the receiver's `respond`).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)] // Documents the answer.
pub(crate) struct WebhookAnswer {
    /// accepted, duplicate or rejected.
    status: String,
    error: Option<String>,
}

/// The intake's 503: busy (a webhook answer) or the store down (an API error).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)] // Documents the answer.
#[serde(untagged)]
pub(crate) enum WebhookOrError {
    Webhook(WebhookAnswer),
    Error(ErrorBody),
}

/// `/healthz`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct HealthBody {
    status: String,
}

/// `/readyz`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ReadyBody {
    /// ready or unavailable.
    status: String,
    replica: String,
    store: String,
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct App {
    pub(crate) store: Store,
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) receiver: Arc<Receiver>,
    pub(crate) api_token: Option<Arc<WebhookSecret>>,
    pub(crate) replica: Arc<str>,
    /// How long this replica's hold on a session it takes lasts unless renewed.
    pub(crate) lease: Duration,
}

/// The whole service's router.
pub(crate) fn router(app: App, webhook_path: &str) -> Router {
    let document = Arc::new(super::openapi::document(webhook_path));
    let openapi_json = move || {
        let document = Arc::clone(&document);
        async move { Json((*document).clone()) }
    };
    let v1 = Router::new()
        .route("/v1/sessions", post(add_sessions).get(list_sessions))
        .route("/v1/sessions/{id}", get(get_session).delete(cancel_session))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), bearer));
    Router::new()
        .merge(v1)
        .route(webhook_path, post(webhook))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_json))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(request_span))
        .with_state(app)
}

/// One span per HTTP request (method and path: a session's path carries its id, never a
/// secret; query strings, which may carry a webhook token, are left out).
async fn request_span(request: Request, next: Next) -> Response {
    use tracing::Instrument;
    let span = tracing::info_span!(
        "http_request",
        method = %request.method(),
        path = %request.uri().path(),
        status = tracing::field::Empty,
    );
    let response = next.run(request).instrument(span.clone()).await;
    span.record("status", response.status().as_u16());
    tracing::debug!(parent: &span, "answered");
    response
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "this endpoint does not take that method",
    )
}

/// `Authorization: Bearer TOKEN` on `/v1/*` when a token is configured (constant-time compare).
async fn bearer(State(app): State<App>, request: Request, next: Next) -> Response {
    if let Some(token) = &app.api_token {
        let given = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !token.matches(given.trim().as_bytes()) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "a valid Authorization: Bearer token is required",
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// Reads a request body of at most `limit` bytes: 413 beyond, 400 when it cannot be read.
async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut body = body;
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ApiError::invalid("the body could not be read"))?;
        if let Ok(data) = frame.into_data() {
            if bytes.len().saturating_add(data.len()) > limit {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "PAYLOAD_TOO_LARGE",
                    format!("the body is larger than {limit} bytes"),
                ));
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
}

fn session_id(text: &str) -> Result<SessionId, ApiError> {
    SessionId::new(text).map_err(|err| ApiError::invalid(format!("bad session_id: {err}")))
}

/// One entry of an add request.
fn new_session(entry: &Value) -> Result<NewSession, ApiError> {
    let Value::Object(map) = entry else {
        return Err(ApiError::invalid(
            "each session is an object with a session_id",
        ));
    };
    if let Some(unknown) = map
        .keys()
        .find(|k| !matches!(k.as_str(), "session_id" | "reference" | "max_wait"))
    {
        let shown: String = unknown.chars().take(64).collect();
        return Err(ApiError::invalid(format!("unknown field {shown:?}")));
    }
    let id = match map.get("session_id") {
        Some(Value::String(id)) => session_id(id)?,
        _ => return Err(ApiError::invalid("session_id (a string) is required")),
    };
    let mut session = NewSession::new(id);
    match map.get("reference") {
        None | Some(Value::Null) => {}
        Some(Value::String(reference)) if reference.len() <= MAX_REFERENCE => {
            session = session.with_reference(reference.clone());
        }
        Some(Value::String(_)) => {
            return Err(ApiError::invalid(format!(
                "reference is longer than {MAX_REFERENCE} bytes"
            )))
        }
        Some(_) => return Err(ApiError::invalid("reference must be a string")),
    }
    match map.get("max_wait") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => {
            let max_wait = bankconnect_cli::duration::parse_positive_duration(text)
                .map_err(|err| ApiError::invalid(format!("bad max_wait: {err}")))?;
            if max_wait > Duration::from_secs(365 * 24 * 3600) {
                return Err(ApiError::invalid("max_wait is longer than a year"));
            }
            session = session.with_max_wait(max_wait);
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "max_wait must be a string such as \"30m\"",
            ))
        }
    }
    Ok(session)
}

fn hints(pending: &[Value]) -> Vec<WebhookHint> {
    pending
        .iter()
        .filter_map(|value| serde_json::from_value(value.clone()).ok())
        .collect()
}

#[utoipa::path(
    post,
    path = "/v1/sessions",
    tag = "sessions",
    request_body(content = AddBody, description = "one session, or {\"sessions\": [...]} (at most 1 000)"),
    responses(
        (status = 202, description = "committed; the record, or {\"sessions\": [records]} for a batch", body = AddAnswer),
        (status = 200, description = "already known: the stored record(s), unchanged", body = AddAnswer),
        (status = 400, description = "bad body or id", body = ErrorBody),
        (status = 401, description = "missing or wrong bearer token", body = ErrorBody),
        (status = 413, description = "body over 1 MiB", body = ErrorBody),
        (status = 503, description = "the store did not answer", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn add_sessions(State(app): State<App>, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(body, MAX_API_BODY).await?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|err| ApiError::invalid(format!("the body is not JSON: {err}")))?;
    let (batch, entries) = match &value {
        Value::Object(map) if map.contains_key("sessions") => {
            if map.len() != 1 {
                return Err(ApiError::invalid("a batch is {\"sessions\": [...]} alone"));
            }
            match map.get("sessions") {
                Some(Value::Array(entries)) if entries.is_empty() => {
                    return Err(ApiError::invalid("the batch is empty"))
                }
                Some(Value::Array(entries)) if entries.len() > MAX_BATCH => {
                    return Err(ApiError::invalid(format!(
                        "a batch holds at most {MAX_BATCH} sessions"
                    )))
                }
                Some(Value::Array(entries)) => (true, entries.clone()),
                _ => return Err(ApiError::invalid("sessions must be an array")),
            }
        }
        Value::Object(_) => (false, vec![value.clone()]),
        _ => return Err(ApiError::invalid("the body must be a JSON object")),
    };
    let sessions = entries
        .iter()
        .map(new_session)
        .collect::<Result<Vec<_>, _>>()?;
    // Leased to this replica in the same transaction: polled here at once, with no claim.
    let now = SystemTime::now();
    let added = app
        .store
        .add_sessions_leased(sessions, now, &app.replica, now + app.lease)
        .await
        .map_err(|err| ApiError::unavailable(&err))?;
    let mut created = Vec::new();
    let mut kept = Vec::new();
    for entry in &added {
        if let Added::Created {
            record,
            pending_webhooks,
        } = entry
        {
            created.push(record.clone());
            tracing::info!(session = %record.session_id, "session added");
            kept.extend(hints(pending_webhooks));
        }
    }
    let created_any = !created.is_empty();
    if created_any {
        // Committed already: if the tracker is gone (shutting down), its leases are released
        // or lapse, and another process (or the next start) polls them.
        let _ = app.commands.send(Command::Added(created, kept)).await;
    }
    let status = if created_any {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let mut records = added.iter().map(|a| record_body(a.record()));
    let body = if batch {
        AddAnswer::Batch(BatchAnswer {
            sessions: records.collect(),
        })
    } else {
        match records.next() {
            Some(record) => AddAnswer::One(Box::new(record)),
            None => return Err(ApiError::invalid("nothing to add")),
        }
    };
    Ok((status, Json(body)).into_response())
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
        (status = 503, description = "the store did not answer", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "get_session", skip_all, fields(session = %id))]
pub(crate) async fn get_session(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = session_id(&id)?;
    match app.store.get_session(&id).await {
        Ok(Some(record)) => Ok(Json(record_json(&record))),
        Ok(None) => Err(ApiError::not_found(format!("no session {id}"))),
        Err(err) => Err(ApiError::unavailable(&err)),
    }
}

#[utoipa::path(
    delete,
    path = "/v1/sessions/{id}",
    tag = "sessions",
    params(("id" = String, Path, description = "the session id")),
    responses(
        (status = 200, description = "the record, cancelled (or unchanged if it had ended)", body = RecordBody),
        (status = 400, description = "bad id", body = ErrorBody),
        (status = 401, description = "missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "unknown", body = ErrorBody),
        (status = 503, description = "the store did not answer", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "cancel_session", skip_all, fields(session = %id))]
pub(crate) async fn cancel_session(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = session_id(&id)?;
    match app.store.cancel_session(&id, SystemTime::now()).await {
        Ok(Some(record)) => {
            if record.state == SessionState::Cancelled {
                let _ = app.commands.send(Command::Cancel(id)).await;
            }
            Ok(Json(record_json(&record)))
        }
        Ok(None) => Err(ApiError::not_found(format!("no session {id}"))),
        Err(err) => Err(ApiError::unavailable(&err)),
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    state: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/sessions",
    tag = "sessions",
    params(
        ("state" = Option<StateBody>, Query, description = "tracking (default), finished or cancelled"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "page size, default 100"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "a page, in the order sessions were added", body = PageBody),
        (status = 400, description = "bad query", body = ErrorBody),
        (status = 401, description = "missing or wrong bearer token", body = ErrorBody),
        (status = 503, description = "the store did not answer", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_sessions(
    State(app): State<App>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PageBody>, ApiError> {
    let Query(query) = query.map_err(|err| ApiError::invalid(format!("bad query: {err}")))?;
    let state = match query.state.as_deref() {
        None => SessionState::Tracking,
        Some(text) => SessionState::parse(text)
            .ok_or_else(|| ApiError::invalid("state must be tracking, finished or cancelled"))?,
    };
    let limit = match query.limit.as_deref() {
        None => 100,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::invalid("limit must be between 1 and 1000"))?,
    };
    match app
        .store
        .list_sessions(state, limit, query.cursor.as_deref())
        .await
    {
        Ok(page) => Ok(Json(PageBody {
            sessions: page.sessions.iter().map(record_body).collect(),
            next_cursor: page.next_cursor,
        })),
        Err(StoreError::InvalidCursor) => Err(ApiError::invalid("invalid cursor")),
        Err(err) => Err(ApiError::unavailable(&err)),
    }
}

/// FinBox's webhook: the receiver's rules and status codes, with dedupe and the event's effect
/// committed to the store before the 200.
#[utoipa::path(
    post,
    path = "/webhooks/bankconnect",
    tag = "webhooks",
    request_body(content = Object, description = "a FinBox webhook event", content_type = "application/json"),
    responses(
        (status = 200, description = "accepted or duplicate (committed first)", body = WebhookAnswer),
        (status = 400, description = "malformed or unreadable", body = WebhookAnswer),
        (status = 401, description = "bad or missing token or signature", body = WebhookAnswer),
        (status = 413, description = "too large", body = WebhookAnswer),
        (status = 415, description = "not JSON", body = WebhookAnswer),
        (status = 503, description = "busy, or the store did not answer", body = WebhookOrError),
    )
)]
pub(crate) async fn webhook(State(app): State<App>, request: Request) -> Response {
    let (reception, body) =
        bankconnect_webhook_verify::axum_handler::receive_keeping_body(&app.receiver, request)
            .await;
    // Authenticated but not strictly parsable, yet naming a session: poll it at once.
    if let Reception::Rejected(Rejection::Malformed(_)) = &reception {
        if let Some(session) = app.receiver.named_session(&body) {
            tracing::info!(session = %session, "malformed authenticated webhook; polling at once");
            let hint = WebhookHint::unauthenticated(session);
            let _ = app.commands.send(Command::Webhook(hint)).await;
        }
    }
    let result = match &reception {
        Reception::Accepted(delivery) | Reception::Duplicate(delivery) => {
            match accept(&app, delivery).await {
                Ok(true) => "accepted",
                Ok(false) => "duplicate",
                Err(err) => {
                    app.metrics
                        .webhooks
                        .get_or_create(&label("result", "unavailable"))
                        .inc();
                    return ApiError::unavailable(&err).into_response();
                }
            }
        }
        Reception::Rejected(Rejection::Unauthenticated(_)) => "unauthorized",
        Reception::Rejected(_) => "rejected",
    };
    app.metrics
        .webhooks
        .get_or_create(&label("result", result))
        .inc();
    let reception = match (result, reception) {
        ("duplicate", Reception::Accepted(delivery)) => Reception::Duplicate(delivery),
        (_, reception) => reception,
    };
    bankconnect_webhook_verify::axum_handler::respond(&reception)
}

/// Records an accepted event once (shared dedupe) and routes its hint; `false` for a duplicate.
async fn accept(
    app: &App,
    delivery: &bankconnect_webhook_verify::Delivery,
) -> Result<bool, StoreError> {
    let hint = delivery.hint();
    let session = delivery.event.session_id();
    let event = match &hint {
        Some(hint) => serde_json::to_value(hint).unwrap_or(Value::Null),
        None => delivery.event.to_json(false),
    };
    let route = match &hint {
        Some(hint) => Route::Hint {
            authenticated: hint.authenticated,
        },
        None => Route::RecordOnly,
    };
    // One transaction: the dedupe record and what it does (kept for a session not added yet,
    // or, on PostgreSQL, a notice to the replica that polls the session).
    let fate = app
        .store
        .accept_webhook(
            &delivery.key.to_hex(),
            session,
            &event,
            route,
            &app.replica,
            SystemTime::now(),
        )
        .await?;
    match (fate, hint) {
        (WebhookFate::Duplicate, _) => return Ok(false),
        (WebhookFate::Tracking, Some(hint)) => {
            tracing::info!(session = %hint.session_id, authenticated = hint.authenticated, "webhook accepted");
            // Polled here, perhaps: the tracker acts on it at once (elsewhere, the notice does).
            let _ = app.commands.send(Command::Webhook(hint)).await;
        }
        (WebhookFate::Kept { dropped }, Some(hint)) => {
            tracing::info!(session = %hint.session_id, dropped, "webhook kept for a session not added yet");
        }
        _ => {}
    }
    Ok(true)
}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "the process runs", body = HealthBody)))]
pub(crate) async fn healthz() -> Json<HealthBody> {
    Json(HealthBody {
        status: "ok".into(),
    })
}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "the store answers", body = ReadyBody),
        (status = 503, description = "the store does not answer", body = ReadyBody),
    ))]
pub(crate) async fn readyz(State(app): State<App>) -> Response {
    let ready = app.store.ping().await.is_ok();
    let body = ReadyBody {
        status: if ready { "ready" } else { "unavailable" }.into(),
        replica: app.replica.to_string(),
        store: app.store.engine().into(),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics(State(app): State<App>, _headers: HeaderMap) -> Response {
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}
