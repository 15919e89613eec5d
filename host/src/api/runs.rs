//! Handlers of the run routes.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{AppState, Problem, RunView, page_limit};
use crate::model::{Run, RunId, RunStatus};
use crate::store::ListQuery;

/// Query of `POST /v1/workflows/{workflow}/runs`.
#[derive(Deserialize)]
pub struct StartQuery {
    /// How long to wait for the run to finish, e.g. `30s`.
    wait: Option<String>,
}

/// `POST /v1/workflows/{workflow}/runs`: starts a run with the JSON object in the body as
/// its context. A `"id"` member or an `Idempotency-Key` header makes the start idempotent:
/// a repeat returns the existing run. With `?wait=`, answers 200 with the run if it ends in
/// time; otherwise (and without `wait`) 202 with `Location`.
pub async fn start(
    State(app): State<AppState>,
    Path(workflow): Path<String>,
    query: Result<Query<StartQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let Query(query) = query?;
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
    let (run, _new) = app
        .engine
        .start(&workflow, input, id, idempotency_key)
        .await?;
    let run = match wait {
        Some(wait) if !run.status.is_terminal() => {
            app.engine.wait(&run.id, wait.min(app.max_wait)).await?
        }
        _ => run,
    };
    Ok(answer(&run, wait.is_some()))
}

/// 200 with the run when it is finished and the client waited; else 202 with `Location`.
fn answer(run: &Run, waited: bool) -> Response {
    let body = Json(RunView::new(run));
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

/// `GET /v1/runs/{id}`.
pub async fn get(State(app): State<AppState>, Path(id): Path<String>) -> Result<Response, Problem> {
    let run = app
        .engine
        .get(&id)?
        .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, format!("unknown run `{id}`")))?;
    Ok(Json(RunView::new(&run)).into_response())
}

/// `GET /v1/runs/{id}/journal`.
pub async fn journal(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    if app.engine.get(&id)?.is_none() {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            format!("unknown run `{id}`"),
        ));
    }
    let entries = app
        .engine
        .store()
        .journal(&RunId::parse(&id).expect("a run was found by it"))?;
    Ok(Json(json!({ "run_id": id, "attempts": entries })).into_response())
}

/// Query of `GET /v1/runs`.
#[derive(Deserialize)]
pub struct ListParams {
    workflow: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /v1/runs`: newest first, filtered by workflow and status, paged with `cursor`.
pub async fn list(
    State(app): State<AppState>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(params) = params?;
    let status = params
        .status
        .map(|s| {
            RunStatus::parse(&s).ok_or_else(|| {
                Problem::new(StatusCode::BAD_REQUEST, format!("unknown status `{s}`"))
            })
        })
        .transpose()?;
    let limit = page_limit(params.limit)?;
    let page = app.engine.store().list(&ListQuery {
        workflow: params.workflow,
        status,
        limit,
        cursor: params.cursor,
    })?;
    let runs: Vec<RunView> = page.runs.iter().map(RunView::new).collect();
    Ok(Json(json!({ "runs": runs, "next_cursor": page.next_cursor })).into_response())
}

/// `POST /v1/runs/{id}/retry`: drives the compensation of a `failed` or
/// `compensation_failed` run again.
pub async fn retry(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let run = app.engine.retry(&id).await?;
    Ok(answer(&run, false))
}

/// `POST /v1/runs/{id}/cancel`: stops a pending or running run; its completed steps are
/// compensated and it ends `cancelled`. 202 with the run once the cancel is durable, again
/// for a repeat; 409 for a run that ended otherwise or compensates a failure.
pub async fn cancel(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let run = app.engine.cancel(&id).await?;
    Ok(answer(&run, false))
}

/// `POST /v1/runs/{id}/signals/{name}`: delivers signal `name` with the JSON body (or
/// `null`) to the run; 202 once it is durable in the run's inbox, where the run's await step
/// for it takes it. 409 for a run that ended or has no await step ahead for the signal.
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
        Json(json!({ "run_id": id, "signal": name, "message_id": message.id })),
    )
        .into_response())
}
