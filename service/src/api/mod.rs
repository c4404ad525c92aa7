//! The service's HTTP surface: one router per resource (sessions, the webhook intake,
//! operations), each handler registered together with its OpenAPI description (utoipa-axum),
//! so the document at `/openapi.json` is exactly what is routed.

mod body;
mod deliveries;
mod history;
mod operations;
mod session_actions;
pub(crate) mod sessions;
mod stats;
pub(crate) mod time;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use bankconnect_store::Store;
use bankconnect_webhook_verify::{Receiver, WebhookSecret};
use tokio::sync::mpsc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::tracking::Command;

pub use deliveries::{DeliveryOverviewBody, FailureBody, RecoverBody, RecoverState, RecoveredBody};
pub use history::{EventBody, EventsBody};
pub use session_actions::{EmptyBody, PollAskedBody, RedeliverBody};
pub use sessions::{
    AddAnswer, AddBody, BatchAnswer, BatchBody, DeleteAnswer, NewSessionBody, PageBody, PurgedBody,
};
pub use stats::{CodeCountBody, DeliveryCountsBody, SessionCountsBody, StatsBody};

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct App {
    pub(crate) store: Store,
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) receiver: Arc<Receiver>,
    pub(crate) api_token: Option<Arc<WebhookSecret>>,
    /// The read-only token (`GET` only).
    pub(crate) read_token: Option<Arc<WebhookSecret>>,
    /// Where deliveries go, as shown (`scheme://host[:port]/path`: never a query or
    /// credentials); `None` when serve delivers nothing.
    pub(crate) delivery_target: Option<Arc<str>>,
    /// Wakes the delivery worker (a redelivery or a resume is due at once).
    pub(crate) delivery_wake: Arc<tokio::sync::Notify>,
    /// The retention, which bounds how far back a recovery may reach.
    pub(crate) retention: Option<Duration>,
    /// The sessions this replica polls (a poll asked for one of them goes to its tracker).
    pub(crate) polled: crate::tracking::Polled,
    /// What signs the console's logins and CSRF tokens.
    pub(crate) console: Arc<crate::console::ConsoleKeys>,
    pub(crate) replica: Arc<str>,
    /// The configured lease: the heartbeat's cadence (a replica is live within two).
    pub(crate) lease: Duration,
    /// How long this replica's hold on a session it takes lasts unless renewed
    /// ([`crate::fleet::hold`]).
    pub(crate) hold: Duration,
    /// The service's max wait, the longest a session's own may be.
    pub(crate) max_wait: Duration,
    /// The one memory budget every request body in flight shares (API and webhooks), so many
    /// slow senders cannot multiply memory.
    pub(crate) body_budget: Arc<bankconnect_webhook_verify::axum_handler::BodyBudget>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "bankconnect serve",
        description = "The BankConnect status service: sessions in, FinBox webhooks in, signed deliveries out (docs/serve.md)."
    ),
    tags(
        (name = "sessions", description = "Sessions to track and their records"),
        (name = "webhooks", description = "FinBox's webhook intake"),
        (name = "operations", description = "Health, readiness, metrics"),
        (name = "history", description = "A session's story, event by event"),
        (name = "actions", description = "An operator's actions on one session"),
        (name = "delivery", description = "Deliveries to the lender's back end: health, pause, recovery"),
        (name = "stats", description = "Store-wide counts"),
    ),
    components(schemas(crate::error::ErrorBody, crate::delivery::FinishedEvent))
)]
struct ApiDoc;

/// The whole service's router and its OpenAPI document, built from one list of routes.
pub(crate) fn router(app: App, webhook_path: &str) -> Router {
    let v1 = sessions::routes()
        .merge(history::routes())
        .merge(session_actions::routes())
        .merge(deliveries::routes())
        .merge(stats::routes())
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), bearer));
    let (router, mut document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(v1)
        .merge(webhook::routes(webhook_path))
        .merge(operations::routes())
        .split_for_parts();
    let router = router.merge(crate::console::routes());
    let components = document.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    let mut document = serde_json::to_value(&document).unwrap_or_default();
    if let Some(root) = document.as_object_mut() {
        root.insert("webhooks".into(), delivery_webhook());
    }
    let document = Arc::new(document);
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let document = Arc::clone(&document);
                async move { axum::Json((*document).clone()) }
            }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(request_span))
        .with_state(app)
}

