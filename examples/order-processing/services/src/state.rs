//! The one shared state of the services: the ledger, the idempotency memory, the failure
//! injections, the delay, the request counters and where settlements are announced.
//!
//! Lock choice: one `std::sync::Mutex` around all of it, not tokio's. Every critical section
//! is a few map operations and none awaits while holding the guard (handlers take the lock in
//! one statement and drop it before any `.await`), so a blocking mutex is cheaper and a
//! guard can never be held across a suspension point. One lock for everything also makes
//! `POST /admin/reset` and `GET /ledger` atomic.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::http::StatusCode;
use tokio::sync::OnceCell;

use crate::idempotency::Remembered;
use crate::ledger::Ledger;
use crate::route::Route;

/// A handle on the state, cloned into every handler.
#[derive(Clone, Default)]
pub struct Shared(Arc<Mutex<State>>);

impl Shared {
    /// Locks the state. Never hold the guard across an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A handler that panicked mid-update leaves maps that are still well-formed; honouring
        // the poison would only turn that one bug into a failure of every later request.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Everything the services remember; `POST /admin/reset` puts it back to `default()`.
#[derive(Default)]
pub struct State {
    /// The reservations, payments and orders.
    pub ledger: Ledger,
    /// The answer to each `(route, Idempotency-Key)` seen: a cell that is empty while the
    /// first request with that key is being processed, so that a concurrent repeat waits
    /// for its answer instead of doing the work a second time.
    pub idempotency: HashMap<(Route, String), Arc<OnceCell<Remembered>>>,
    /// The failures still to inject, per route.
    pub failures: HashMap<Route, Injection>,
    /// How long every service request waits before its answer goes out.
    pub delay: Duration,
    /// How many requests each route received, injected failures and repeats included.
    pub requests: BTreeMap<Route, u64>,
    /// Where captured payments are announced as settled, later, as a payment provider's
    /// webhook would: none unless set.
    pub settlement: Option<Settlement>,
    /// The W3C `traceparent` of each service request that carried one, oldest first, at
    /// most [`MAX_TRACES`]: what tests read to see that a trace reached the services.
    pub traces: VecDeque<Traced>,
}

/// How many traced requests [`State::traces`] keeps.
pub const MAX_TRACES: usize = 10_000;

/// A service request that carried a trace context.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Traced {
    /// The route it was for.
    pub route: Route,
    /// Its `traceparent` header.
    pub traceparent: String,
}

/// Asynchronous settlement: after each capture, `POST {order_id, payment_id, amount,
/// status: "settled"}` to `webhook` once `after` has passed.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settlement {
    /// The URL that hears of settlements, e.g. flowhost's
    /// `http://127.0.0.1:8080/v1/events/payment.settled`.
    pub webhook: String,
    /// How long after the capture, ms.
    #[serde(default = "Settlement::default_after_ms")]
    pub after_ms: u64,
}

impl Settlement {
    fn default_after_ms() -> u64 {
        200
    }
}

/// A pending failure injection on one route.
#[derive(Clone, Copy, Debug)]
pub struct Injection {
    /// How many more requests fail.
    pub remaining: u32,
    /// The status they answer.
    pub status: StatusCode,
}

impl State {
    /// Consumes one injected failure for `route`, if any is left, and returns its status.
    pub fn take_failure(&mut self, route: Route) -> Option<StatusCode> {
        let injection = self.failures.get_mut(&route)?;
        let status = injection.status;
        injection.remaining -= 1;
        if injection.remaining == 0 {
            self.failures.remove(&route);
        }
        Some(status)
    }

    /// Remembers that a request to `route` carried `traceparent`.
    pub fn traced(&mut self, route: Route, traceparent: String) {
        if self.traces.len() == MAX_TRACES {
            self.traces.pop_front();
        }
        self.traces.push_back(Traced { route, traceparent });
    }

    /// The request counters, with a zero for every route not yet called.
    pub fn request_counts(&self) -> BTreeMap<Route, u64> {
        Route::ALL
            .iter()
            .map(|route| (*route, self.requests.get(route).copied().unwrap_or(0)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injections_run_out() {
        let mut state = State::default();
        state.failures.insert(
            Route::Payments,
            Injection {
                remaining: 2,
                status: StatusCode::SERVICE_UNAVAILABLE,
            },
        );
        assert_eq!(
            state.take_failure(Route::Payments),
            Some(StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(state.take_failure(Route::Refunds), None);
        assert_eq!(
            state.take_failure(Route::Payments),
            Some(StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(state.take_failure(Route::Payments), None);
        assert!(state.failures.is_empty());
    }
}
