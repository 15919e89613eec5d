//! Publishing events for handlers and event-triggered workflows.
//!
//! From a saga step, an event is held until the step's result is durable and dropped if the
//! attempt fails, so a retried step does not publish twice.

use serde::Serialize;

use crate::bindings::flowhost::plugin::events as raw;

pub use raw::PublishError;

/// Publishes `data` as JSON on `topic` (dot-separated segments of `[A-Za-z0-9_-]`, e.g.
/// `order.confirmed`) and returns the new event's id. Events with the same `key` are
/// delivered in order. A `data` that does not serialize is a
/// [`PublishError::InvalidData`].
pub fn publish<T: Serialize + ?Sized>(
    topic: &str,
    data: &T,
    key: Option<&str>,
) -> Result<String, PublishError> {
    let json = serde_json::to_string(data)
        .map_err(|error| PublishError::InvalidData(format!("data does not serialize: {error}")))?;
    publish_json(topic, &json, key)
}

/// Publishes `json`, already JSON text, as it is.
pub fn publish_json(topic: &str, json: &str, key: Option<&str>) -> Result<String, PublishError> {
    raw::publish(topic, json, key)
}

/// A readable message for `error` (the generated `Display` is its `Debug` form).
pub fn describe(error: &PublishError) -> String {
    match error {
        PublishError::Denied(message) => format!("event publishing denied: {message}"),
        PublishError::InvalidTopic(message) => format!("invalid event topic: {message}"),
        PublishError::InvalidData(message) => format!("invalid event data: {message}"),
        PublishError::Unavailable(message) => format!("event publishing unavailable: {message}"),
    }
}

/// Lets `?` pass a publishing error up from an event handler.
impl From<PublishError> for String {
    fn from(error: PublishError) -> Self {
        describe(&error)
    }
}
