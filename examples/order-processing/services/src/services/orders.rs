//! The orders service: order creation and cancellation. An order id is used once.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{ApiError, JsonBody};
use crate::ledger::{Order, OrderExists};
use crate::state::Shared;

/// The body of `POST /orders`.
#[derive(Debug, Deserialize)]
pub struct OrderRequest {
    /// The caller's id for the order.
    pub order_id: String,
    /// Who places it.
    pub user_id: u64,
    /// The items, kept as sent.
    pub items: Vec<Value>,
    /// The total.
    pub total_amount: f64,
}

/// `POST /orders`: 201 with the order, status `created`; 409 if the order id exists (a
/// repeat that should be harmless must carry the first request's `Idempotency-Key`).
pub async fn create(
    State(shared): State<Shared>,
    JsonBody(request): JsonBody<OrderRequest>,
) -> Result<(StatusCode, Json<Order>), ApiError> {
    let order_id = request.order_id.clone();
    let created = shared.lock().ledger.create_order(
        request.order_id,
        request.user_id,
        request.items,
        request.total_amount,
    );
    match created {
        Ok(order) => Ok((StatusCode::CREATED, Json(order))),
        Err(OrderExists) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("order {order_id} already exists"),
        )),
    }
}

/// `POST /orders/{order_id}/cancel`: 200 with the order, now cancelled (again if it already
/// was); 404 if unknown.
pub async fn cancel(
    State(shared): State<Shared>,
    Path(order_id): Path<String>,
) -> Result<Json<Order>, ApiError> {
    let cancelled = shared.lock().ledger.cancel_order(&order_id);
    cancelled
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("order {order_id} not found")))
}
