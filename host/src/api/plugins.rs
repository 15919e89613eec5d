//! Handlers of the plugin routes (admin token required): versions, uploads, rollback.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::extract::{Path, Query};
use super::views::{Component, PluginChange, PluginDetail, Plugins};
use super::{AppState, Problem, ProblemDetails};
use crate::model::VersionSource;
use crate::plugins::signing::SIGNATURE_HEADER;
use crate::plugins::{Prepared, RegistryError};
use crate::replay::{self, Aspect};
use crate::runtime::LoadError;

/// The tag of these routes in the OpenAPI document.
pub const TAG: &str = "plugins";

/// Longest version label.
const MAX_LABEL: usize = 128;

/// Query of `PUT /v1/plugins/{name}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PushParams {
    /// A label for the version (`1.4.2`, a commit): 1 to 128 characters, no spaces.
    version: Option<String>,
    /// The canary gate: replay the plugin's latest N (1 to 100) recorded attempts (steps of
    /// workflows with `record = true`) on the upload first, and refuse it (409, with the
    /// differences) if any behaves differently; nothing changes then.
    replay: Option<usize>,
    /// `outputs`: with `replay`, refuse only for different service calls; a different
    /// output or published event passes.
    #[serde(rename = "replay-allow")]
    #[param(rename = "replay-allow")]
    replay_allow: Option<String>,
}

/// Most recorded attempts one upload replays.
const MAX_REPLAY: usize = 100;

/// Uploads a component as a new version of plugin `name`: validated (WebAssembly, a
/// component, compiles, links, implements every world the name is used as), stored, then
/// made current atomically. Runs and deliveries that start after the answer use it; nothing
/// in flight is dropped.
#[utoipa::path(
    put,
    operation_id = "push_plugin",
    path = "/v1/plugins/{name}",
    tag = TAG,
    params(
        ("name" = String, Path, description = "The plugin's name in the configuration."),
        PushParams,
        ("Flowhost-Signature" = Option<String>, Header, description = "The component's signature as plugin `name` (`flowhost plugins sign` writes it to FILE.sig): `ed25519:<key>:<signature>`. Required when `registry.trusted-keys` is set; checked whenever given."),
    ),
    request_body(
        content(
            (Component = "application/wasm"),
            (Component = "application/octet-stream"),
        ),
        description = "The component (a `.wasm` file); the content type is not checked.",
    ),
    security(("admin" = [])),
    responses(
        (status = 200, description = "A known version, made current again.", body = PluginChange),
        (status = 201, description = "A new version, now current.", body = PluginChange, links(
            ("GetPlugin" = (operation_id = "get_plugin", parameters(("name" = "$request.path.name")))),
            ("RollbackPlugin" = (operation_id = "rollback_plugin", parameters(("name" = "$request.path.name")))),
            ("DeleteVersion" = (operation_id = "delete_plugin_version", parameters(("name" = "$request.path.name"), ("digest" = "$response.body#/digest")))),
        )),
        (status = 400, description = "Not WebAssembly, an empty body, a bad `version` label, or a bad `replay` or `replay-allow`.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "No bearer token.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "A wrong token, or the admin routes are off.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No plugin of that name is configured.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "With `replay`: recorded attempts replayed differently on the upload (the extension members `replayed` and `differences` say which, and how); nothing changed.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "Over `registry.max-upload-mib`.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "A core module, a compile or link error, or the wrong world; with `registry.trusted-keys` set, no signature, or one that does not verify or is by an untrusted key.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "The version could not be stored durably; nothing changed.", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub async fn push(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<PushParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let signature = match headers.get(SIGNATURE_HEADER) {
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "Flowhost-Signature must be visible ASCII",
            )
        })?),
    };
    if let Some(label) = &params.version
        && (label.is_empty()
            || label.len() > MAX_LABEL
            || label.chars().any(|c| c.is_control() || c.is_whitespace()))
    {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!("version must be 1 to {MAX_LABEL} characters, without spaces"),
        ));
    }
    let body = receive(body, app.max_upload_bytes).await?;
    if body.is_empty() {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "the body must be the component (a .wasm file)",
        ));
    }
    let allow_outputs = match params.replay_allow.as_deref() {
        None => false,
        Some("outputs") => true,
        Some(other) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                format!("replay-allow: {other:?} is not `outputs`"),
            ));
        }
    };
    if params.replay.is_some_and(|n| n == 0 || n > MAX_REPLAY) {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!("replay must be 1 to {MAX_REPLAY}"),
        ));
    }
    let prepared = app
        .plugins
        .prepare(&name, body, params.version, VersionSource::Api, signature)
        .await?;
    let replayed = match params.replay {
        None => None,
        Some(limit) => Some(canary(&app, &name, &prepared, limit, allow_outputs).await?),
    };
    let registered = app.plugins.commit_prepared(prepared).await?;
    let status = if registered.new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let change = match replayed {
        Some(replayed) => PluginChange::replayed(&registered, replayed),
        None => PluginChange::new(&registered),
    };
    Ok((status, Json(change)).into_response())
}

