//! The ledger: every reservation, payment and order the services hold, and the
//! `GET /ledger` views of it.
//!
//! Records are kept in creation order and never deleted: a release, refund or cancellation
//! changes the record's status, so the ledger shows both what a run did and what its
//! compensation undid. Anyone can check from it that a compensated run left nothing active
//! and that no order was charged twice.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;
use ulid::Ulid;

use crate::route::Route;
use crate::state::Shared;

/// The ledger routes: `GET /ledger` and `GET /ledger/orders/{order_id}`.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/ledger", get(full))
        .route("/ledger/orders/{order_id}", get(one_order))
}

/// `GET /ledger`: every record, the counts and the request counters.
async fn full(State(shared): State<Shared>) -> Json<LedgerView> {
    let state = shared.lock();
    let mut view = state.ledger.view(None);
    view.requests = Some(state.request_counts());
    Json(view)
}

/// `GET /ledger/orders/{order_id}`: the records of one order (empty lists if it has none).
async fn one_order(State(shared): State<Shared>, Path(order_id): Path<String>) -> Json<LedgerView> {
    Json(shared.lock().ledger.view(Some(&order_id)))
}

/// Where a reservation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReservationStatus {
    /// Holding stock.
    Active,
    /// Given back by `DELETE /reservations/{id}`.
    Released,
}

/// Stock held for one line of an order.
#[derive(Clone, Debug, Serialize)]
pub struct Reservation {
    /// `res_` and a ULID.
    pub reservation_id: String,
    /// The order it is for.
    pub order_id: String,
    /// The product reserved.
    pub product_id: String,
    /// How many.
    pub quantity: u32,
    /// Active or released.
    pub status: ReservationStatus,
}

/// Where a payment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentStatus {
    /// The money was taken.
    Captured,
    /// The money was given back by `POST /payments/{id}/refund`.
    Refunded,
}

/// One charge.
#[derive(Clone, Debug, Serialize)]
pub struct Payment {
    /// `pay_` and a ULID.
    pub payment_id: String,
    /// The order it pays for.
    pub order_id: String,
    /// How much.
    pub amount: f64,
    /// The payment method the caller named.
    pub method: String,
    /// Captured or refunded.
    pub status: PaymentStatus,
}

/// Where an order stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// Placed by `POST /orders`.
    Created,
    /// Cancelled by `POST /orders/{id}/cancel`.
    Cancelled,
}

/// One order.
#[derive(Clone, Debug, Serialize)]
pub struct Order {
    /// The caller's id for it; unique.
    pub order_id: String,
    /// Who placed it.
    pub user_id: u64,
    /// The items as the caller sent them: the mock does not look inside.
    pub items: Vec<Value>,
    /// The order's total.
    pub total_amount: f64,
    /// Created or cancelled.
    pub status: OrderStatus,
}

/// One notification sent to a customer (by an event handler).
#[derive(Clone, Debug, Serialize)]
pub struct Notification {
    /// Its id.
    pub notification_id: String,
    /// The order it is about.
    pub order_id: String,
    /// The channel the sender named, e.g. `email`.
    pub channel: String,
    /// The event that caused it.
    pub event_id: String,
    /// That event's topic.
    pub topic: String,
}

