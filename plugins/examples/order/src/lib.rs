//! `order`: the order saga's step `create_order`. Creates the order with the `orders`
//! service and adds `{"order_status"}` to the context; compensation cancels it.

use flowhost_sdk::prelude::*;
use flowhost_sdk::services::{Method, encode_segment};
use serde::{Deserialize, Serialize};

/// The body of `POST /orders`.
#[derive(Serialize)]
struct OrderRequest<'a> {
    order_id: &'a str,
    user_id: u64,
    /// The context's items as they are: the orders service owns their schema.
    items: Value,
    total_amount: f64,
}

/// The answer of `POST /orders`.
#[derive(Deserialize)]
struct Order {
    status: String,
}

/// The plugin.
struct CreateOrder;

impl Step for CreateOrder {
    fn execute(info: StepInfo, ctx: Ctx) -> StepResult {
        match info.step.as_str() {
            "create_order" => create(&ctx),
            other => Err(StepError::unknown_step(other)),
        }
    }

    fn compensate(info: StepInfo, ctx: Ctx) -> StepResult {
        match info.step.as_str() {
            "create_order" => cancel(&ctx),
            other => Err(StepError::unknown_step(other)),
        }
    }
}

/// Step `create_order`.
fn create(ctx: &Ctx) -> StepResult {
    let order_id: String = ctx.get("order_id")?;
    let request = OrderRequest {
        order_id: &order_id,
        user_id: ctx.get("user_id")?,
        items: ctx.get("items")?,
        total_amount: ctx.get("total_amount")?,
    };
    let order: Order = services::post("orders", "/orders", &request)?;
    Ok(json!({ "order_status": order.status }))
}

/// Compensation: cancels the order.
fn cancel(ctx: &Ctx) -> StepResult {
    let order_id: String = ctx.get("order_id")?;
    let path = format!("/orders/{}/cancel", encode_segment(&order_id));
    services::request(Method::Post, "orders", &path).send()?;
    Ok(json!({}))
}

export_step!(CreateOrder);
