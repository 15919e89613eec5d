//! Handlers of the event routes: publishing from outside, and the dead letters.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, Problem, page_limit};
use crate::capabilities::events::validate_topic;
use crate::events::cloud_event;
use crate::events::transport::TransportError;
use crate::model::{DeadLetter, PublishedEvent, now_ms, rfc3339};

/// `POST /v1/events/{topic}`: publishes the JSON body on `topic`, answering 202 with the
/// event's id once it is durable.
pub async fn publish(
    State(app): State<AppState>,
    Path(topic): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    validate_topic(&topic).map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let body = body.map_err(|e| Problem::new(e.status(), e.body_text()))?;
    let data: Value = serde_json::from_slice(&body).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            format!("the body must be JSON (the event's data): {e}"),
        )
    })?;
    let event = PublishedEvent::new(&topic, "api", data.to_string(), None, now_ms());
    let id = event.id.clone();
    app.dispatcher.outbox().publish(vec![event]).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": id, "topic": topic })),
    )
        .into_response())
}

/// Query of `GET /v1/dead-letters`.
#[derive(Deserialize)]
pub struct ListParams {
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /v1/dead-letters`: newest first, paged with `cursor`.
pub async fn dead_letters(
    State(app): State<AppState>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(params) = params?;
    let limit = page_limit(params.limit)?;
    let letters = app
        .dispatcher
        .dead_letters(limit + 1, params.cursor.as_deref())?;
    let more = letters.len() > limit;
    let page: Vec<Value> = letters.iter().take(limit).map(view).collect();
    let next_cursor = more
        .then(|| letters.get(limit - 1).map(|l| l.id.clone()))
        .flatten();
    Ok(Json(json!({ "dead_letters": page, "next_cursor": next_cursor })).into_response())
}

/// `POST /v1/dead-letters/{id}/redeliver`: queues the event for its subscription again;
/// 202 once that and the dead letter's removal are durable.
pub async fn redeliver(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let letter = app
        .dispatcher
        .redeliver(&id)
        .await
        .map_err(|e| match e {
            TransportError::Store(e) => Problem::from(e),
            broker => Problem::new(StatusCode::SERVICE_UNAVAILABLE, broker.to_string()),
        })?
        .ok_or_else(|| {
            Problem::new(StatusCode::NOT_FOUND, format!("unknown dead letter `{id}`"))
        })?;
    Ok((StatusCode::ACCEPTED, Json(view(&letter))).into_response())
}

fn view(letter: &DeadLetter) -> Value {
    json!({
        "id": letter.id,
        "subscription": letter.subscription,
        "attempts": letter.attempts,
        "error": letter.error,
        "dead_at": rfc3339(letter.dead_ms),
        "event": cloud_event(&letter.event),
    })
}
