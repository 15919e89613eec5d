//! `flowhost:plugin/events`: publishing events.
//!
//! `publish` validates the topic and the JSON, checks the plugin's publish grant and holds
//! the event in the call's [`EventsCtx`]. The runtime hands what a call published to its
//! caller only when the call succeeds, and drops it otherwise: that is the transactional
//! outbox. The saga engine writes a step's events to the outbox with the step's journal
//! entry, the dispatcher a handler's before it acknowledges the delivery; a bare call
//! ([`crate::runtime::Runtime::execute`]) hands them to an [`EventSink`].

mod host;
mod topic;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

pub use self::topic::{InvalidTopic, TopicPattern, validate_topic};
pub use crate::bindings::events::PublishError;
use crate::model::{PublishedEvent, now_ms};
use crate::telemetry::trace::{Kind, Span};

/// What a plugin call may publish: the `[events]` limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishLimits {
    /// Largest event payload, in bytes.
    pub max_event_bytes: usize,
    /// Most events one plugin call may publish.
    pub max_events_per_call: usize,
}

impl Default for PublishLimits {
    fn default() -> Self {
        Self {
            max_event_bytes: 256 * 1024,
            max_events_per_call: 100,
        }
    }
}

/// Why a sink did not take events.
#[derive(Debug, thiserror::Error)]
#[error("event sink unavailable: {0}")]
pub struct SinkError(pub Box<dyn std::error::Error + Send + Sync>);

