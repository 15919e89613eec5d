//! Events and what carries them: the outbox entry (with its gate), a queued delivery, a
//! dead letter.

use serde::{Deserialize, Serialize};

use super::RunId;

/// An event as the host keeps it: published by a plugin, posted to the API, or emitted by
/// the engine when a run ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedEvent {
    /// A ULID, unique per event.
    pub id: String,
    /// The validated topic.
    pub topic: String,
    /// `plugin/<name>`, `api` or `flowhost`.
    pub source: String,
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The run that caused it, if any.
    pub correlation_id: Option<String>,
    /// Ordering key, if the publisher gave one.
    pub key: Option<String>,
    /// The payload, validated JSON.
    pub data: String,
    /// The W3C `traceparent` of the span that published it: its deliveries join that
    /// trace. Carried by brokers in the CloudEvents `traceparent` extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl PublishedEvent {
    /// A new event with a fresh id, stamped `time_ms`.
    pub fn new(
        topic: &str,
        source: &str,
        data: String,
        correlation_id: Option<String>,
        time_ms: u64,
    ) -> Self {
        Self {
            id: ulid::Ulid::new().to_string(),
            topic: topic.to_owned(),
            source: source.to_owned(),
            time_ms,
            correlation_id,
            key: None,
            data,
            traceparent: None,
        }
    }
}

/// An event waiting in the outbox to be relayed to its subscriptions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The event.
    pub event: PublishedEvent,
    /// What must be durable before the event may go out; none for an event that is durable
    /// on its own (a handler's, one posted to the API). An entry whose gate never opens is
    /// an orphan, dropped at the next start.
    pub gate: Option<Gate>,
}

/// What an outbox entry waits for. Events are written before what caused them, so that a
/// crash can leave an event without its cause (an orphan, dropped) but never the other way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Gate {
    /// A saga step's events: the journal entry of the step's successful attempt. A step
    /// whose result was lost in a crash has its events dropped with it (the step runs again
    /// and publishes anew).
    Journal {
        /// The run.
        run_id: RunId,
        /// The entry's sequence number in the run's journal.
        seq: u32,
        /// The lease epoch of the run's owner that staged the events
        /// ([`Run::epoch`](super::Run::epoch)): only an entry written under it opens
        /// the gate, and only that owner may stage them.
        #[serde(default, skip_serializing_if = "is_zero")]
        epoch: u64,
    },
    /// A lifecycle event (`flowhost.run.<status>`): the run's record at this revision or
    /// later, which holds the status the event announces. A crash before the record is
    /// written drops the event, and the run, resumed, ends and announces once.
    Record {
        /// The run.
        run_id: RunId,
        /// The record's revision that holds the end.
        revision: u32,
        /// The lease epoch of the run's owner that staged the event: only that owner may.
        #[serde(default, skip_serializing_if = "is_zero")]
        epoch: u64,
    },
}

impl Gate {
    /// The run the gate waits on, and the lease epoch its events were staged under.
    pub fn run(&self) -> (&RunId, u64) {
        match self {
            Gate::Journal { run_id, epoch, .. } | Gate::Record { run_id, epoch, .. } => {
                (run_id, *epoch)
            }
        }
    }
}

fn is_zero(epoch: &u64) -> bool {
    *epoch == 0
}

/// An event queued for one subscription (the embedded transport).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The subscription's name.
    pub subscription: String,
    /// The event.
    pub event: PublishedEvent,
    /// Attempts so far.
    pub attempts: u32,
    /// When the next attempt is due, ms since the Unix epoch.
    pub due_ms: u64,
    /// The last attempt's error.
    pub error: Option<String>,
}

/// A delivery given up on after its subscription's attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// A ULID, unique per dead letter: its time is when it was given up on.
    pub id: String,
    /// The subscription that gave up.
    pub subscription: String,
    /// The event.
    pub event: PublishedEvent,
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's error.
    pub error: String,
    /// When it was given up on, ms since the Unix epoch.
    pub dead_ms: u64,
}
