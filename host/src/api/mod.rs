//! The HTTP API, v1: JSON in and out, errors as `application/problem+json`.
//!
//! | route | what |
//! | --- | --- |
//! | `POST /v1/workflows/{workflow}/runs[?wait=30s]` | start a run ([`runs::start`]) |
//! | `GET /v1/runs/{id}` | one run |
//! | `GET /v1/runs/{id}/journal` | every attempt of its steps |
//! | `GET /v1/runs?workflow=&status=&limit=&cursor=` | runs, newest first, paged |
//! | `POST /v1/runs/{id}/retry` | drive a failed compensation again |
//! | `POST /v1/events/{topic}` | publish the JSON body; 202 once durable ([`events::publish`]) |
//! | `GET /v1/dead-letters?limit=&cursor=` | deliveries given up on, newest first |
//! | `POST /v1/dead-letters/{id}/redeliver` | queue one for its subscription again |
//! | `GET /healthz` | liveness |

mod error;
mod events;
mod runs;
mod view;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};

pub use self::error::Problem;
pub use self::view::RunView;
use crate::config::ServerConfig;
use crate::events::Dispatcher;
use crate::saga::Engine;

/// Most items one page may hold.
const MAX_PAGE: usize = 500;

/// A listing's `limit`: 50 unless given, 1 to [`MAX_PAGE`].
fn page_limit(limit: Option<usize>) -> Result<usize, Problem> {
    let limit = limit.unwrap_or(50);
    if limit == 0 || limit > MAX_PAGE {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!("limit must be 1 to {MAX_PAGE}"),
        ));
    }
    Ok(limit)
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The saga engine.
    pub engine: Engine,
    /// The event dispatcher, with its outbox.
    pub dispatcher: Arc<Dispatcher>,
    /// The longest `?wait=` honoured.
    pub max_wait: Duration,
}

/// The API's router over `engine` and `dispatcher`.
pub fn router(engine: Engine, dispatcher: Arc<Dispatcher>, server: &ServerConfig) -> Router {
    let state = AppState {
        engine,
        dispatcher,
        max_wait: server.max_wait,
    };
    Router::new()
        .route("/v1/workflows/{workflow}/runs", post(runs::start))
        .route("/v1/runs", get(runs::list))
        .route("/v1/runs/{id}", get(runs::get))
        .route("/v1/runs/{id}/journal", get(runs::journal))
        .route("/v1/runs/{id}/retry", post(runs::retry))
        .route("/v1/events/{topic}", post(events::publish))
        .route("/v1/dead-letters", get(events::dead_letters))
        .route("/v1/dead-letters/{id}/redeliver", post(events::redeliver))
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({ "status": "ok" })) }),
        )
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "this route does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(server.max_body_bytes))
        .with_state(state)
}
