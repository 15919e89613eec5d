//! `reconcile`: the nightly step `reconcile_ledger`. Reads the services' ledger (`GET /ledger`
//! from the `orders` service) and finds what a saga should never leave behind: reservations
//! still active and payments still captured for orders that are not active. It returns the
//! counts and the strays, `{"orders", "stray_reservations", "stray_payments"}`, and
//! publishes them on `ledger.reconciled`. Nothing to undo: it only reads.

use std::collections::BTreeSet;

use flowhost_sdk::prelude::*;
use serde::Deserialize;

/// The parts of `GET /ledger` the check reads.
#[derive(Deserialize)]
struct Ledger {
    reservations: ByStatus<Record>,
    payments: Payments,
    orders: ByStatus<Record>,
}

/// Records by status: only the live ones matter here.
#[derive(Deserialize)]
struct ByStatus<T> {
    active: Vec<T>,
}

/// Payments by status.
#[derive(Deserialize)]
struct Payments {
    captured: Vec<Record>,
}

/// Any record of an order.
#[derive(Deserialize)]
struct Record {
    order_id: String,
}

/// The plugin.
struct Reconcile;

impl Step for Reconcile {
    fn execute(info: StepInfo, _ctx: Ctx) -> StepResult {
        match info.step.as_str() {
            "reconcile_ledger" => reconcile(),
            other => Err(StepError::unknown_step(other)),
        }
    }
}

/// Step `reconcile_ledger`.
fn reconcile() -> StepResult {
    let ledger: Ledger = services::get("orders", "/ledger")?;
    let orders: BTreeSet<&str> = ledger
        .orders
        .active
        .iter()
        .map(|o| o.order_id.as_str())
        .collect();
    let strays = |records: &[Record]| -> BTreeSet<String> {
        records
            .iter()
            .filter(|r| !orders.contains(r.order_id.as_str()))
            .map(|r| r.order_id.clone())
            .collect()
    };
    let reservations = strays(&ledger.reservations.active);
    let payments = strays(&ledger.payments.captured);
    if !reservations.is_empty() || !payments.is_empty() {
        log::warn!(
            "strays: stock held for {} orders, money taken for {}",
            reservations.len(),
            payments.len()
        );
    }
    let summary = json!({
        "orders": orders.len(),
        "stray_reservations": reservations,
        "stray_payments": payments,
    });
    events::publish("ledger.reconciled", &summary, None)?;
    Ok(summary)
}

export_step!(Reconcile);
