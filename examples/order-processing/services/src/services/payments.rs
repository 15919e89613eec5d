//! The payments service: captures and refunds. Any amount above 1000 is declined.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use crate::error::{ApiError, JsonBody};
use crate::ledger::Payment;
use crate::state::Shared;

/// The largest amount the service accepts.
pub const LIMIT: f64 = 1000.0;

/// The body of `POST /payments`.
#[derive(Debug, Deserialize)]
pub struct PaymentRequest {
    /// The order paid for.
    pub order_id: String,
    /// How much; positive.
    pub amount: f64,
    /// The payment method, recorded as given.
    pub method: String,
}

/// `POST /payments`: 201 with a captured payment; 402 above [`LIMIT`].
pub async fn capture(
    State(shared): State<Shared>,
    JsonBody(request): JsonBody<PaymentRequest>,
) -> Result<(StatusCode, Json<Payment>), ApiError> {
    if !(request.amount.is_finite() && request.amount > 0.0) {
        return Err(ApiError::invalid("amount must be a positive number"));
    }
    if request.amount > LIMIT {
        return Err(ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            "payment declined",
        ));
    }
    let payment = shared
        .lock()
        .ledger
        .capture(request.order_id, request.amount, request.method);
    Ok((StatusCode::CREATED, Json(payment)))
}

/// `POST /payments/{payment_id}/refund`: 200 with the payment, now refunded; refunding a
/// refunded payment answers the same and refunds nothing more; 404 if unknown.
pub async fn refund(
    State(shared): State<Shared>,
    Path(payment_id): Path<String>,
) -> Result<Json<Payment>, ApiError> {
    let refunded = shared.lock().ledger.refund(&payment_id);
    refunded
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("payment {payment_id} not found")))
}
