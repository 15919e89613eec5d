//! The named routes of the four services: the unit of failure injection, idempotency
//! scoping and request counting.
//!
//! A name stands for one method on one route template (`refunds` is
//! `POST /payments/{payment_id}/refund`), so that `POST /admin/fail` and the ledger's
//! `requests` counters can speak of an endpoint without spelling out its path.

use serde::{Deserialize, Serialize};

/// One endpoint of the mock services.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// `GET /users/{id}`.
    Users,
    /// `POST /reservations`.
    Reservations,
    /// `DELETE /reservations/{reservation_id}`.
    Releases,
    /// `POST /payments`.
    Payments,
    /// `POST /payments/{payment_id}/refund`.
    Refunds,
    /// `POST /orders`.
    Orders,
    /// `POST /orders/{order_id}/cancel`.
    Cancellations,
    /// `POST /notifications`.
    Notifications,
}

impl Route {
    /// Every route, in the order the ledger lists their counters.
    pub const ALL: [Route; 8] = [
        Route::Users,
        Route::Reservations,
        Route::Releases,
        Route::Payments,
        Route::Refunds,
        Route::Orders,
        Route::Cancellations,
        Route::Notifications,
    ];

    /// The route's name, as `POST /admin/fail` and the ledger spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Users => "users",
            Route::Reservations => "reservations",
            Route::Releases => "releases",
            Route::Payments => "payments",
            Route::Refunds => "refunds",
            Route::Orders => "orders",
            Route::Cancellations => "cancellations",
            Route::Notifications => "notifications",
        }
    }
}
