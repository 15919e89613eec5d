//! Event persistence: the outbox, the embedded delivery queues and the dead letters
//! ([`EventStore`]). The sled backend keeps them in the same database as the runs, so that
//! one flush makes a step's result and its events durable together.

use async_trait::async_trait;

use super::{Flush, StoreError};
use crate::model::{DeadLetter, Delivery, Gate, OutboxEntry};

/// Storage of the outbox, the embedded queues and the dead letters.
///
/// Writes are visible at once and durable after a [`Flush::flush`] that started after them,
/// as with [`super::RunStore`].
#[async_trait]
pub trait EventStore: Flush {
    /// Adds events to the outbox; an id already there is left as it is.
    async fn outbox_put(&self, entries: &[OutboxEntry]) -> Result<(), StoreError>;

    /// Up to `limit` outbox entries, oldest first, after the event `after` if given (a page
    /// on from a previous one).
    async fn outbox_pending(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Outbox entries for this process's relay to send, as [`Self::outbox_pending`] pages
    /// them, but skipping those another process's relay took less than `hold` ago; those
    /// returned are taken for this one's for `hold` (and taken again by its next call).
    /// On a store several nodes share, so that their relays send each event once in the
    /// normal case; where one process relays, this is [`Self::outbox_pending`].
    async fn outbox_take(
        &self,
        after: Option<&str>,
        limit: usize,
        hold: std::time::Duration,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let _ = hold;
        self.outbox_pending(after, limit).await
    }

    /// How many events the outbox holds, gated or not. Walks the outbox: for gauges, not
    /// for the hot path.
    async fn outbox_depth(&self) -> Result<usize, StoreError>;

    /// Removes a relayed event from the outbox.
    async fn outbox_remove(&self, event_id: &str) -> Result<(), StoreError>;

    /// Removes relayed events from the outbox: a relay's batch, in one write where the
    /// store can.
    async fn outbox_remove_all(&self, event_ids: &[&str]) -> Result<(), StoreError> {
        for id in event_ids {
            self.outbox_remove(id).await?;
        }
        Ok(())
    }

    /// Whether what `gate` waits for is there: the journal entry, or the record at that
    /// revision.
    async fn gate_open(&self, gate: &Gate) -> Result<bool, StoreError>;

    /// [`Self::gate_open`] of each of `gates`, in order: in one look where the store can.
    async fn gates_open(&self, gates: &[Gate]) -> Result<Vec<bool>, StoreError> {
        let mut open = Vec::with_capacity(gates.len());
        for gate in gates {
            open.push(self.gate_open(gate).await?);
        }
        Ok(open)
    }

    /// Queues a delivery, due at its `due_ms`.
    async fn enqueue(&self, delivery: &Delivery) -> Result<(), StoreError>;

    /// Up to `limit` deliveries of `subscription` due at `now_ms`, earliest first. On a
    /// store several nodes share, those another process took a while ago and has not
    /// settled are skipped, and those returned are taken for this one's, so that each
    /// delivery goes to one node (again to another should that one die holding it).
    async fn due(
        &self,
        subscription: &str,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// When the earliest delivery of `subscription` is due, if it has any.
    async fn next_due(&self, subscription: &str) -> Result<Option<u64>, StoreError>;

    /// How many deliveries `subscription`'s queue holds, due or not. Walks the queue.
    async fn queue_depth(&self, subscription: &str) -> Result<usize, StoreError>;

    /// Removes a delivery as it was queued.
    async fn dequeue(&self, delivery: &Delivery) -> Result<(), StoreError>;

    /// Stores a dead letter.
    async fn bury(&self, letter: &DeadLetter) -> Result<(), StoreError>;

    /// Dead letters, newest first, `limit` at most, after `cursor` (a previous page's
    /// last id).
    async fn dead_letters(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Vec<DeadLetter>, StoreError>;

    /// The dead letter with this id.
    async fn dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, StoreError>;

    /// Removes and returns a dead letter.
    async fn exhume(&self, id: &str) -> Result<Option<DeadLetter>, StoreError>;

    /// Ids of dead letters given up on before `cutoff_ms`, oldest first, at most `limit`.
    async fn dead_letters_before(
        &self,
        cutoff_ms: u64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;
}
