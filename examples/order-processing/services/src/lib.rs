//! Mock external services for the order-processing example: users, inventory, payments
//! and orders in one axum app with in-memory state, plus what tests need to check a saga
//! from the outside: a ledger of every effect, idempotency keys, failure injection and a
//! delay.
//!
//! Layout:
//!
//! - [`services`]: the four services' routes and handlers, one module each;
//! - [`gate`]: what stands in front of every service route: counting, failure injection,
//!   idempotency, delay;
//! - [`idempotency`]: `Idempotency-Key` handling, scoped per route;
//! - [`ledger`]: the records and `GET /ledger`;
//! - [`admin`]: `/admin/fail`, `/admin/delay`, `/admin/reset`;
//! - [`state`]: the one shared state behind one mutex;
//! - [`route`]: the names of the service routes;
//! - [`error`]: the `{"error": "..."}` answers.
//!
//! [`app`] builds the router with fresh state; [`run`] serves it on a listener until a
//! shutdown future completes, so tests can start it in-process on `127.0.0.1:0`.

pub mod admin;
pub mod error;
pub mod gate;
pub mod idempotency;
pub mod ledger;
pub mod route;
pub mod services;
pub mod state;

use std::future::Future;
use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use tokio::net::TcpListener;

use crate::error::ApiError;
use crate::state::Shared;

/// The services with fresh state: every route, a JSON 404 for unknown paths and a JSON 405
/// for a wrong method, every request logged at debug.
pub fn app() -> Router {
    app_with(None)
}

/// As [`app`], announcing captures as settled to `settlement`'s webhook.
pub fn app_with(settlement: Option<state::Settlement>) -> Router {
    let shared = Shared::default();
    shared.lock().settlement = settlement;
    Router::new()
        .merge(services::router(&shared))
        .merge(ledger::router())
        .merge(admin::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(log))
        .with_state(shared)
}

/// Serves [`app`] on `listener` until `shutdown` completes, then finishes the requests in
/// flight and returns.
pub async fn run(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve(listener, None, shutdown).await
}

/// As [`run`], announcing captures as settled to `settlement`'s webhook.
pub async fn serve(
    listener: TcpListener,
    settlement: Option<state::Settlement>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app_with(settlement))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The answer for a path no route matches.
async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route for {} {}",
        request.method(),
        request.uri().path()
    ))
}

/// The answer for a known path with the wrong method.
async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Logs every request, admin and unknown ones included, at debug.
async fn log(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::debug!(
        %method,
        %path,
        status = response.status().as_u16(),
        replayed = response.headers().contains_key(idempotency::REPLAYED),
        elapsed = ?started.elapsed(),
        "order_services.http"
    );
    response
}
