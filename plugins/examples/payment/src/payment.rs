// The payment step's code, shared with the test plugin `payment-surcharge` (which charges
// differently, for the canary gate's tests). The crate that includes it defines
// `fn charged(total: f64) -> f64` and exports the step.

use flowhost_sdk::prelude::*;
use flowhost_sdk::services::{Method, encode_segment};
use serde::{Deserialize, Serialize};

/// The body of `POST /payments`.
#[derive(Serialize)]
struct PaymentRequest<'a> {
    order_id: &'a str,
    amount: f64,
    method: &'a str,
}

/// The answer of `POST /payments`.
#[derive(Deserialize)]
struct Payment {
    payment_id: String,
}

/// The plugin.
struct ProcessPayment;

impl Step for ProcessPayment {
    fn execute(info: StepInfo, ctx: Ctx) -> StepResult {
        match info.step.as_str() {
            "process_payment" => pay(&ctx),
            other => Err(StepError::unknown_step(other)),
        }
    }

    fn compensate(info: StepInfo, ctx: Ctx) -> StepResult {
        match info.step.as_str() {
            "process_payment" => refund(&ctx),
            other => Err(StepError::unknown_step(other)),
        }
    }
}

/// Step `process_payment`: one payment, deduplicated by the step's idempotency key.
fn pay(ctx: &Ctx) -> StepResult {
    let order_id: String = ctx.get("order_id")?;
    let amount = charged(ctx.get("total_amount")?);
    let method: String = ctx.get("payment_method")?;
    let request = PaymentRequest {
        order_id: &order_id,
        amount,
        method: &method,
    };
    let payment: Payment = services::post("payments", "/payments", &request).map_err(|error| {
        match error.status() {
            Some(402) => StepError::fatal("payment declined"),
            _ => StepError::from(error),
        }
    })?;
    Ok(json!({ "payment_id": payment.payment_id }))
}

/// Compensation: refunds the payment, if `execute` recorded one.
fn refund(ctx: &Ctx) -> StepResult {
    let Some(payment_id) = ctx.get_opt::<String>("payment_id")? else {
        return Ok(json!({}));
    };
    let path = format!("/payments/{}/refund", encode_segment(&payment_id));
    services::request(Method::Post, "payments", &path).send()?;
    Ok(json!({}))
}

