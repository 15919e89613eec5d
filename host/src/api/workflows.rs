//! Handlers of the workflow routes: definitions pushed, rolled back and retired, their
//! versions and their pins, and the schema of a definition.

use std::sync::LazyLock;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::extract::Path;
use super::plugins::{RollbackBody, rollback_target};
use super::views::{WorkflowChange, WorkflowDetail, Workflows};
use super::{AppState, Problem, ProblemDetails};
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

/// The tag of these routes in the OpenAPI document.
pub const TAG: &str = "workflows";

/// The schema of a definition, for the OpenAPI document.
pub(super) fn definition_schema() -> &'static Value {
    &SCHEMA.0
}

/// Longest workflow name.
const MAX_NAME: usize = 128;

/// Every workflow that has versions, configured or retired, with its versions and their
/// pins.
#[utoipa::path(
    get,
    operation_id = "list_workflows",
    path = "/v1/workflows",
    tag = TAG,
    security(("admin" = [])),
    responses(
        (status = 200, description = "The workflows.", body = Workflows),
        (status = 401, description = "No bearer token.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "A wrong token, or the admin routes are off.", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub async fn list(State(app): State<AppState>) -> Result<Response, Problem> {
    let workflows = app.engine.workflows().list().await?;
    Ok(Json(Workflows {
        workflows: workflows.iter().map(WorkflowDetail::new).collect(),
    })
    .into_response())
}

/// A workflow's versions, newest first, each with its definition: which is current, and
/// how many runs pin each.
#[utoipa::path(
    get,
    operation_id = "get_workflow",
    path = "/v1/workflows/{name}",
    tag = TAG,
    params(("name" = String, Path, description = "The workflow.")),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The workflow.", body = WorkflowDetail),
        (status = 401, description = "No bearer token.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "A wrong token, or the admin routes are off.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such workflow.", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub async fn describe(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    let workflow = app.engine.workflows().describe(&name).await?;
    Ok(Json(WorkflowDetail::new(&workflow)).into_response())
}

/// Pushes a definition (JSON, the schema of a `[workflows.<name>]` table) and makes it
/// current, durably. Checked against the schema, validated (names, kinds, expressions,
/// the input schema) and checked against the plugins before anything changes. Runs
/// started after the answer follow it; runs in flight finish on theirs.
#[utoipa::path(
    put,
    operation_id = "push_workflow",
    path = "/v1/workflows/{name}",
    tag = TAG,
    params(("name" = String, Path, description = "1 to 128 letters, digits, `_`, `-` or `.`.")),
    request_body(content = ref("#/components/schemas/WorkflowDefinition"), content_type = "application/json"),
    security(("admin" = [])),
    responses(
        (status = 200, description = "A known version, current again.", body = WorkflowChange),
        (status = 201, description = "A new version, now current.", body = WorkflowChange, links(
            ("GetWorkflow" = (operation_id = "get_workflow", parameters(("name" = "$request.path.name")))),
            ("RollbackWorkflow" = (operation_id = "rollback_workflow", parameters(("name" = "$request.path.name")))),
            ("DeleteWorkflow" = (operation_id = "delete_workflow", parameters(("name" = "$request.path.name")))),
        )),
        (status = 400, description = "A bad name, or malformed JSON.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "No bearer token.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "A wrong token, or the admin routes are off.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "The body is over `server.max-body-bytes`.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "The definition does not hold: `detail` names the field.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "The version could not be stored durably; nothing changed.", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
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
    Ok((status, Json(WorkflowChange::new(&pushed))).into_response())
}

/// Makes the previous version (or the version the body's `digest` names) current again.
#[utoipa::path(
    post,
    operation_id = "rollback_workflow",
    path = "/v1/workflows/{name}/rollback",
    tag = TAG,
    params(("name" = String, Path, description = "The workflow.")),
    request_body(content = Option<RollbackBody>, content_type = "application/json", description = "Empty, or the version to make current."),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The version now current.", body = WorkflowChange),
        (status = 400, description = "A body that is neither empty nor `{\"digest\": ...}`.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "No bearer token.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "A wrong token, or the admin routes are off.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such workflow or version.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "No earlier version.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "The body is over `server.max-body-bytes`.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "The version no longer fits the plugins or the trigger.", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub async fn rollback(
    State(app): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let digest = rollback_target(body)?;
    let pushed = app
        .engine
        .workflows()
        .rollback(&name, digest.as_deref(), uses_checker(&app, &name))
        .await?;
    Ok(Json(WorkflowChange::new(&pushed)).into_response())
}

/// Retires a workflow: new starts get 404. Refused while runs pin it.
#[utoipa::path(
    delete,
    operation_id = "delete_workflow",
    path = "/v1/workflows/{name}",
    tag = TAG,
    params(("name" = String, Path, description = "The workflow.")),
    security(("admin" = [])),
    responses(
        (status = 204, description = "Retired."),
        (status = 401, description = "No bearer token.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "A wrong token, or the admin routes are off.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such workflow.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Runs pin it.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "The change could not be stored durably.", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub async fn delete(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    app.engine.workflows().delete(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The JSON Schema (2020-12) of a workflow definition, which `PUT /v1/workflows/{name}`
/// checks bodies against.
#[utoipa::path(
    get,
    operation_id = "get_workflow_schema",
    path = "/v1/schemas/workflow.json",
    tag = TAG,
    responses((status = 200, description = "The schema.", body = Object, content_type = "application/schema+json"))
)]
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
