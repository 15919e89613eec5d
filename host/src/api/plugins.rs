//! Handlers of the plugin routes (admin token required): versions, uploads, rollback.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, Problem};
use crate::model::{PluginVersion, VersionSource, rfc3339};
use crate::plugins::{PluginView, Registered, RegistryError, VersionView};
use crate::runtime::LoadError;

/// Longest version label.
const MAX_LABEL: usize = 128;

/// Query of `PUT /v1/plugins/{name}`.
#[derive(Deserialize)]
pub struct PushParams {
    /// The version label.
    version: Option<String>,
}

/// `PUT /v1/plugins/{name}`: the body is the component. Validated, stored, then made
/// current; 201 for a new version, 200 for a known one made current again.
pub async fn push(
    State(app): State<AppState>,
    Path(name): Path<String>,
    params: Result<Query<PushParams>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Result<Response, Problem> {
    let Query(params) = params?;
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
    let registered = app
        .plugins
        .register(&name, body, params.version, VersionSource::Api)
        .await?;
    let status = if registered.new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(registered_view(&registered))).into_response())
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

/// `GET /v1/plugins`: every configured plugin with its current version.
pub async fn list(State(app): State<AppState>) -> Result<Response, Problem> {
    let plugins: Vec<Value> = app
        .plugins
        .list()?
        .into_iter()
        .map(|plugin| {
            let current = plugin.versions.iter().find(|v| v.current);
            json!({
                "name": plugin.name,
                "used_as": plugin.used_as,
                "current": current.map(version_view),
                "versions": plugin.versions.len(),
            })
        })
        .collect();
    Ok(Json(json!({ "plugins": plugins })).into_response())
}

/// `GET /v1/plugins/{name}`: its versions, newest first, which is current, how many runs
/// pin each.
pub async fn describe(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    let plugin = app.plugins.describe(&name)?;
    Ok(Json(plugin_view(&plugin)).into_response())
}

/// Body of `POST /v1/plugins/{name}/rollback` and `POST /v1/workflows/{name}/rollback`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    /// The version to make current; default the one before the current one.
    digest: Option<String>,
}

/// The version a rollback's body names: none (the one before the current one) for an
/// empty body.
pub(super) fn rollback_target(body: &[u8]) -> Result<Option<String>, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let body: RollbackBody = serde_json::from_slice(body).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            format!("the body must be empty or {{\"digest\": \"<sha256>\"}}: {e}"),
        )
    })?;
    Ok(body.digest)
}

/// `POST /v1/plugins/{name}/rollback`: makes the previous version (or the body's
/// `digest`) current again.
pub async fn rollback(
    State(app): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let digest = rollback_target(&body)?;
    let registered = app.plugins.rollback(&name, digest.as_deref()).await?;
    Ok(Json(registered_view(&registered)).into_response())
}

/// `DELETE /v1/plugins/{name}/versions/{digest}`: refused for the current version and for
/// one a run pins.
pub async fn delete(
    State(app): State<AppState>,
    Path((name, digest)): Path<(String, String)>,
) -> Result<Response, Problem> {
    app.plugins.delete(&name, &digest).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn registered_view(registered: &Registered) -> Value {
    let mut view = stored_view(&registered.version);
    view["current"] = json!(true);
    view["new"] = json!(registered.new);
    view["changed"] = json!(registered.changed);
    view
}

fn plugin_view(plugin: &PluginView) -> Value {
    json!({
        "name": plugin.name,
        "current": plugin.current,
        "used_as": plugin.used_as,
        "versions": plugin.versions.iter().map(version_view).collect::<Vec<_>>(),
    })
}

fn version_view(version: &VersionView) -> Value {
    let mut view = stored_view(&version.version);
    view["current"] = json!(version.current);
    view["pinned_runs"] = json!(version.pinned_runs);
    view
}

fn stored_view(version: &PluginVersion) -> Value {
    json!({
        "name": version.name,
        "digest": version.digest,
        "version": version.label,
        "worlds": version.worlds,
        "size": version.size,
        "registered_at": rfc3339(version.registered_ms),
        "source": version.source,
        "grants": version.grants,
    })
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
            RegistryError::Invalid { .. } | RegistryError::WrongWorld { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
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
