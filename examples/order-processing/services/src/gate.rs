//! What stands in front of every service route, in this order:
//!
//! 1. count the request under its [`Route`] (injected failures and repeats included);
//! 2. answer an injected failure, if one is pending for the route, before doing anything;
//! 3. otherwise process the request, once per `Idempotency-Key` ([`crate::idempotency`]);
//! 4. wait the configured delay, then answer.
//!
//! The delay comes after the work: the effect is in the ledger (and the answer remembered)
//! at once, and only the answer is late. A host killed meanwhile has lost an answer whose
//! effect stands, which is the case idempotency keys exist for.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::idempotency;
use crate::route::Route;
use crate::state::Shared;

/// The state of one route's gate.
#[derive(Clone)]
pub struct Gate {
    /// The services' state.
    pub shared: Shared,
    /// The route this gate stands in front of.
    pub route: Route,
}

/// The middleware (`axum::middleware::from_fn_with_state` with a [`Gate`]).
pub async fn gate(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let Gate { shared, route } = gate;
    let key = idempotency::key_of(&request);
    tracing::debug!(
        route = route.as_str(),
        method = %request.method(),
        path = %request.uri().path(),
        idempotency_key = key.as_ref().ok().and_then(Option::as_deref),
        "order_services.request"
    );
    let traceparent = request
        .headers()
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let (delay, injected) = {
        let mut state = shared.lock();
        *state.requests.entry(route).or_default() += 1;
        if let Some(traceparent) = traceparent {
            state.traced(route, traceparent);
        }
        (state.delay, state.take_failure(route))
    };
    let response = match (injected, key) {
        (Some(status), _) => {
            tracing::debug!(
                route = route.as_str(),
                status = status.as_u16(),
                "injected failure"
            );
            injected_failure(status)
        }
        (None, Err(error)) => error.into_response(),
        (None, Ok(Some(key))) => idempotency::once(&shared, route, key, request, next).await,
        (None, Ok(None)) => next.run(request).await,
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    response
}

/// The answer of an injected failure.
fn injected_failure(status: StatusCode) -> Response {
    ApiError::new(status, format!("injected failure ({})", status.as_u16())).into_response()
}
