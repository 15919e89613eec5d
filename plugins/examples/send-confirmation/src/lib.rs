//! `send-confirmation`: the order saga's last step, `send_confirmation`. Publishes
//! `order.confirmed` (keyed by the order id) and adds `{"confirmation_event"}` to the
//! context. The host holds the event until the step's result is durable, so a retried step
//! does not publish twice. Nothing to compensate.

use flowhost_sdk::prelude::*;
use serde::Serialize;

/// The topic this plugin publishes on.
const TOPIC: &str = "order.confirmed";

/// The data of an `order.confirmed` event.
#[derive(Serialize)]
struct OrderConfirmed<'a> {
    order_id: &'a str,
    user_id: u64,
    total_amount: f64,
}

/// The plugin.
struct SendConfirmation;

impl Step for SendConfirmation {
    fn execute(info: StepInfo, ctx: Ctx) -> StepResult {
        match info.step.as_str() {
            "send_confirmation" => confirm(&ctx),
            other => Err(StepError::unknown_step(other)),
        }
    }
}

/// Step `send_confirmation`.
fn confirm(ctx: &Ctx) -> StepResult {
    let order_id: String = ctx.get("order_id")?;
    let event = OrderConfirmed {
        order_id: &order_id,
        user_id: ctx.get("user_id")?,
        total_amount: ctx.get("total_amount")?,
    };
    let event_id = events::publish(TOPIC, &event, Some(&order_id))?;
    Ok(json!({ "confirmation_event": event_id }))
}

export_step!(SendConfirmation);
