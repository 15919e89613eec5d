//! The API's OpenAPI 3.1 document, generated from the handlers' annotations (utoipa): their
//! paths, parameters, bodies and answers, problems included, and the two bearer-token
//! schemes. Served at `GET /openapi.json`.

use axum::body::Bytes;
use axum::extract::Extension;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::Value;
use utoipa::Modify;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

use super::ProblemDetails;

/// The tag of `/openapi.json` in the document.
pub const TAG: &str = "operations";

/// What the generated paths are merged into: the document's info, tags and security
/// schemes.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "flowhost",
        description = "A workflow host for WebAssembly plugins: durable sagas and event handlers. JSON in and out; every error is `application/problem+json` with a `detail`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&Schemes),
    components(schemas(ProblemDetails)),
    tags(
        (name = "runs", description = "Start, read, list, retry, cancel and signal runs."),
        (name = "events", description = "Publish events; subscriptions and their backlogs; dead letters."),
        (name = "plugins", description = "Plugin versions: upload (hot swap), rollback, pins. Admin token."),
        (name = "workflows", description = "Workflow definitions: push, rollback, retire, pins. Admin token."),
        (name = "operations", description = "Health, readiness, metrics and this document."),
        (name = "console", description = "The web console, served from the binary."),
    )
)]
pub struct Base;

/// The bearer-token schemes: `admin` for the plugin and workflow routes, `trigger` for the
/// routes that make plugins run (when a trigger token is configured).
struct Schemes;

impl Modify for Schemes {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, what) in [
            (
                "admin",
                "The admin token (`FLOWHOST_ADMIN_TOKEN`); without one configured, these routes are off.",
            ),
            (
                "trigger",
                "The trigger token (`FLOWHOST_TRIGGER_TOKEN`), when one is configured; otherwise these routes are open.",
            ),
        ] {
            let mut scheme = Http::new(HttpAuthScheme::Bearer);
            scheme.description = Some(what.to_owned());
            components.add_security_scheme(name, SecurityScheme::Http(scheme));
        }
    }
}

/// The finished document as JSON: `openapi` with the workflow definition's JSON Schema
/// (`definition`, from schemars) as the component `WorkflowDefinition`, its `$defs` beside
/// it, their references rewritten to point there.
pub fn document(openapi: OpenApi, definition: &Value) -> Value {
    let mut document = serde_json::to_value(openapi).expect("the document serialises");
    let mut definition = definition.clone();
    rewrite_refs(&mut definition);
    let schemas = document
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
        .expect("the document has schemas");
    if let Some(Value::Object(defs)) = definition.as_object_mut().and_then(|d| d.remove("$defs")) {
        for (name, schema) in defs {
            let clash = schemas.insert(name.clone(), schema);
            assert!(
                clash.is_none(),
                "the definition's `{name}` clashes with an API schema"
            );
        }
    }
    if let Some(definition) = definition.as_object_mut() {
        definition.remove("$schema");
    }
    schemas.insert("WorkflowDefinition".into(), definition);
    document
}

/// Points every `#/$defs/X` reference at `#/components/schemas/X`.
fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match value {
                    Value::String(target) if key == "$ref" => {
                        if let Some(name) = target.strip_prefix("#/$defs/") {
                            *target = format!("#/components/schemas/{name}");
                        }
                    }
                    other => rewrite_refs(other),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// The document, serialised once.
#[derive(Clone)]
pub struct Document(pub Bytes);

/// This document.
#[utoipa::path(
    get,
    operation_id = "get_openapi",
    path = "/openapi.json",
    tag = TAG,
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.", body = Object))
)]
pub async fn serve(Extension(document): Extension<Document>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], document.0)
}
