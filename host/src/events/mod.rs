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
//!
//! Nothing is acknowledged to a broker before what it caused is durable: a handler's events
//! and a dead letter are flushed before the `ack` or `term` that ends the delivery.
//! Workflows started by a trigger go through a [`Trigger`], which the saga engine
//! implements, so that this module does not depend on the engine.

mod config;
mod dispatcher;
mod outbox;
pub mod transport;

use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub use self::config::EventsConfig;
pub use self::dispatcher::{
    Dispatcher, SubscriptionError, SubscriptionInfo, SubscriptionTarget, check_subscriptions,
};
pub use self::outbox::Outbox;
use crate::model::{PublishedEvent, RetryPolicy, RunId, rfc3339};
use crate::store::BoxFuture;

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
        jitter: 0.5,
    }
}

/// What runs make of events: the saga engine, which starts a workflow's run for an event
/// and resumes runs that await one.
pub trait Trigger: Send + Sync {
    /// Starts a run of `workflow` with `input` and the id `id`, durably, unless a run with
    /// that id exists (a redelivery), in the trace `traceparent` names. Waits for room when
    /// the engine is full, so that the event waits in its queue, not in memory.
    fn start<'a>(
        &'a self,
        workflow: &'a str,
        input: Map<String, Value>,
        id: RunId,
        traceparent: Option<String>,
    ) -> BoxFuture<'a, Result<(), Box<dyn std::error::Error + Send + Sync>>>;

    /// Whether a run awaits events on `topic` (or keeps them for a step ahead), here or
    /// on another node: the relay asks before it queues an event for [`Self::resume`].
    /// Called for each topic of each batch relayed; in memory where one node holds every
    /// run.
    fn awaits<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, bool>;

    /// Hands `event` to the runs that await it, durably: on `Ok` it is in the inbox of each
    /// run it resumes (or that keeps it), and the delivery may be acknowledged.
    fn resume<'a>(
        &'a self,
        event: &'a PublishedEvent,
    ) -> BoxFuture<'a, Result<(), Box<dyn std::error::Error + Send + Sync>>>;
}

/// A message that is not a CloudEvent this host reads.
#[derive(Debug, thiserror::Error)]
pub enum InvalidCloudEvent {
    /// Not JSON, or not the envelope's shape.
    #[error("not a CloudEvent: {0}")]
    Malformed(#[from] serde_json::Error),
    /// Another version of the spec.
    #[error("CloudEvents {0} (this host reads 1.0)")]
    Version(String),
    /// The `time` attribute is not RFC 3339.
    #[error("time `{time}`: {cause}")]
    Time {
        /// The attribute.
        time: String,
        /// The parser's error.
        cause: humantime::TimestampError,
    },
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
    if let Some(traceparent) = &event.traceparent {
        value["traceparent"] = json!(traceparent);
    }
    value
}

/// Reads a CloudEvents 1.0 JSON event with JSON data, as [`cloud_event`] writes them: what
/// the brokers carry.
pub fn from_cloud_event(bytes: &[u8]) -> Result<PublishedEvent, InvalidCloudEvent> {
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
        /// A value that is not a string is another tracer's business: ignored.
        #[serde(default)]
        traceparent: Value,
    }
    let envelope: Envelope = serde_json::from_slice(bytes)?;
    if envelope.specversion != "1.0" {
        return Err(InvalidCloudEvent::Version(envelope.specversion));
    }
    let time_ms = match &envelope.time {
        Some(time) => humantime::parse_rfc3339(time)
            .map_err(|cause| InvalidCloudEvent::Time {
                time: time.clone(),
                cause,
            })?
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
        traceparent: envelope.traceparent.as_str().map(str::to_owned),
    })
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
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        };
        let written = serde_json::to_vec(&cloud_event(&event)).unwrap();
        assert_eq!(from_cloud_event(&written).unwrap(), event);
        let other = br#"{"specversion":"0.3","id":"x","source":"s","type":"t"}"#;
        assert!(
            from_cloud_event(other)
                .unwrap_err()
                .to_string()
                .contains("0.3")
        );
        assert!(from_cloud_event(b"{}").is_err());
    }

    #[test]
    fn a_traceparent_that_is_not_a_string_is_ignored_not_refused() {
        let event =
            br#"{"specversion":"1.0","id":"x","source":"s","type":"t","traceparent":{"v":1}}"#;
        let read = from_cloud_event(event).unwrap();
        assert_eq!((read.topic.as_str(), read.traceparent), ("t", None));
    }
}
