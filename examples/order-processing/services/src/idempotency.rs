//! `Idempotency-Key` on `POST` and `DELETE`: the first request with a key is processed and
//! its answer remembered; a repeat with the same key on the same route gets that answer back
//! (marked `Idempotent-Replayed: true`) and has no effect.
//!
//! Keys are scoped per route, so the same key on two endpoints names two requests. A repeat
//! that arrives while the first is still being processed waits for its answer. What is not
//! remembered: injected failures (they are answered before this layer), and 5xx answers of
//! the handler itself, so that a retry after a server error does the work. Everything else
//! is, 4xx included: a declined payment stays declined for its key. The request body of a
//! repeat is not compared with the first one's.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::route::Route;
use crate::state::Shared;

/// The request header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The response header set on an answer that was remembered, not computed.
pub const REPLAYED: &str = "idempotent-replayed";

/// A remembered answer.
#[derive(Debug, Clone)]
pub struct Remembered {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Bytes,
}

impl Remembered {
    /// Buffers `response` to remember it.
    async fn capture(response: Response) -> Result<Self, Response> {
        let (parts, body) = response.into_parts();
        // The handlers' bodies are small JSON documents already in memory.
        let body = axum::body::to_bytes(body, usize::MAX).await.map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading the answer: {e}"),
            )
            .into_response()
        })?;
        Ok(Self {
            status: parts.status,
            content_type: parts.headers.get(CONTENT_TYPE).cloned(),
            body,
        })
    }

    /// The answer, marked as a replay if `replayed`.
    fn to_response(&self, replayed: bool) -> Response {
        let mut response = Response::new(Body::from(self.body.clone()));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        if let Some(content_type) = &self.content_type {
            headers.insert(CONTENT_TYPE, content_type.clone());
        }
        if replayed {
            headers.insert(REPLAYED, HeaderValue::from_static("true"));
        }
        response
    }
}

/// The request's idempotency key, if it is a `POST` or `DELETE` that carries one.
pub fn key_of(request: &Request) -> Result<Option<String>, ApiError> {
    if !matches!(*request.method(), Method::POST | Method::DELETE) {
        return Ok(None);
    }
    let Some(value) = request.headers().get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) => Ok(Some(key.to_owned())),
        Err(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the Idempotency-Key header is not visible ASCII",
        )),
    }
}

/// Answers `request` once per `(route, key)`: runs `next` for the first request with the
/// key and replays its answer for the others.
pub async fn once(
    shared: &Shared,
    route: Route,
    key: String,
    request: Request,
    next: Next,
) -> Response {
    let cell = Arc::clone(shared.lock().idempotency.entry((route, key)).or_default());
    let mut processed = false;
    let processed_here = &mut processed;
    // If the first request is dropped midway (its client went away), the cell stays empty
    // and the next request with the key does the work.
    let outcome = cell
        .get_or_try_init(move || async move {
            *processed_here = true;
            let response = next.run(request).await;
            if response.status().is_server_error() {
                return Err(response);
            }
            Remembered::capture(response).await
        })
        .await;
    match outcome {
        Ok(remembered) => remembered.to_response(!processed),
        Err(response) => response,
    }
}
