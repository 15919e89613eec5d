//! Handlers of the event routes: publishing from outside, the subscriptions and their
//! backlogs, and the dead letters.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use super::extract::{Path, Query};
use super::observe::RequestTrace;
use super::views::{
    DeadLetterPage, DeadLetterView, EventAccepted, SubscriptionView, Subscriptions,
};
use super::{AppState, Problem, ProblemDetails, page_limit};
use crate::capabilities::events::validate_topic;
use crate::events::transport::TransportError;
use crate::model::{PublishedEvent, now_ms};

/// The tag of these routes in the OpenAPI document.
pub const TAG: &str = "events";

/// Publishes the JSON body on `topic`, from outside; 202 with the event's id once it is
/// durable in the outbox.
#[utoipa::path(
    post,
    operation_id = "publish_event",
    path = "/v1/events/{topic}",
    tag = TAG,
    params(("topic" = String, Path, description = "Dot-separated segments of letters, digits, `_` and `-`.")),
    request_body(content = Value, content_type = "application/json", description = "The event's data: any JSON."),
    security((), ("trigger" = [])),
    responses(
        (status = 202, description = "The event is durable and will be delivered.", body = EventAccepted),
        (status = 400, description = "A malformed topic, or a body that is not JSON.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "A trigger token is configured and the request has none.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "The bearer token is wrong.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "The body is over `server.max-body-bytes`.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "The event could not be made durable.", body = ProblemDetails, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds"))),
    )
)]
pub async fn publish(
    State(app): State<AppState>,
    Path(topic): Path<String>,
    trace: Option<Extension<RequestTrace>>,
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
    let mut event = PublishedEvent::new(&topic, "api", data.to_string(), None, now_ms());
    event.traceparent = trace.and_then(|Extension(RequestTrace(t))| t);
    let id = event.id.clone();
    app.dispatcher.outbox().publish(vec![event]).await?;
    Ok((StatusCode::ACCEPTED, Json(EventAccepted { id, topic })).into_response())
}

/// Every subscription (the configured ones, the workflows' triggers, and the queue of
/// events runs await), with how many events wait in each one's queue.
#[utoipa::path(
    get,
    operation_id = "list_subscriptions",
    path = "/v1/subscriptions",
    tag = TAG,
    responses((status = 200, description = "The subscriptions.", body = Subscriptions))
)]
pub async fn subscriptions(State(app): State<AppState>) -> Json<Subscriptions> {
    let subscriptions = app.dispatcher.subscriptions();
    let backlogs = futures_util::future::join_all(subscriptions.iter().map(|s| async {
        match tokio::time::timeout(
            std::time::Duration::from_secs(2),
            app.dispatcher.backlog(&s.name),
        )
        .await
        {
            Ok(Ok(backlog)) => Ok(backlog.unwrap_or(0)),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("the transport did not answer within 2s".to_owned()),
        }
    }))
    .await;
    Json(Subscriptions {
        subscriptions: subscriptions
            .into_iter()
            .zip(backlogs)
            .map(|(subscription, backlog)| SubscriptionView::new(subscription, backlog))
            .collect(),
    })
}

/// Query of `GET /v1/dead-letters`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Dead letters per page, 1 to 500. Default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// Where the previous page ended: its `next_cursor`.
    cursor: Option<String>,
}

/// Deliveries given up on, newest first, paged.
#[utoipa::path(
    get,
    operation_id = "list_dead_letters",
    path = "/v1/dead-letters",
    tag = TAG,
    params(ListParams),
    responses(
        (status = 200, description = "A page of dead letters.", body = DeadLetterPage, links(
            ("Redeliver" = (operation_id = "redeliver_dead_letter", parameters(("id" = "$response.body#/dead_letters/0/id")))),
        )),
        (status = 400, description = "A malformed `limit` or `cursor`.", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub async fn dead_letters(
    State(app): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Response, Problem> {
    let limit = page_limit(params.limit)?;
    let letters = app
        .dispatcher
        .dead_letters(limit + 1, params.cursor.as_deref())
        .await?;
    let more = letters.len() > limit;
    let next_cursor = more
        .then(|| letters.get(limit - 1).map(|l| l.id.clone()))
        .flatten();
    Ok(Json(DeadLetterPage {
        dead_letters: letters
            .iter()
            .take(limit)
            .map(DeadLetterView::new)
            .collect(),
        next_cursor,
    })
    .into_response())
}

/// Queues a dead letter's event for its subscription again with fresh attempts, and
/// removes the dead letter; 202 once both are durable.
#[utoipa::path(
    post,
    operation_id = "redeliver_dead_letter",
    path = "/v1/dead-letters/{id}/redeliver",
    tag = TAG,
    params(("id" = String, Path, description = "The dead letter.")),
    security((), ("trigger" = [])),
    responses(
        (status = 202, description = "The event is queued again.", body = DeadLetterView),
        (status = 401, description = "A trigger token is configured and the request has none.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "The bearer token is wrong.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such dead letter.", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "The broker or the store failed; nothing changed.", body = ProblemDetails, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds"))),
    )
)]
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
    Ok((StatusCode::ACCEPTED, Json(DeadLetterView::new(&letter))).into_response())
}
