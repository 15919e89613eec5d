//! The payments service: captures and refunds. Any amount above 1000 is declined. When
//! settlements are on (`POST /admin/settlements`, or `--settle-to`), each capture is
//! announced as settled to a webhook a little later, as a payment provider does.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::error::{ApiError, JsonBody};
use crate::ledger::Payment;
use crate::state::{Settlement, Shared};

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
    let (payment, settlement) = {
        let mut state = shared.lock();
        let payment = state
            .ledger
            .capture(request.order_id, request.amount, request.method);
        (payment, state.settlement.clone())
    };
    if let Some(settlement) = settlement {
        tokio::spawn(settle(settlement, payment.clone()));
    }
    Ok((StatusCode::CREATED, Json(payment)))
}

/// Announces `payment` as settled to the webhook, trying a few times if it does not answer
/// 2xx.
async fn settle(settlement: Settlement, payment: Payment) {
    tokio::time::sleep(Duration::from_millis(settlement.after_ms)).await;
    let body = json!({
        "order_id": payment.order_id,
        "payment_id": payment.payment_id,
        "amount": payment.amount,
        "status": "settled",
    });
    let client = reqwest::Client::new();
    for attempt in 1..=5u64 {
        match client.post(&settlement.webhook).json(&body).send().await {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => {
                tracing::warn!(status = %response.status(), attempt, "settlement webhook refused")
            }
            Err(error) => tracing::warn!(%error, attempt, "settlement webhook unreachable"),
        }
        tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
    }
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
