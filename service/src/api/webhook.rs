//! FinBox's webhook intake: the receiver's checks, authentication and strict parsing (the
//! rules and status codes of `webhook listen`), dedupe in the store (shared by every replica),
//! and the event's effect committed before the 200.

use std::time::SystemTime;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bankconnect_core::WebhookHint;
use bankconnect_store::{Route, StoreError, WebhookFate};
use bankconnect_webhook_verify::axum_handler;
use bankconnect_webhook_verify::{Delivery, Reception, Rejection};
use serde::Serialize;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::App;
use crate::error::{ApiError, ErrorBody};
use crate::metrics::label;
use crate::tracking::Command;

/// What the webhook intake answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct WebhookAnswer {
    /// accepted, duplicate or rejected.
    status: String,
    /// Why it was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The intake's 503: busy (a webhook answer) or the store down (an API error).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // The 503's two shapes: busy (a WebhookAnswer), or the store (an ApiError).
enum WebhookOrError {
    Webhook(WebhookAnswer),
    Error(ErrorBody),
}

/// The intake, routed and described at the configured path.
pub(super) fn routes(path: &str) -> OpenApiRouter<App> {
    let (schemas, documented, handler) = routes!(webhook);
    // The handler's description is mounted at the configured path (the annotation's is a
    // placeholder), together with the route itself.
    let mut paths = utoipa::openapi::path::Paths::new();
    for (_, item) in documented.paths {
        paths.paths.insert(path.to_owned(), item);
    }
    OpenApiRouter::new().routes((schemas, paths, handler))
}

/// FinBox's webhook: the receiver's rules and status codes, with dedupe and the event's effect
/// committed to the store before the 200.
#[utoipa::path(
    post,
    path = "/",
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
async fn webhook(State(app): State<App>, request: Request) -> Response {
    let (verified, body) = axum_handler::verify(&app.receiver, request, &app.body_budget).await;
    let reception = match verified {
        Ok(delivery) => match accept(&app, &delivery).await {
            Ok(true) => Reception::Accepted(delivery),
            Ok(false) => Reception::Duplicate(delivery),
            Err(err) => {
                count(&app, "unavailable");
                return ApiError::store(&err).into_response();
            }
        },
        Err(rejection) => {
            // Authenticated but not strictly parsable, yet naming a session: poll it at once.
            if let Rejection::Malformed(_) = &rejection {
                if let Some(session) = app.receiver.named_session(&body) {
                    tracing::info!(session = %session, "malformed authenticated webhook; polling at once");
                    let hint = WebhookHint::unauthenticated(session);
                    let _ = app.commands.send(Command::Webhooks(vec![hint])).await;
                }
            }
            Reception::Rejected(rejection)
        }
    };
    count(
        &app,
        match &reception {
            Reception::Accepted(_) => "accepted",
            Reception::Duplicate(_) => "duplicate",
            Reception::Rejected(Rejection::Unauthenticated(_)) => "unauthorized",
            Reception::Rejected(_) => "rejected",
        },
    );
    let answer = WebhookAnswer {
        status: match &reception {
            Reception::Accepted(_) => "accepted",
            Reception::Duplicate(_) => "duplicate",
            Reception::Rejected(_) => "rejected",
        }
        .into(),
        error: match &reception {
            Reception::Rejected(rejection) => Some(rejection.to_string()),
            _ => None,
        },
    };
    (reception.status(), axum::Json(answer)).into_response()
}

fn count(app: &App, result: &str) {
    app.metrics
        .webhooks
        .get_or_create(&label("result", result))
        .inc();
}

/// Records a verified event once (shared dedupe) and routes its hint; `false` for a duplicate.
async fn accept(app: &App, delivery: &Delivery) -> Result<bool, StoreError> {
    let mut hint = delivery.hint();
    if let Some(hint) = hint.as_mut().filter(|hint| !hint.authenticated) {
        // An unauthenticated hint's accounts never decide anything: they are not kept, so a
        // forged body costs the store a few bytes, not its size.
        hint.accounts.clear();
    }
    let session = delivery.event.session_id();
    // What is kept is the hint the tracker takes; another event only needs its dedupe record.
    let event = match &hint {
        Some(hint) => serde_json::to_value(hint).unwrap_or(Value::Null),
        None => Value::Null,
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
            tracing::debug!(session = %hint.session_id, authenticated = hint.authenticated, "webhook accepted");
            // Polled here, perhaps: the tracker acts on it at once (elsewhere, the notice does).
            let _ = app.commands.send(Command::Webhooks(vec![hint])).await;
        }
        (WebhookFate::Kept { dropped }, Some(hint)) => {
            tracing::debug!(session = %hint.session_id, dropped, "webhook kept for a session not added yet");
        }
        _ => {}
    }
    Ok(true)
}
