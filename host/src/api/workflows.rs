//! Handlers of the workflow routes: definitions pushed, rolled back and retired, their
//! versions and their pins, and the schema of a definition.

use std::sync::LazyLock;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::plugins::rollback_target;
use super::{AppState, Problem};
use crate::model::WorkflowDefinition;
use crate::model::workflow::InvalidDefinition;
use crate::runtime::World;

/// The schema of a definition, compiled once: a pushed body is checked against it first, so
/// that a mistake is reported with its path in the body.
static SCHEMA: LazyLock<(Value, jsonschema::Validator)> = LazyLock::new(|| {
    let schema = WorkflowDefinition::json_schema();
    let validator = jsonschema::validator_for(&schema).expect("the definition schema compiles");
    (schema, validator)
});

/// Longest workflow name.
const MAX_NAME: usize = 128;

/// `GET /v1/workflows`: every workflow with versions, configured or retired.
pub async fn list(State(app): State<AppState>) -> Result<Response, Problem> {
    let workflows = app.engine.workflows().list()?;
    Ok(Json(json!({ "workflows": workflows })).into_response())
}

/// `GET /v1/workflows/{name}`: its versions newest first, which is current, and how many
/// runs pin each.
pub async fn describe(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(app.engine.workflows().describe(&name)?).into_response())
}

/// `PUT /v1/workflows/{name}`: the body is a definition, in JSON, with the schema of a
/// `[workflows.<name>]` table. Checked against the schema, validated (names, kinds,
/// expressions, the input schema) and checked against the plugins before anything
/// changes; then current, durably. 201 for a new version, 200 for a known one.
pub async fn push(
    State(app): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    check_name(&name)?;
    let body = body.map_err(|e| Problem::new(e.status(), e.body_text()))?;
    if let Some(kind) = headers.get(header::CONTENT_TYPE)
        && !kind.to_str().unwrap_or_default().contains("json")
    {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be a JSON definition (`flowhost workflow push` converts TOML)",
        ));
    }
    let json: Value = serde_json::from_slice(&body)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")))?;
    if let Some(error) = SCHEMA.1.iter_errors(&json).next() {
        let path = error.instance_path().to_string();
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{}: {error}", if path.is_empty() { "/" } else { &path }),
        ));
    }
    let definition: WorkflowDefinition = serde_path_to_error::deserialize(json).map_err(|e| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{}: {}", e.path(), e.inner()),
        )
    })?;
    let pushed = app
        .engine
        .workflows()
        .push(&name, definition, uses_checker(&app, &name))
        .await?;
    let status = if pushed.new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(pushed)).into_response())
}

/// `POST /v1/workflows/{name}/rollback`: makes the previous version (or the body's
/// `digest`) current again.
pub async fn rollback(
    State(app): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let digest = rollback_target(&body)?;
    let pushed = app
        .engine
        .workflows()
        .rollback(&name, digest.as_deref(), uses_checker(&app, &name))
        .await?;
    Ok(Json(pushed).into_response())
}

/// `DELETE /v1/workflows/{name}`: new starts get 404; refused (409) while runs pin it.
pub async fn delete(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    app.engine.workflows().delete(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/schemas/workflow.json`: the JSON Schema of a definition.
pub async fn schema() -> Response {
    (
        [(header::CONTENT_TYPE, "application/schema+json")],
        Json(SCHEMA.0.clone()),
    )
        .into_response()
}

fn check_name(name: &str) -> Result<(), Problem> {
    let fine = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if fine {
        return Ok(());
    }
    Err(Problem::new(
        StatusCode::BAD_REQUEST,
        format!("a workflow name is 1 to {MAX_NAME} letters, digits, `_`, `-` or `.`"),
    ))
}

/// [`check_uses`] for a new version of workflow `name`, which keeps the trigger its current
/// version has.
fn uses_checker<'a>(
    app: &'a AppState,
    name: &'a str,
) -> impl Fn(&WorkflowDefinition) -> Result<(), InvalidDefinition> + 'a {
    let trigger = app
        .engine
        .workflows()
        .current(name)
        .and_then(|w| w.definition.trigger.clone());
    move |definition| check_uses(app, name, definition, trigger.as_deref())
}

/// What only the host knows: every plugin a step names exists and is a `step-plugin`, and
/// the trigger is the one the configuration subscribed (`trigger`).
fn check_uses(
    app: &AppState,
    workflow: &str,
    definition: &WorkflowDefinition,
    trigger: Option<&str>,
) -> Result<(), InvalidDefinition> {
    for (step, _) in definition.all_steps() {
        if let Some(child) = &step.workflow {
            crate::workflows::check_child(workflow, child, |w| {
                let current = app.engine.workflows().current(w)?;
                Some(current.definition.children().map(str::to_owned).collect())
            })
            .map_err(|reason| InvalidDefinition {
                key: format!("steps.{}.workflow", step.name),
                reason,
            })?;
        }
        let Some(name) = &step.plugin else { continue };
        let invalid = |reason: String| InvalidDefinition {
            key: format!("steps.{}.plugin", step.name),
            reason,
        };
        let plugin = app
            .plugins
            .current(name)
            .ok_or_else(|| invalid(format!("unknown plugin `{name}`")))?;
        if !plugin.worlds().contains(&World::Step) {
            return Err(invalid(format!(
                "plugin `{name}` does not implement step-plugin (it exports no saga-step)"
            )));
        }
    }
    if definition.trigger.as_deref() != trigger {
        return Err(InvalidDefinition {
            key: "trigger".into(),
            reason: format!(
                "a workflow's trigger is subscribed from the configuration ({}); a pushed definition keeps it",
                trigger.map_or("none".to_owned(), |t| format!("`{t}`"))
            ),
        });
    }
    Ok(())
}