/// The delivery to the lender's back end, as an OpenAPI 3.1 webhook: what serve POSTs to
/// `--deliver-to`, signed per Standard Webhooks.
fn delivery_webhook() -> serde_json::Value {
    let header = |name: &str, description: &str| {
        serde_json::json!({
            "name": name, "in": "header", "required": true,
            "description": description, "schema": {"type": "string"}
        })
    };
    serde_json::json!({
        "session.finished": {
            "post": {
                "summary": "A session finished: its record, signed, retried until a 2xx",
                "description": "Sent to --deliver-to once the outcome is committed; retried on the delivery schedule, at least once (dedupe on webhook-id). docs/serve.md, docs/operations.md.",
                "parameters": [
                    header("webhook-id", "msg_<session_id> (msg_<session_id>_N after a retrack); the same on every attempt and redelivery"),
                    header("webhook-timestamp", "Unix seconds of this attempt"),
                    header("webhook-signature", "v1,<base64 HMAC-SHA256> per delivery secret, space-separated (Standard Webhooks)"),
                ],
                "requestBody": {
                    "required": true,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FinishedEventBody"}}}
                },
                "responses": {
                    "2XX": {"description": "delivered"},
                    "default": {"description": "not delivered: retried on the schedule, then given up"}
                }
            }
        }
    })
}

/// One span per HTTP request (method and path: a session's path carries its id, never a
/// secret; query strings, which may carry a webhook token, are left out), at debug level: the
/// default operator log stays at a few lines, and a span per request costs nothing unless asked.
async fn request_span(request: Request, next: Next) -> Response {
    use tracing::Instrument;
    let span = tracing::debug_span!(
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

impl App {
    /// Whether the console asks for a login (a token is configured).
    pub(crate) fn console_login_needed(&self) -> bool {
        self.api_token.is_some()
    }
}

/// Who a caller is, by the token it brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Everything (the admin token, or no token configured).
    Admin,
    /// `GET` only (the read-only token).
    ReadOnly,
}

impl Role {
    /// The role `token` (a bearer token as given) has: checked against both tokens in
    /// constant time each, whichever matches.
    pub(crate) fn of(app: &App, token: &str) -> Option<Self> {
        let Some(admin) = &app.api_token else {
            return Some(Self::Admin);
        };
        let is_admin = admin.matches(token.as_bytes());
        let is_reader = app
            .read_token
            .as_ref()
            .is_some_and(|read| read.matches(token.as_bytes()));
        match (is_admin, is_reader) {
            (true, _) => Some(Self::Admin),
            (false, true) => Some(Self::ReadOnly),
            (false, false) => None,
        }
    }
}

/// `Authorization: Bearer TOKEN` on `/v1/*` when a token is configured: the scheme is
/// case-insensitive (RFC 7235), the token compared in constant time. The read-only token may
/// only `GET` (403 `FORBIDDEN` otherwise, checked here, not by hiding buttons).
async fn bearer(State(app): State<App>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .unwrap_or_default();
    match Role::of(&app, given) {
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "a valid Authorization: Bearer token is required",
        )
        .into_response(),
        Some(Role::ReadOnly)
            if !matches!(*request.method(), http::Method::GET | http::Method::HEAD) =>
        {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "the read-only token may only read (GET)",
            )
            .into_response()
        }
        Some(_) => next.run(request).await,
    }
}

/// The token of an `Authorization: Bearer TOKEN` value, whatever the scheme's case.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_the_token_is_not() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  AbC "), Some("AbC"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }
}
