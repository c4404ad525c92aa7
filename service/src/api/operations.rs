//! What operators and orchestrators ask: liveness, readiness (the store accepts this build's
//! writes) and Prometheus metrics. None needs the bearer token.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::App;

/// Liveness, readiness and metrics.
pub(super) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// `/healthz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct HealthBody {
    /// Always "ok".
    status: String,
}

/// `/readyz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ReadyBody {
    /// ready or unavailable.
    status: String,
    /// This replica's id.
    replica: String,
    /// The store's engine: sqlite or postgres.
    store: String,
    /// Why it is not ready.
    reason: Option<String>,
}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "the process runs", body = HealthBody)))]
async fn healthz() -> Json<HealthBody> {
    Json(HealthBody {
        status: "ok".into(),
    })
}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "the store accepts this build's writes (its schema is there, at this build's version)", body = ReadyBody),
        (status = 503, description = "the store does not answer, or its schema is missing or another version", body = ReadyBody),
    ))]
async fn readyz(State(app): State<App>) -> Response {
    let reason = match app.store.schema_version().await {
        Ok(version) if version == bankconnect_store::SCHEMA_VERSION => None,
        Ok(version) => Some(format!(
            "the store's schema is version {version}, this build writes version {}",
            bankconnect_store::SCHEMA_VERSION
        )),
        Err(err) => {
            tracing::debug!(error = %err, "not ready");
            Some("the store does not answer, or its schema is missing".to_owned())
        }
    };
    let status = if reason.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = ReadyBody {
        status: if reason.is_none() {
            "ready"
        } else {
            "unavailable"
        }
        .into(),
        replica: app.replica.to_string(),
        store: app.store.engine().into(),
        reason,
    };
    (status, Json(body)).into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
async fn metrics(State(app): State<App>) -> Response {
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}
