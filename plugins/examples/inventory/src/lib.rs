//! `inventory`: the order saga's step `reserve_inventory`. Reserves every item of the run
//! with the `inventory` service and adds `{"reservations": [ids]}` to the context;
//! compensation releases them.
//!
//! Each reservation is its own call, told apart by an `idempotency-key` header (the product
//! id), so a retried step gets the same reservations back instead of new ones.

use flowhost_sdk::prelude::*;
use flowhost_sdk::services::{Method, encode_segment};
use serde::{Deserialize, Serialize};

/// One line of the context's `items`.
#[derive(Deserialize)]
struct Item {
    product_id: String,
    quantity: u32,
}

/// The body of `POST /reservations`.
#[derive(Serialize)]
struct ReservationRequest<'a> {
    order_id: &'a str,
    product_id: &'a str,
    quantity: u32,
}

/// The answer of `POST /reservations` (other fields ignored).
#[derive(Deserialize)]
struct Reservation {
    reservation_id: String,
}

/// The plugin.
struct Inventory;

impl Step for Inventory {
    fn execute(info: StepInfo, ctx: Ctx) -> StepResult {
        match info.step.as_str() {
            "reserve_inventory" => reserve(&ctx),
            other => Err(StepError::unknown_step(other)),
        }
    }

    fn compensate(info: StepInfo, ctx: Ctx) -> StepResult {
        match info.step.as_str() {
            "reserve_inventory" => {
                let reservations = ctx.get_opt::<Vec<String>>("reservations")?;
                release_all(&reservations.unwrap_or_default())?;
                Ok(json!({}))
            }
            other => Err(StepError::unknown_step(other)),
        }
    }
}

/// Step `reserve_inventory`.
fn reserve(ctx: &Ctx) -> StepResult {
    let order_id: String = ctx.get("order_id")?;
    let items: Vec<Item> = ctx.get("items")?;
    let mut reservations = Vec::with_capacity(items.len());
    for item in &items {
        let request = ReservationRequest {
            order_id: &order_id,
            product_id: &item.product_id,
            quantity: item.quantity,
        };
        let reserved = services::request(Method::Post, "inventory", "/reservations")
            .idempotency_key(item.product_id.as_str())
            .json(&request)
            .send_json::<Reservation>();
        let error = match reserved {
            Ok(reservation) => {
                reservations.push(reservation.reservation_id);
                continue;
            }
            Err(error) if error.status() == Some(409) => {
                StepError::fatal(format!("product {} is out of stock", item.product_id))
            }
            Err(error) => StepError::from(error),
        };
        // A retryable failure keeps what this attempt reserved: the retry sends the same
        // idempotency keys and gets the same reservations back, and releasing them now
        // would hand it reservations that are gone. A fatal failure ends the step without
        // a compensation (only completed steps are compensated), so release them here.
        if !error.is_retryable()
            && let Err(release) = release_all(&reservations)
        {
            if release.is_retryable() {
                // The retry repeats these reservations (same keys) and then this release.
                let message = format!("{}; {}", error.message(), release.message());
                return Err(StepError::retryable(message));
            }
            log::error!(
                "reservations {reservations:?} may be left over: {}",
                release.message()
            );
        }
        return Err(error);
    }
    Ok(json!({ "reservations": reservations }))
}

/// Releases `reservations`; one that is already gone (404) counts as released.
fn release_all(reservations: &[String]) -> Result<(), StepError> {
    for id in reservations {
        let path = format!("/reservations/{}", encode_segment(id));
        let released = services::request(Method::Delete, "inventory", &path)
            // Several releases in one call: keep their idempotency keys apart.
            .idempotency_key(format!("release-{id}"))
            .send();
        match released {
            Ok(_) => {}
            Err(error) if error.is_not_found() => {}
            Err(error) => {
                return Err(StepError::from(error).context(format!("releasing reservation {id}")));
            }
        }
    }
    Ok(())
}

export_step!(Inventory);