/// Where the events of a successful call go.
///
/// Called once per successful plugin call that published anything, after the call
/// returned, with the events in publication order. May await I/O; an error is reported to
/// the caller of the plugin call, which decides whether to retry.
pub trait EventSink: Send + Sync {
    /// Accepts `events`.
    fn accept(
        &self,
        events: Vec<PublishedEvent>,
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + '_>>;
}

/// A sink that keeps events in memory: for tests, and for the CLI's checks, which
/// deliver nothing.
#[derive(Default)]
pub struct MemorySink {
    /// A std `Mutex`: held only to push or copy, never across an `.await`.
    events: Mutex<Vec<PublishedEvent>>,
}

impl MemorySink {
    /// Everything accepted so far, oldest first.
    pub fn events(&self) -> Vec<PublishedEvent> {
        self.events.lock().expect("sink lock poisoned").clone()
    }
}

impl EventSink for MemorySink {
    fn accept(
        &self,
        events: Vec<PublishedEvent>,
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + '_>> {
        self.events
            .lock()
            .expect("sink lock poisoned")
            .extend(events);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Per-call state of the events capability.
pub struct EventsCtx {
    /// `plugin/<name>`.
    source: Arc<str>,
    /// Topic patterns this plugin may publish on.
    grants: Arc<[TopicPattern]>,
    correlation_id: Option<Arc<str>>,
    limits: PublishLimits,
    /// What this call published, released by the runtime if the call succeeds.
    pending: Vec<PublishedEvent>,
    /// The trace of the call: each event's publication is a span of it.
    traceparent: Option<String>,
    /// A replay's event ids, given out in order (then fresh ones).
    replay_ids: std::collections::VecDeque<String>,
}

impl EventsCtx {
    /// State for one call of `plugin`, on behalf of run `correlation_id` if any, in the
    /// trace `traceparent` names.
    pub fn new(
        plugin: &str,
        grants: Arc<[TopicPattern]>,
        correlation_id: Option<Arc<str>>,
        limits: PublishLimits,
        traceparent: Option<String>,
    ) -> Self {
        Self {
            source: format!("plugin/{plugin}").into(),
            grants,
            correlation_id,
            limits,
            pending: Vec::new(),
            traceparent,
            replay_ids: std::collections::VecDeque::new(),
        }
    }

    /// Gives the events published the ids `ids`, in order: a replay's.
    pub fn replaying(mut self, ids: impl IntoIterator<Item = String>) -> Self {
        self.replay_ids = ids.into_iter().collect();
        self
    }

    /// What the guest's `publish` does: validate, check the grant, hold the event.
    pub fn publish(
        &mut self,
        topic: String,
        data: String,
        key: Option<String>,
    ) -> Result<String, PublishError> {
        validate_topic(&topic).map_err(|e| PublishError::InvalidTopic(e.to_string()))?;
        if !self.grants.iter().any(|pattern| pattern.matches(&topic)) {
            return Err(PublishError::Denied(format!(
                "this plugin is not granted the topic `{topic}`"
            )));
        }
        if data.len() > self.limits.max_event_bytes {
            return Err(PublishError::InvalidData(format!(
                "payload of {} bytes exceeds the limit of {} bytes",
                data.len(),
                self.limits.max_event_bytes
            )));
        }
        serde_json::from_str::<serde::de::IgnoredAny>(&data)
            .map_err(|e| PublishError::InvalidData(format!("payload is not JSON: {e}")))?;
        if self.pending.len() >= self.limits.max_events_per_call {
            return Err(PublishError::Unavailable(format!(
                "a call may publish at most {} events",
                self.limits.max_events_per_call
            )));
        }
        let mut event = PublishedEvent::new(
            &topic,
            &self.source,
            data,
            self.correlation_id.as_deref().map(str::to_owned),
            now_ms(),
        );
        event.key = key;
        if let Some(id) = self.replay_ids.pop_front() {
            event.id = id;
        }
        // A span of its own, which the event's deliveries are children of, wherever they
        // happen.
        let mut span = Span::start(
            || format!("publish {topic}"),
            Kind::Producer,
            self.traceparent.as_deref(),
        );
        if span.is_recording() {
            span.set("event_id", event.id.clone());
        }
        event.traceparent = span.traceparent();
        let id = event.id.clone();
        self.pending.push(event);
        Ok(id)
    }

    /// Takes the events this call published.
    pub fn take_pending(&mut self) -> Vec<PublishedEvent> {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(grants: &[&str]) -> EventsCtx {
        let grants: Vec<_> = grants
            .iter()
            .map(|g| TopicPattern::parse(g).unwrap())
            .collect();
        EventsCtx::new(
            "p",
            grants.into(),
            Some("run-1".into()),
            PublishLimits::default(),
            None,
        )
    }

    #[test]
    fn publishes_within_the_grant() {
        let mut events = ctx(&["order.*"]);
        let id = events
            .publish(
                "order.confirmed".into(),
                r#"{"a":1}"#.into(),
                Some("k".into()),
            )
            .unwrap();
        let pending = events.take_pending();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].id, id);
        assert_eq!(pending[0].source, "plugin/p");
        assert_eq!(pending[0].correlation_id.as_deref(), Some("run-1"));
        assert!(events.take_pending().is_empty());
    }

    #[test]
    fn refuses_what_it_must() {
        let mut events = ctx(&["order.*"]);
        assert!(matches!(
            events.publish("user.created".into(), "{}".into(), None),
            Err(PublishError::Denied(_))
        ));
        assert!(matches!(
            events.publish("order..x".into(), "{}".into(), None),
            Err(PublishError::InvalidTopic(_))
        ));
        assert!(matches!(
            events.publish("order.x".into(), "{nope".into(), None),
            Err(PublishError::InvalidData(_))
        ));
        let big = format!("\"{}\"", "x".repeat(300 * 1024));
        assert!(matches!(
            events.publish("order.x".into(), big, None),
            Err(PublishError::InvalidData(_))
        ));
        assert!(events.take_pending().is_empty());
        let mut none = ctx(&[]);
        assert!(matches!(
            none.publish("order.x".into(), "{}".into(), None),
            Err(PublishError::Denied(_))
        ));
    }

    #[test]
    fn caps_events_per_call() {
        let mut events = ctx(&["#"]);
        for _ in 0..100 {
            events.publish("a".into(), "1".into(), None).unwrap();
        }
        assert!(matches!(
            events.publish("a".into(), "1".into(), None),
            Err(PublishError::Unavailable(_))
        ));
    }
}