/// Records in creation order, with an index by id.
#[derive(Debug)]
struct Table<T> {
    records: Vec<T>,
    index: HashMap<String, usize>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self {
            records: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<T> Table<T> {
    fn insert(&mut self, id: String, record: T) {
        self.index.insert(id, self.records.len());
        self.records.push(record);
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut T> {
        let at = *self.index.get(id)?;
        self.records.get_mut(at)
    }

    fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }
}

/// The services' books.
#[derive(Debug, Default)]
pub struct Ledger {
    reservations: Table<Reservation>,
    payments: Table<Payment>,
    orders: Table<Order>,
    notifications: Vec<Notification>,
}

/// `POST /orders` for an order id the ledger already holds.
#[derive(Debug)]
pub struct OrderExists;

impl Ledger {
    /// Records a new active reservation.
    pub fn reserve(&mut self, order_id: String, product_id: String, quantity: u32) -> Reservation {
        let reservation = Reservation {
            reservation_id: format!("res_{}", Ulid::new()),
            order_id,
            product_id,
            quantity,
            status: ReservationStatus::Active,
        };
        self.reservations
            .insert(reservation.reservation_id.clone(), reservation.clone());
        reservation
    }

    /// Releases a reservation (again, harmlessly, if it already is); `None` if unknown.
    pub fn release(&mut self, reservation_id: &str) -> Option<Reservation> {
        let reservation = self.reservations.get_mut(reservation_id)?;
        reservation.status = ReservationStatus::Released;
        Some(reservation.clone())
    }

    /// Records a captured payment.
    pub fn capture(&mut self, order_id: String, amount: f64, method: String) -> Payment {
        let payment = Payment {
            payment_id: format!("pay_{}", Ulid::new()),
            order_id,
            amount,
            method,
            status: PaymentStatus::Captured,
        };
        self.payments
            .insert(payment.payment_id.clone(), payment.clone());
        payment
    }

    /// Refunds a payment; a refunded payment stays refunded once (no second refund).
    /// `None` if unknown.
    pub fn refund(&mut self, payment_id: &str) -> Option<Payment> {
        let payment = self.payments.get_mut(payment_id)?;
        payment.status = PaymentStatus::Refunded;
        Some(payment.clone())
    }

    /// Records a new order, unless one with its id exists (cancelled ones included).
    pub fn create_order(
        &mut self,
        order_id: String,
        user_id: u64,
        items: Vec<Value>,
        total_amount: f64,
    ) -> Result<Order, OrderExists> {
        if self.orders.contains(&order_id) {
            return Err(OrderExists);
        }
        let order = Order {
            order_id: order_id.clone(),
            user_id,
            items,
            total_amount,
            status: OrderStatus::Created,
        };
        self.orders.insert(order_id, order.clone());
        Ok(order)
    }

    /// Records a notification.
    pub fn notify(
        &mut self,
        order_id: String,
        channel: String,
        event_id: String,
        topic: String,
    ) -> Notification {
        let notification = Notification {
            notification_id: format!("ntf_{}", Ulid::new()),
            order_id,
            channel,
            event_id,
            topic,
        };
        self.notifications.push(notification.clone());
        notification
    }

    /// Cancels an order (again, harmlessly, if it already is); `None` if unknown.
    pub fn cancel_order(&mut self, order_id: &str) -> Option<Order> {
        let order = self.orders.get_mut(order_id)?;
        order.status = OrderStatus::Cancelled;
        Some(order.clone())
    }

    /// The ledger split by status, limited to one order's records if `order_id` is given.
    pub fn view(&self, order_id: Option<&str>) -> LedgerView {
        let ours = |id: &str| order_id.is_none_or(|wanted| wanted == id);
        let mut view = LedgerView::default();
        for r in self
            .reservations
            .records
            .iter()
            .filter(|r| ours(&r.order_id))
        {
            match r.status {
                ReservationStatus::Active => view.reservations.active.push(r.clone()),
                ReservationStatus::Released => view.reservations.released.push(r.clone()),
            }
        }
        for p in self.payments.records.iter().filter(|p| ours(&p.order_id)) {
            match p.status {
                PaymentStatus::Captured => view.payments.captured.push(p.clone()),
                PaymentStatus::Refunded => view.payments.refunded.push(p.clone()),
            }
        }
        for o in self.orders.records.iter().filter(|o| ours(&o.order_id)) {
            match o.status {
                OrderStatus::Created => view.orders.active.push(o.clone()),
                OrderStatus::Cancelled => view.orders.cancelled.push(o.clone()),
            }
        }
        view.notifications = self
            .notifications
            .iter()
            .filter(|n| ours(&n.order_id))
            .cloned()
            .collect();
        view.counts = Counts {
            reservations_active: view.reservations.active.len(),
            reservations_released: view.reservations.released.len(),
            payments_captured: view.payments.captured.len(),
            payments_refunded: view.payments.refunded.len(),
            orders_active: view.orders.active.len(),
            orders_cancelled: view.orders.cancelled.len(),
            notifications: view.notifications.len(),
        };
        view
    }
}

/// The body of `GET /ledger` and `GET /ledger/orders/{order_id}`.
#[derive(Debug, Default, Serialize)]
pub struct LedgerView {
    /// Reservations by status.
    pub reservations: Reservations,
    /// Payments by status.
    pub payments: Payments,
    /// Orders by status.
    pub orders: Orders,
    /// Notifications sent, oldest first.
    pub notifications: Vec<Notification>,
    /// The length of each list above.
    pub counts: Counts,
    /// Requests received per route (`GET /ledger` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<BTreeMap<Route, u64>>,
}

/// Reservations by status.
#[derive(Debug, Default, Serialize)]
pub struct Reservations {
    /// Still holding stock.
    pub active: Vec<Reservation>,
    /// Given back.
    pub released: Vec<Reservation>,
}

/// Payments by status.
#[derive(Debug, Default, Serialize)]
pub struct Payments {
    /// Money taken and kept.
    pub captured: Vec<Payment>,
    /// Money given back.
    pub refunded: Vec<Payment>,
}

/// Orders by status.
#[derive(Debug, Default, Serialize)]
pub struct Orders {
    /// Created and not cancelled.
    pub active: Vec<Order>,
    /// Cancelled.
    pub cancelled: Vec<Order>,
}

/// How many records each list holds.
#[derive(Debug, Default, Serialize)]
pub struct Counts {
    /// `reservations.active`.
    pub reservations_active: usize,
    /// `reservations.released`.
    pub reservations_released: usize,
    /// `payments.captured`.
    pub payments_captured: usize,
    /// `payments.refunded`.
    pub payments_refunded: usize,
    /// `orders.active`.
    pub orders_active: usize,
    /// `orders.cancelled`.
    pub orders_cancelled: usize,
    /// `notifications`.
    pub notifications: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_filters_by_order_and_splits_by_status() {
        let mut ledger = Ledger::default();
        let kept = ledger.capture("o-1".into(), 10.0, "card".into());
        let refunded = ledger.capture("o-1".into(), 20.0, "card".into());
        ledger.capture("o-2".into(), 30.0, "card".into());
        ledger.refund(&refunded.payment_id).unwrap();
        ledger.refund(&refunded.payment_id).unwrap();

        let view = ledger.view(Some("o-1"));
        assert_eq!(view.payments.captured.len(), 1);
        assert_eq!(view.payments.captured[0].payment_id, kept.payment_id);
        assert_eq!(view.payments.refunded.len(), 1);
        assert_eq!(view.counts.payments_refunded, 1);
        assert_eq!(ledger.view(None).counts.payments_captured, 2);
        assert!(ledger.refund("pay_unknown").is_none());
    }

    #[test]
    fn an_order_id_is_used_once() {
        let mut ledger = Ledger::default();
        ledger.create_order("o-1".into(), 1, vec![], 5.0).unwrap();
        ledger.cancel_order("o-1").unwrap();
        assert!(ledger.create_order("o-1".into(), 1, vec![], 5.0).is_err());
    }
}
