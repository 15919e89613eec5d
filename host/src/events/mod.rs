//! Events between plugins, runs and the outside: a durable outbox and at-least-once
//! delivery to subscriptions.
//!
//! - [`Outbox`]: where every event goes first, in the run store's database: those a saga
//!   step published (gated on the step's journal entry, see
//!   [`crate::store::events::OutboxEntry::gate`]), a handler's, the engine's lifecycle
//!   events and `POST /v1/events`. It is the plugins' [`EventSink`](crate::capabilities::events::EventSink).
//! - [`Dispatcher`]: relays what a flush has made durable from the outbox to the queue of
//!   every matching subscription, and drives each queue: a handler plugin, or a workflow a
//!   trigger starts (the run id derived from the event id, so a redelivery never starts a
//!   second run). A failed delivery is retried with the subscription's backoff, and after its
//!   attempts it becomes a dead letter, which the API lists and redelivers.
//!
//! Between the relay and the workers, events travel on a [`transport`]: queues in the
//! run store (the default, one process), NATS JetStream, RabbitMQ or Redis Streams (several
//! hosts).
//!
//! Topics are dot-separated; subscriptions match them with RabbitMQ's wildcards (`*` one
//! segment, `#` zero or more). Outside the host, events are CloudEvents 1.0 JSON
//! ([`cloud_event`]).

mod dispatcher;
mod outbox;
pub mod transport;

use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use self::dispatcher::{Dispatcher, check_subscriptions};
pub use self::outbox::Outbox;
use crate::saga::RetryPolicy;
use crate::store::events::PublishedEvent;
use crate::store::rfc3339;

/// `[subscriptions.<name>]`: events on matching topics go to a handler plugin.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SubscriptionConfig {
    /// The topic pattern, e.g. `order.*` or `order.#`.
    pub topic: String,
    /// The `handler-plugin` that receives the events.
    pub handler: String,
    /// Attempts per event before it becomes a dead letter, and the backoff between them.
    #[serde(default = "delivery_retry")]
    pub retry: RetryPolicy,
    /// Deliveries of this subscription in flight at once. Default 16.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

/// The retry policy of subscriptions and triggers unless they say otherwise: 5 attempts,
/// 100 ms doubling up to 30 s.
pub fn delivery_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 5,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(30),
    }
}

/// Deliveries of a subscription or trigger in flight at once unless it says otherwise.
pub(crate) fn default_concurrency() -> usize {
    16
}

/// `event` as CloudEvents 1.0 JSON, with the run id in the `correlationid` extension and
/// the publisher's key in `partitionkey`.
pub fn cloud_event(event: &PublishedEvent) -> Value {
    let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
    let mut value = json!({
        "specversion": "1.0",
        "id": event.id,
        "source": event.source,
        "type": event.topic,
        "time": rfc3339(event.time_ms),
        "datacontenttype": "application/json",
        "data": data,
    });
    if let Some(correlation_id) = &event.correlation_id {
        value["correlationid"] = json!(correlation_id);
    }
    if let Some(key) = &event.key {
        value["partitionkey"] = json!(key);
    }
    value
}

/// Reads a CloudEvents 1.0 JSON event with JSON data, as [`cloud_event`] writes them: what
/// the brokers carry.
pub fn from_cloud_event(bytes: &[u8]) -> Result<PublishedEvent, String> {
    #[derive(Deserialize)]
    struct Envelope {
        specversion: String,
        id: String,
        source: String,
        #[serde(rename = "type")]
        topic: String,
        time: Option<String>,
        #[serde(default)]
        data: Value,
        correlationid: Option<String>,
        partitionkey: Option<String>,
    }
    let envelope: Envelope =
        serde_json::from_slice(bytes).map_err(|e| format!("not a CloudEvent: {e}"))?;
    if envelope.specversion != "1.0" {
        return Err(format!(
            "CloudEvents {} (this host reads 1.0)",
            envelope.specversion
        ));
    }
    let time_ms = match &envelope.time {
        Some(time) => humantime::parse_rfc3339(time)
            .map_err(|e| format!("time `{time}`: {e}"))?
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        None => 0,
    };
    Ok(PublishedEvent {
        id: envelope.id,
        topic: envelope.topic,
        source: envelope.source,
        time_ms,
        correlation_id: envelope.correlationid,
        key: envelope.partitionkey,
        data: envelope.data.to_string(),
    })
}

/// A new event from the host itself or from the API.
pub fn new_event(
    topic: &str,
    source: &str,
    data: String,
    correlation_id: Option<String>,
) -> PublishedEvent {
    PublishedEvent {
        id: ulid::Ulid::new().to_string(),
        topic: topic.to_owned(),
        source: source.to_owned(),
        time_ms: crate::store::now_ms(),
        correlation_id,
        key: None,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cloud_event_reads_back_as_it_was_written() {
        let event = PublishedEvent {
            id: "01J00000000000000000000000".into(),
            topic: "order.confirmed".into(),
            source: "plugin/send_confirmation".into(),
            time_ms: 1_764_000_000_123,
            correlation_id: Some("run-1".into()),
            key: Some("o-1".into()),
            data: r#"{"order_id":"o-1","total":12.5}"#.into(),
        };
        let written = serde_json::to_vec(&cloud_event(&event)).unwrap();
        assert_eq!(from_cloud_event(&written).unwrap(), event);
        let other = br#"{"specversion":"0.3","id":"x","source":"s","type":"t"}"#;
        assert!(from_cloud_event(other).unwrap_err().contains("0.3"));
        assert!(from_cloud_event(b"{}").is_err());
    }
}
