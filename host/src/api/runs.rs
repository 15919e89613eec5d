//! Handlers of the run routes: start, read, list, retry, cancel, signal.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::IntoParams;

use super::extract::{Path, Query};
use super::observe::RequestTrace;
use super::views::{AttemptView, Journal, RunPage, RunView, SignalAccepted};
use super::{AppState, Problem, ProblemDetails, page_limit};
use crate::model::{Run, RunId, RunStatus};
use crate::store::ListQuery;
use crate::workflows::Workflow;

/// The tag of these routes in the OpenAPI document.
pub const TAG: &str = "runs";

/// Query of `POST /v1/workflows/{workflow}/runs`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StartQuery {
    /// Wait up to this long for the run to end (`30s`, `500ms`; at most `server.max-wait`):
    /// 200 with the finished run if it ends in time, 202 otherwise.
    #[param(example = "30s")]
    wait: Option<String>,
}

/// Starts a run of `workflow` with the JSON object in the body as its context. A `"id"`
/// member or an `Idempotency-Key` header makes the start idempotent: a repeat returns the
/// existing run (once it is durable), however many requests race.
#[utoipa::path(
    post,
    operation_id = "start_run",
    path = "/v1/workflows/{workflow}/runs",
    tag = TAG,
    params(
        ("workflow" = String, Path, description = "The workflow to run."),
        StartQuery,
        ("Idempotency-Key" = Option<String>, Header, description = "A key of the client's: a second start with it returns the first run."),
    ),
    request_body(
        content = Option<Object>,
        content_type = "application/json",
        description = "The run's context: a JSON object (or an empty body). An `id` member chooses the run's id.",
    ),
    security((), ("trigger" = [])),
    responses(
        (status = 200, description = "The run ended within `wait`.", body = RunView, links(
                ("GetRun" = (operation_id = "get_run", parameters(("id" = "$response.body#/id")))),
                ("GetJournal" = (operation_id = "get_run_journal", parameters(("id" = "$response.body#/id")))),
                ("CancelRun" = (operation_id = "cancel_run", parameters(("id" = "$response.body#/id")))),
                ("RetryRun" = (operation_id = "retry_run", parameters(("id" = "$response.body#/id")))),
                ("SignalRun" = (operation_id = "signal_run", parameters(("id" = "$response.body#/id")))),
            )),
        (status = 202, description = "The run is durable and under way (or it is the run a repeat found).", body = RunView,
            headers(("Location" = String, description = "`/v1/runs/{id}`")), links(
                ("GetRun" = (operation_id = "get_run", parameters(("id" = "$response.body#/id")))),
                ("GetJournal" = (operation_id = "get_run_journal", parameters(("id" = "$response.body#/id")))),
                ("CancelRun" = (operation_id = "cancel_run", parameters(("id" = "$response.body#/id")))),
                ("RetryRun" = (operation_id = "retry_run", parameters(("id" = "$response.body#/id")))),
                ("SignalRun" = (operation_id = "signal_run", parameters(("id" = "$response.body#/id")))),
            )),
        (status = 400, description = "Malformed JSON, a body that is not an object, a bad `id`, `wait` or `Idempotency-Key`, or an input its workflow's `input-schema` refuses.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "A trigger token is configured and the request has none.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "The bearer token is wrong.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such workflow.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "The body is over `server.max-body-bytes`.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "Every slot and queue place is taken; nothing was stored.", body = ProblemDetails, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds"))),
        (status = 503, description = "The run could not be made durable (nothing was stored), or the host is shutting down.", body = ProblemDetails, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds"))),
    )
)]
pub async fn start(
    State(app): State<AppState>,
    Path(workflow): Path<String>,
    Query(query): Query<StartQuery>,
    trace: Option<Extension<RequestTrace>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let wait = query
        .wait
        .map(|w| {
            humantime::parse_duration(&w)
                .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, format!("wait: {e}")))
        })
        .transpose()?;
    let body = body.map_err(|e| Problem::new(e.status(), e.body_text()))?;
    let mut input = parse_context(&body)?;
    let id = match input.remove("id") {
        None => None,
        Some(Value::String(id)) => Some(
            RunId::parse(&id).map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.to_string()))?,
        ),
        Some(_) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "`id` must be a string",
            ));
        }
    };
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| {
                    Problem::new(
                        StatusCode::BAD_REQUEST,
                        "Idempotency-Key must be visible ASCII",
                    )
                })?
                .to_owned(),
        ),
    };
    let traceparent = trace.and_then(|Extension(RequestTrace(t))| t);
    let engine = &app.engine;
    let (run, _new) = match wait {
        Some(wait) => {
            let wait = wait.min(app.max_wait);
            engine
                .start_and_wait(&workflow, input, id, idempotency_key, traceparent, wait)
                .await?
        }
        None => {
            engine
                .start(&workflow, input, id, idempotency_key, traceparent)
                .await?
        }
    };
    Ok(answer(&app, &run, wait.is_some()).await)
}

