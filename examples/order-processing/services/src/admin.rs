//! The admin routes, for tests: failure injection, a delay on every answer, and a reset.
//! They are not gated: not counted, not delayed, never failed.
//!
//! - `POST /admin/fail` `{"route", "times", "status"}`: the next `times` requests to `route`
//!   answer `status` (default 503) before doing anything; replaces any pending injection on
//!   that route, `times: 0` clears it.
//! - `POST /admin/delay` `{"ms"}`: every service request waits `ms` before its answer goes
//!   out (0 clears it).
//! - `POST /admin/settlements` `{"webhook", "after_ms"}` (or `null`): announce each capture
//!   as settled to `webhook`, `after_ms` (default 200) after it, as a payment provider does.
//! - `GET /admin/traces`: the `traceparent` of every service request that carried one,
//!   oldest first: `{"requests": [{"route", "traceparent"}]}`.
//! - `POST /admin/reset`: back to a fresh start (ledger, idempotency memory, injections,
//!   delay and request counters).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{ApiError, JsonBody};
use crate::route::Route;
use crate::state::{Injection, Settlement, Shared};

/// The admin routes.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/admin/fail", post(fail))
        .route("/admin/delay", post(delay))
        .route("/admin/settlements", post(settlements))
        .route("/admin/reset", post(reset))
        .route("/admin/traces", get(traces))
}

/// The body of `POST /admin/fail`, and its answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fail {
    /// The route whose next requests fail.
    pub route: Route,
    /// How many of them.
    pub times: u32,
    /// The status they answer, 400 to 599.
    #[serde(default = "Fail::default_status")]
    pub status: u16,
}

impl Fail {
    fn default_status() -> u16 {
        StatusCode::SERVICE_UNAVAILABLE.as_u16()
    }
}

/// `POST /admin/fail`.
async fn fail(
    State(shared): State<Shared>,
    JsonBody(fail): JsonBody<Fail>,
) -> Result<Json<Fail>, ApiError> {
    let status = StatusCode::from_u16(fail.status)
        .ok()
        .filter(|s| s.is_client_error() || s.is_server_error())
        .ok_or_else(|| ApiError::invalid("status must be between 400 and 599"))?;
    {
        let mut state = shared.lock();
        if fail.times == 0 {
            state.failures.remove(&fail.route);
        } else {
            let injection = Injection {
                remaining: fail.times,
                status,
            };
            state.failures.insert(fail.route, injection);
        }
    }
    tracing::debug!(
        route = fail.route.as_str(),
        times = fail.times,
        status = fail.status,
        "failure injection set"
    );
    Ok(Json(fail))
}

/// The body of `POST /admin/delay`, and its answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delay {
    /// Milliseconds added before every service answer; 0 for none.
    pub ms: u64,
}

/// `POST /admin/delay`.
async fn delay(State(shared): State<Shared>, JsonBody(delay): JsonBody<Delay>) -> Json<Delay> {
    shared.lock().delay = Duration::from_millis(delay.ms);
    tracing::debug!(ms = delay.ms, "delay set");
    Json(delay)
}

/// `POST /admin/settlements`.
async fn settlements(
    State(shared): State<Shared>,
    JsonBody(settlement): JsonBody<Option<Settlement>>,
) -> Json<Option<Settlement>> {
    shared.lock().settlement.clone_from(&settlement);
    tracing::debug!(?settlement, "settlements set");
    Json(settlement)
}

/// `GET /admin/traces`.
async fn traces(State(shared): State<Shared>) -> Json<Value> {
    Json(json!({ "requests": shared.lock().traces }))
}

/// `POST /admin/reset`.
async fn reset(State(shared): State<Shared>) -> Json<Value> {
    *shared.lock() = Default::default();
    tracing::debug!("state reset");
    Json(json!({ "status": "reset" }))
}