/// The canary gate: replays plugin `name`'s latest `limit` recorded attempts on `prepared`;
/// how many, or 409 with the attempts that behaved differently (bar output and event
/// differences when `allow_outputs`).
async fn canary(
    app: &AppState,
    name: &str,
    prepared: &Prepared,
    limit: usize,
    allow_outputs: bool,
) -> Result<usize, Problem> {
    let current = app.engine.workflows().all_current();
    let workflows: Vec<_> = current
        .iter()
        .map(|w| (w.name.as_str(), &w.definition))
        .collect();
    let recorded = replay::latest_recorded(app.engine.store().as_ref(), &workflows, name, limit)
        .await
        .map_err(RegistryError::Store)?;
    let mut differing = Vec::new();
    for attempt in &recorded {
        let Some(mut replayed) = replay::replay(
            app.plugins.runtime(),
            prepared.plugin(),
            attempt.run_id.as_str(),
            &attempt.workflow,
            &attempt.entry,
        )
        .await
        else {
            continue;
        };
        replayed
            .differences
            .retain(|d| !allow_outputs || d.aspect == Aspect::Call);
        if !replayed.differences.is_empty() {
            differing.push(json!({
                "run_id": attempt.run_id,
                "workflow": attempt.workflow,
                "replayed": replayed,
            }));
        }
    }
    if differing.is_empty() {
        return Ok(recorded.len());
    }
    let detail = format!(
        "plugin `{name}`: {} of the {} recorded attempts replayed differently on this upload; nothing changed",
        differing.len(),
        recorded.len()
    );
    Err(Problem::new(StatusCode::CONFLICT, detail)
        .with("replayed", recorded.len())
        .with("differences", differing))
}

/// The upload, at most `limit` bytes. A larger one is answered 413 once it has been read
/// (discarded) up to twice the limit, so that a client still sending gets the answer
/// rather than a reset connection; past that the connection is dropped.
async fn receive(body: Body, limit: usize) -> Result<Vec<u8>, Problem> {
    let mut received = Vec::new();
    let mut size = 0usize;
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| {
            Problem::new(StatusCode::BAD_REQUEST, format!("reading the upload: {e}"))
        })?;
        size = size.saturating_add(chunk.len());
        if size <= limit {
            received.extend_from_slice(&chunk);
        } else if size > limit.saturating_mul(2) {
            break;
        }
    }
    if size > limit {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the component is over the upload limit of {} MiB (registry.max-upload-mib)",
                limit / (1024 * 1024)
            ),
        ));
    }
    Ok(received)
}

/// Every configured plugin with its current version.
#[utoipa::path(
    get,
    operation_id = "list_plugins",
    path = "/v1/plugins",
    tag = TAG,
    security(("admin" = [])),
    responses(
        (status = 200, description = "The plugins.", body = Plugins),
        (status = 401, description = "No bearer token.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "A wrong token, or the admin routes are off.", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub async fn list(State(app): State<AppState>) -> Result<Response, Problem> {
    Ok(Json(Plugins::new(&app.plugins.list().await?)).into_response())
}

/// A plugin's versions, newest first: which is current, how many runs pin each.
#[utoipa::path(
    get,
    operation_id = "get_plugin",
    path = "/v1/plugins/{name}",
    tag = TAG,
    params(("name" = String, Path, description = "The plugin.")),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The plugin.", body = PluginDetail),
        (status = 401, description = "No bearer token.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "A wrong token, or the admin routes are off.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such plugin.", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub async fn describe(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(PluginDetail::new(&app.plugins.describe(&name).await?)).into_response())
}

/// Body of `POST /v1/plugins/{name}/rollback` and `POST /v1/workflows/{name}/rollback`.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// The version to make current; default the one before the current one.
    digest: Option<String>,
}

