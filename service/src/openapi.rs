//! The OpenAPI 3 document of the service, generated from the handlers' annotations and the
//! types they serialize (utoipa), served at `/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::api;
use super::record;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "bankconnect serve",
        description = "The BankConnect status service: sessions in, FinBox webhooks in, signed deliveries out (docs/serve.md)."
    ),
    paths(
        api::add_sessions,
        api::list_sessions,
        api::get_session,
        api::cancel_session,
        api::webhook,
        api::healthz,
        api::readyz,
        api::metrics,
    ),
    components(schemas(
        record::RecordBody,
        record::StateBody,
        record::DeliveryBody,
        record::DeliveryStateBody,
        record::LeaseBody,
        record::ErrorBody,
        record::ErrorDetailBody,
        api::NewSessionBody,
        api::BatchBody,
        api::AddBody,
        api::AddAnswer,
        api::BatchAnswer,
        api::PageBody,
        api::WebhookAnswer,
        api::WebhookOrError,
        api::HealthBody,
        api::ReadyBody,
    )),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document, with the webhook path this service was started with.
pub(crate) fn document(webhook_path: &str) -> serde_json::Value {
    let mut doc = ApiDoc::openapi();
    if webhook_path != "/webhooks/bankconnect" {
        if let Some(item) = doc.paths.paths.remove("/webhooks/bankconnect") {
            doc.paths.paths.insert(webhook_path.to_owned(), item);
        }
    }
    serde_json::to_value(&doc).unwrap_or(serde_json::Value::Null)
}
