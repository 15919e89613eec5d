//! `forward`: a test event handler that publishes every event it receives again, on
//! `forwarded.<topic>`, with the original event's id and data. The host's tests use it to
//! see that what a handler publishes is durable before its delivery is acknowledged: each
//! delivery of one event publishes one forwarded event, so the forwarded events count the
//! deliveries.

use flowhost_sdk::prelude::*;

/// The plugin.
struct Forward;

impl Handler for Forward {
    fn handle(event: Event) -> Result<(), String> {
        let data: Value = event.data()?;
        let forwarded = json!({ "original": event.id, "data": data });
        events::publish(&format!("forwarded.{}", event.topic), &forwarded, None)?;
        Ok(())
    }
}

export_handler!(Forward);