/// The view of `run`, its steps described by the definition it is pinned to.
async fn view<'a>(app: &AppState, run: &'a Run) -> RunView<'a> {
    let definition = match run.workflow_version.as_deref() {
        Some(digest) => app
            .engine
            .workflows()
            .pinned(&run.workflow, digest)
            .await
            .ok(),
        None => None,
    };
    RunView::new(run, definition.as_ref().map(|w| &w.definition))
}

/// 200 with the run when it is finished and the client waited; else 202 with `Location`.
async fn answer(app: &AppState, run: &Run, waited: bool) -> Response {
    let body = Json(view(app, run).await);
    if waited && run.status.is_terminal() {
        (StatusCode::OK, body).into_response()
    } else {
        (
            StatusCode::ACCEPTED,
            [(header::LOCATION, format!("/v1/runs/{}", run.id))],
            body,
        )
            .into_response()
    }
}

/// An empty body is an empty context; anything else must be a JSON object.
fn parse_context(body: &[u8]) -> Result<Map<String, Value>, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object (the run's context)",
        )),
        Err(e) => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!("malformed JSON: {e}"),
        )),
    }
}

/// The run `id`, or a 404 problem.
async fn find(app: &AppState, id: &str) -> Result<Run, Problem> {
    app.engine
        .get(id)
        .await?
        .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, format!("unknown run `{id}`")))
}

/// One run: its status, context, steps, pinned versions and times.
#[utoipa::path(
    get,
    operation_id = "get_run",
    path = "/v1/runs/{id}",
    tag = TAG,
    params(("id" = String, Path, description = "The run.")),
    responses(
        (status = 200, description = "The run.", body = RunView),
        (status = 404, description = "No such run.", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub async fn get(State(app): State<AppState>, Path(id): Path<String>) -> Result<Response, Problem> {
    let run = find(&app, &id).await?;
    Ok(Json(view(&app, &run).await).into_response())
}

/// Every attempt of the run's steps, in both directions, oldest first, with what each
/// returned.
#[utoipa::path(
    get,
    operation_id = "get_run_journal",
    path = "/v1/runs/{id}/journal",
    tag = TAG,
    params(("id" = String, Path, description = "The run.")),
    responses(
        (status = 200, description = "The run's journal.", body = Journal),
        (status = 404, description = "No such run.", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub async fn journal(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let run = find(&app, &id).await?;
    let entries = app.engine.store().journal(&run.id).await?;
    Ok(Json(Journal {
        run_id: &run.id,
        attempts: entries.iter().map(AttemptView::new).collect(),
    })
    .into_response())
}

/// Query of `GET /v1/runs`; the search filters (`context[field]=value`) are read from the
/// raw query ([`search_filters`]).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only runs of this workflow.
    workflow: Option<String>,
    /// Only runs in this status.
    status: Option<RunStatus>,
    /// Only runs created at or after this time (RFC 3339).
    #[param(format = DateTime, example = "2026-12-04T00:00:00Z")]
    created_after: Option<String>,
    /// Only runs created before this time (RFC 3339).
    #[param(format = DateTime, example = "2026-12-05T00:00:00Z")]
    created_before: Option<String>,
    /// Runs per page, 1 to 500. Default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// Where the previous page ended: its `next_cursor`.
    cursor: Option<String>,
}

/// Runs, newest first, filtered and paged, each filter served from an index: by workflow
/// and status, by creation time, and by the values of search fields (a workflow's `search`
/// keys, read from the run's input): `context[order_id]=o-1` (or `context.order_id=o-1`).
#[utoipa::path(
    get,
    operation_id = "list_runs",
    path = "/v1/runs",
    tag = TAG,
    params(
        ListParams,
        ("context" = Option<std::collections::BTreeMap<String, String>>, Query, style = DeepObject, explode,
            description = "Search filters: `context[field]=value`, each a field some workflow declares in `search`; a value as JSON prints it (strings without quotes). All must hold."),
    ),
    responses(
        (status = 200, description = "A page of runs.", body = RunPage),
        (status = 400, description = "A malformed filter, `limit` or `cursor`.", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(app): State<AppState>,
    Query(params): Query<ListParams>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Problem> {
    let limit = page_limit(params.limit)?;
    let search = search_filters(raw.as_deref().unwrap_or_default())?;
    for (field, _) in &search {
        check_search_field(&app, params.workflow.as_deref(), field)?;
    }
    let page = app
        .engine
        .store()
        .list(&ListQuery {
            workflow: params.workflow,
            status: params.status,
            created_after: params.created_after.as_deref().map(timestamp).transpose()?,
            created_before: params
                .created_before
                .as_deref()
                .map(timestamp)
                .transpose()?,
            search,
            limit,
            cursor: params.cursor,
        })
        .await?;
    let mut runs = Vec::with_capacity(page.runs.len());
    for run in &page.runs {
        runs.push(view(&app, run).await);
    }
    Ok(Json(RunPage {
        runs,
        next_cursor: page.next_cursor,
    })
    .into_response())
}

/// The search filters of a raw query: every `context[field]=value` or
/// `context.field=value` pair.
fn search_filters(raw: &str) -> Result<Vec<(String, String)>, Problem> {
    let mut filters = Vec::new();
    for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
        let field = key
            .strip_prefix("context[")
            .and_then(|rest| rest.strip_suffix(']'))
            .or_else(|| key.strip_prefix("context."));
        match field {
            Some(field) if !field.is_empty() => {
                filters.push((field.to_owned(), value.into_owned()))
            }
            Some(_) => {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "a search filter names a field: `context[order_id]=o-1`",
                ));
            }
            None if key.starts_with("context") => {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    format!("`{key}` is not a search filter: write `context[field]=value`"),
                ));
            }
            None => {}
        }
    }
    Ok(filters)
}

