//! Event persistence: the outbox, the embedded delivery queues and the dead letters, and the
//! [`EventStore`] trait over them; the sled backend keeps them in the same database as the
//! runs, so that one flush makes a step's result and its events durable together.

use serde::{Deserialize, Serialize};

use super::{BoxFuture, StoreError};
pub use crate::capabilities::events::PublishedEvent;

/// An event waiting in the outbox to be relayed to its subscriptions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The event.
    pub event: PublishedEvent,
    /// For a saga step's events: the journal entry of the step's successful attempt. The
    /// relay releases the event only once that entry exists, so that a step whose result
    /// was lost in a crash has its events dropped with it (the step runs again and
    /// publishes anew).
    pub gate: Option<Gate>,
}

/// A run's journal entry, by run and sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gate {
    /// The run.
    pub run_id: String,
    /// The entry's sequence number in the run's journal.
    pub seq: u32,
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
    /// A ULID, unique per dead letter.
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

/// Storage of the outbox, the embedded queues and the dead letters.
///
/// Writes are visible at once and durable after a [`flush`](Self::flush) that started
/// after them, as with [`super::RunStore`].
pub trait EventStore: Send + Sync {
    /// Adds events to the outbox; an id already there is left as it is.
    fn outbox_put(&self, entries: &[OutboxEntry]) -> Result<(), StoreError>;

    /// Up to `limit` outbox entries, oldest first.
    fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Removes a relayed event from the outbox.
    fn outbox_remove(&self, event_id: &str) -> Result<(), StoreError>;

    /// Whether the journal entry `gate` exists.
    fn gate_open(&self, gate: &Gate) -> Result<bool, StoreError>;

    /// Queues a delivery, due at its `due_ms`.
    fn enqueue(&self, delivery: &Delivery) -> Result<(), StoreError>;

    /// Up to `limit` deliveries of `subscription` due at `now_ms`, earliest first.
    fn due(
        &self,
        subscription: &str,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// When the earliest delivery of `subscription` is due, if it has any.
    fn next_due(&self, subscription: &str) -> Result<Option<u64>, StoreError>;

    /// Removes a delivery as it was queued.
    fn dequeue(&self, delivery: &Delivery) -> Result<(), StoreError>;

    /// Stores a dead letter.
    fn bury(&self, letter: &DeadLetter) -> Result<(), StoreError>;

    /// Dead letters, newest first, `limit` at most, after `cursor` (a previous page's
    /// last id).
    fn dead_letters(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Vec<DeadLetter>, StoreError>;

    /// The dead letter with this id.
    fn dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, StoreError>;

    /// Removes and returns a dead letter.
    fn exhume(&self, id: &str) -> Result<Option<DeadLetter>, StoreError>;

    /// Makes every write that happened before this call durable (shared with the runs).
    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>>;
}
