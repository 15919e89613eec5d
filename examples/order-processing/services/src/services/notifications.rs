//! The notifications service: what event handlers tell customers. Each notification is
//! recorded in the ledger; a repeat with the same `Idempotency-Key` is answered from memory
//! (the gate), so the ledger shows each effect once however often a handler ran.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use crate::error::{ApiError, JsonBody};
use crate::ledger::Notification;
use crate::state::Shared;

/// The body of `POST /notifications`.
#[derive(Debug, Deserialize)]
pub struct NotificationRequest {
    /// The order it is about.
    pub order_id: String,
    /// The channel, e.g. `email`.
    pub channel: String,
    /// The event that caused it.
    pub event_id: String,
    /// That event's topic.
    pub topic: String,
}

/// `POST /notifications`: 201 with the notification.
pub async fn send(
    State(shared): State<Shared>,
    JsonBody(request): JsonBody<NotificationRequest>,
) -> Result<(StatusCode, Json<Notification>), ApiError> {
    let notification = shared.lock().ledger.notify(
        request.order_id,
        request.channel,
        request.event_id,
        request.topic,
    );
    Ok((StatusCode::CREATED, Json(notification)))
}