/// The version a rollback's body names: none (the one before the current one) for an
/// empty body.
pub(super) fn rollback_target(
    body: Result<Bytes, BytesRejection>,
) -> Result<Option<String>, Problem> {
    let body = body.map_err(|e| Problem::new(e.status(), e.body_text()))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let body: RollbackBody = serde_json::from_slice(&body).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            format!("the body must be empty or {{\"digest\": \"<sha256>\"}}: {e}"),
        )
    })?;
    Ok(body.digest)
}

/// Makes the version that was current before the current one current again, or the
/// version the body's `digest` names.
#[utoipa::path(
    post,
    operation_id = "rollback_plugin",
    path = "/v1/plugins/{name}/rollback",
    tag = TAG,
    params(("name" = String, Path, description = "The plugin.")),
    request_body(content = Option<RollbackBody>, content_type = "application/json", description = "Empty, or the version to make current."),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The version now current.", body = PluginChange),
        (status = 400, description = "A body that is neither empty nor `{\"digest\": ...}`.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "No bearer token.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "A wrong token, or the admin routes are off.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such plugin or version.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "No earlier version.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "The body is over `server.max-body-bytes`.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "With `registry.trusted-keys` set, a version none of them signed.", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub async fn rollback(
    State(app): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let digest = rollback_target(body)?;
    let registered = app.plugins.rollback(&name, digest.as_deref()).await?;
    Ok(Json(PluginChange::new(&registered)).into_response())
}

/// The component of a stored version, as uploaded: what `flowhost replay` runs when no
/// file is given for the plugin.
#[utoipa::path(
    get,
    operation_id = "get_plugin_component",
    path = "/v1/plugins/{name}/versions/{digest}/component",
    tag = TAG,
    params(
        ("name" = String, Path, description = "The plugin."),
        ("digest" = String, Path, description = "The version's SHA-256."),
    ),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The component.", content_type = "application/wasm", body = Component),
        (status = 401, description = "No bearer token.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "A wrong token, or the admin routes are off.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such plugin or version.", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub async fn component(
    State(app): State<AppState>,
    Path((name, digest)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let bytes = app.plugins.component(&name, &digest).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/wasm")],
        bytes,
    )
        .into_response())
}

/// Removes a stored version; refused for the current one and for one a run pins.
#[utoipa::path(
    delete,
    operation_id = "delete_plugin_version",
    path = "/v1/plugins/{name}/versions/{digest}",
    tag = TAG,
    params(
        ("name" = String, Path, description = "The plugin."),
        ("digest" = String, Path, description = "The version's SHA-256."),
    ),
    security(("admin" = [])),
    responses(
        (status = 204, description = "Removed."),
        (status = 401, description = "No bearer token.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "A wrong token, or the admin routes are off.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such plugin or version.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "It is current, or a run pins it.", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub async fn delete(
    State(app): State<AppState>,
    Path((name, digest)): Path<(String, String)>,
) -> Result<Response, Problem> {
    app.plugins.delete(&name, &digest).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

impl From<RegistryError> for Problem {
    fn from(e: RegistryError) -> Self {
        let status = match &e {
            RegistryError::UnknownPlugin(_) | RegistryError::UnknownVersion { .. } => {
                StatusCode::NOT_FOUND
            }
            RegistryError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            RegistryError::Invalid {
                source: LoadError::NotWasm,
                ..
            } => StatusCode::BAD_REQUEST,
            RegistryError::Invalid { .. }
            | RegistryError::WrongWorld { .. }
            | RegistryError::Signature(_) => StatusCode::UNPROCESSABLE_ENTITY,
            RegistryError::NoEarlierVersion(_)
            | RegistryError::IsCurrent { .. }
            | RegistryError::Pinned { .. } => StatusCode::CONFLICT,
            RegistryError::Read { .. }
            | RegistryError::Load { .. }
            | RegistryError::Settings { .. }
            | RegistryError::Missing { .. }
            | RegistryError::Compiler { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            RegistryError::Store(e) if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            RegistryError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "plugin request failed");
        }
        Problem::new(status, e.to_string())
    }
}