/// A search filter must name a field that `workflow` (or, without one, some workflow)
/// declares in `search`: only those are indexed.
fn check_search_field(app: &AppState, workflow: Option<&str>, field: &str) -> Result<(), Problem> {
    let registry = app.engine.workflows();
    let declares = |w: &Workflow| w.definition.search.iter().any(|f| f == field);
    // From the definitions in memory: a listing reads no store to check its filters.
    let found = match workflow {
        Some(workflow) => registry.current(workflow).is_some_and(|w| declares(&w)),
        None => registry.all_current().iter().any(|w| declares(w)),
    };
    if found {
        return Ok(());
    }
    let whose = workflow.map_or("any workflow".to_owned(), |w| format!("workflow `{w}`"));
    Err(Problem::new(
        StatusCode::BAD_REQUEST,
        format!(
            "`{field}` is not a search field of {whose}: declare it in the workflow's `search` to index runs by it"
        ),
    ))
}

/// An RFC 3339 time as ms since the Unix epoch.
fn timestamp(text: &str) -> Result<u64, Problem> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .and_then(|time| u64::try_from(time.timestamp_millis()).ok())
        .ok_or_else(|| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                format!("`{text}` is not an RFC 3339 time such as 2026-12-04T10:00:00Z"),
            )
        })
}

/// Drives the compensation of a `failed` or `compensation_failed` run again, its steps'
/// attempts granted anew. One retry wins however many race.
#[utoipa::path(
    post,
    operation_id = "retry_run",
    path = "/v1/runs/{id}/retry",
    tag = TAG,
    params(("id" = String, Path, description = "The run.")),
    security((), ("trigger" = [])),
    responses(
        (status = 202, description = "The run compensates again.", body = RunView,
            headers(("Location" = String, description = "`/v1/runs/{id}`"))),
        (status = 401, description = "A trigger token is configured and the request has none.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "The bearer token is wrong.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such run.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Nothing to undo, or a concurrent retry took the run first.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "No room to drive it now.", body = ProblemDetails, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds"))),
        (status = 503, description = "The retry could not be made durable.", body = ProblemDetails, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds"))),
    )
)]
pub async fn retry(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let run = app.engine.retry(&id).await?;
    Ok(answer(&app, &run, false).await)
}

/// Stops a pending or running run: the attempt in flight finishes, completed steps are
/// compensated in reverse order, the run ends `cancelled`. 202 once the cancel is durable,
/// the same for a repeat.
#[utoipa::path(
    post,
    operation_id = "cancel_run",
    path = "/v1/runs/{id}/cancel",
    tag = TAG,
    params(("id" = String, Path, description = "The run.")),
    security((), ("trigger" = [])),
    responses(
        (status = 202, description = "The cancel is durable.", body = RunView,
            headers(("Location" = String, description = "`/v1/runs/{id}`"))),
        (status = 401, description = "A trigger token is configured and the request has none.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "The bearer token is wrong.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such run.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The run ended otherwise, or compensates a failure.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "The cancel could not be made durable.", body = ProblemDetails, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds"))),
    )
)]
pub async fn cancel(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let run = app.engine.cancel(&id).await?;
    Ok(answer(&app, &run, false).await)
}

/// Delivers signal `name` with the JSON body (or `null`) to the run's await step for it;
/// kept in the run's inbox if the run has not reached the step yet.
#[utoipa::path(
    post,
    operation_id = "signal_run",
    path = "/v1/runs/{id}/signals/{name}",
    tag = TAG,
    params(
        ("id" = String, Path, description = "The run."),
        ("name" = String, Path, description = "The signal."),
    ),
    request_body(
        content = Option<Value>,
        content_type = "application/json",
        description = "The signal's data: any JSON (an empty body is `null`).",
    ),
    security((), ("trigger" = [])),
    responses(
        (status = 202, description = "The signal is durable in the run's inbox.", body = SignalAccepted),
        (status = 400, description = "Malformed JSON.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "A trigger token is configured and the request has none.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "The bearer token is wrong.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such run.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The run ended, has no await step ahead for the signal, or has 64 messages waiting.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "The body is over `server.max-body-bytes`.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "The signal could not be made durable.", body = ProblemDetails, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds"))),
    )
)]
pub async fn signal(
    State(app): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let body = body.map_err(|e| Problem::new(e.status(), e.body_text()))?;
    let data = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")))?
    };
    let message = app.engine.signal(&id, &name, data).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(SignalAccepted {
            run_id: id,
            signal: name,
            message_id: message.id,
        }),
    )
        .into_response())
}
