//! The inventory service: reservations of stock, which a saga's compensation releases.
//! Every product is in stock but `out-of-stock`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use crate::error::{ApiError, JsonBody};
use crate::ledger::Reservation;
use crate::state::Shared;

/// The one product that can never be reserved.
pub const OUT_OF_STOCK: &str = "out-of-stock";

/// The body of `POST /reservations`.
#[derive(Debug, Deserialize)]
pub struct ReservationRequest {
    /// The order the stock is for.
    pub order_id: String,
    /// The product to reserve.
    pub product_id: String,
    /// How many; at least 1.
    pub quantity: u32,
}

/// `POST /reservations`: 201 with an active reservation; 409 for `out-of-stock`.
pub async fn reserve(
    State(shared): State<Shared>,
    JsonBody(request): JsonBody<ReservationRequest>,
) -> Result<(StatusCode, Json<Reservation>), ApiError> {
    if request.product_id == OUT_OF_STOCK {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("product {} is out of stock", request.product_id),
        ));
    }
    if request.quantity == 0 {
        return Err(ApiError::invalid("quantity must be at least 1"));
    }
    let reservation =
        shared
            .lock()
            .ledger
            .reserve(request.order_id, request.product_id, request.quantity);
    Ok((StatusCode::CREATED, Json(reservation)))
}

/// `DELETE /reservations/{reservation_id}`: 200 with the reservation, now released
/// (again if it already was); 404 if unknown.
pub async fn release(
    State(shared): State<Shared>,
    Path(reservation_id): Path<String>,
) -> Result<Json<Reservation>, ApiError> {
    let released = shared.lock().ledger.release(&reservation_id);
    released
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("reservation {reservation_id} not found")))
}
