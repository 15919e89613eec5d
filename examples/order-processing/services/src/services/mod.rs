//! The four mock services, one module each, every route behind its [`Gate`](crate::gate):
//!
//! - [`users`]: `GET /users/{id}`;
//! - [`inventory`]: `POST /reservations`, `DELETE /reservations/{reservation_id}`;
//! - [`payments`]: `POST /payments`, `POST /payments/{payment_id}/refund`;
//! - [`orders`]: `POST /orders`, `POST /orders/{order_id}/cancel`;
//! - [`notifications`]: `POST /notifications`.

pub mod inventory;
pub mod notifications;
pub mod orders;
pub mod payments;
pub mod users;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{MethodRouter, delete, get, post};

use crate::gate::{Gate, gate};
use crate::route::Route;
use crate::state::Shared;

/// The services' routes.
pub fn router(shared: &Shared) -> Router<Shared> {
    let gated = |route: Route, endpoint: MethodRouter<Shared>| {
        let gate_state = Gate {
            shared: shared.clone(),
            route,
        };
        // `route_layer`: a wrong method is answered 405 without reaching the gate.
        endpoint.route_layer(from_fn_with_state(gate_state, gate))
    };
    Router::new()
        .route("/users/{id}", gated(Route::Users, get(users::get)))
        .route(
            "/reservations",
            gated(Route::Reservations, post(inventory::reserve)),
        )
        .route(
            "/reservations/{reservation_id}",
            gated(Route::Releases, delete(inventory::release)),
        )
        .route("/payments", gated(Route::Payments, post(payments::capture)))
        .route(
            "/payments/{payment_id}/refund",
            gated(Route::Refunds, post(payments::refund)),
        )
        .route("/orders", gated(Route::Orders, post(orders::create)))
        .route(
            "/orders/{order_id}/cancel",
            gated(Route::Cancellations, post(orders::cancel)),
        )
        .route(
            "/notifications",
            gated(Route::Notifications, post(notifications::send)),
        )
}
