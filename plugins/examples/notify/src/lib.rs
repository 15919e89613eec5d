//! `notify`: an event handler that tells the customer about an order event. For every
//! event it receives (`order.confirmed` in the example) it sends `POST /notifications` to the
//! `notifications` service with the order id from the event's data, the event's id and topic,
//! and the channel from its config (`channel`, default `email`).
//!
//! The host sends `Idempotency-Key: <subscription>/<event id>` with the call, so a
//! redelivered event is answered from the service's memory instead of notifying twice. A service error fails
//! the delivery, which the host retries and, after the subscription's attempts, dead-letters.

use flowhost_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// What the handler needs from the event's data.
#[derive(Deserialize)]
struct OrderEvent {
    order_id: String,
}

/// The body of `POST /notifications`.
#[derive(Serialize)]
struct Notification<'a> {
    order_id: &'a str,
    channel: &'a str,
    event_id: &'a str,
    topic: &'a str,
}

/// The plugin.
struct Notify;

impl Handler for Notify {
    fn handle(event: Event) -> Result<(), String> {
        let data: OrderEvent = event
            .data()
            .map_err(|e| format!("event {} has no order id: {e}", event.id))?;
        let channel = config::get("channel").unwrap_or_else(|| "email".to_owned());
        let notification = Notification {
            order_id: &data.order_id,
            channel: &channel,
            event_id: &event.id,
            topic: &event.topic,
        };
        services::request(services::Method::Post, "notifications", "/notifications")
            .json(&notification)
            .send()
            .map_err(|e| e.to_string())?;
        log::info!("notified {} about order {}", channel, data.order_id);
        Ok(())
    }
}

export_handler!(Notify);
