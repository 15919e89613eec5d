//! [`EventStore`] on [`SledStore`]: the outbox, the embedded queues and the dead letters.

use async_trait::async_trait;

use super::runs::journal_key;
use super::{SledStore, decode, encode, io, name_prefix, prefix_end};
use crate::model::{DeadLetter, Delivery, Gate, OutboxEntry, RunId};
use crate::store::{EventStore, StoreError};

fn queue_prefix(subscription: &str) -> Vec<u8> {
    name_prefix(subscription)
}

fn queue_key(delivery: &Delivery) -> Vec<u8> {
    let mut key = queue_prefix(&delivery.subscription);
    key.extend(delivery.due_ms.to_be_bytes());
    key.extend_from_slice(delivery.event.id.as_bytes());
    key
}

impl SledStore {
    /// Removes the outbox entries (of run `run`, or of every run) whose gates are closed:
    /// events of step attempts whose result was never written, or of ends never saved.
    /// Only while nothing drives those runs.
    pub(super) fn drop_orphans(&self, run: Option<&RunId>) -> Result<(), StoreError> {
        let mut dropped = 0;
        for item in self.outbox.iter() {
            let (key, value) = item.map_err(io("read the outbox"))?;
            let entry: OutboxEntry = decode(&key, &value)?;
            let Some(gate) = &entry.gate else {
                continue;
            };
            if run.is_some_and(|run| gate.run().0 != run) {
                continue;
            }
            if !self.is_open(gate)? {
                self.outbox.remove(key).map_err(io("drop an orphan"))?;
                dropped += 1;
            }
        }
        if dropped > 0 {
            tracing::info!(
                dropped,
                "dropped events of step attempts whose result was lost"
            );
        }
        Ok(())
    }

    /// Whether what `gate` waits for is there.
    fn is_open(&self, gate: &Gate) -> Result<bool, StoreError> {
        match gate {
            Gate::Journal { run_id, seq, .. } => self
                .journal
                .contains_key(journal_key(run_id, *seq))
                .map_err(io("check a gate")),
            Gate::Record {
                run_id, revision, ..
            } => Ok(self
                .record_head(run_id.as_bytes())?
                .is_some_and(|(_, head)| head.revision >= *revision)),
        }
    }
}

#[async_trait]
impl EventStore for SledStore {
    async fn outbox_put(&self, entries: &[OutboxEntry]) -> Result<(), StoreError> {
        // One node, one epoch: the fence is that the run is there.
        for gate in entries.iter().filter_map(|e| e.gate.as_ref()) {
            let (run_id, _) = gate.run();
            if self.record_head(run_id.as_bytes())?.is_none() {
                return Err(StoreError::Fenced(run_id.clone()));
            }
        }
        for entry in entries {
            let key = entry.event.id.as_bytes();
            // Insert if absent: a repeat of an id keeps the first.
            let _ = self
                .outbox
                .compare_and_swap(key, None as Option<&[u8]>, Some(encode(entry)?))
                .map_err(io("write the outbox"))?;
        }
        Ok(())
    }

    async fn outbox_depth(&self) -> Result<usize, StoreError> {
        let mut depth = 0;
        for key in self.outbox.iter().keys() {
            key.map_err(io("read the outbox"))?;
            depth += 1;
        }
        Ok(depth)
    }

    async fn outbox_pending(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let entries = match after {
            Some(after) => self.outbox.range::<&[u8], _>((
                std::ops::Bound::Excluded(after.as_bytes()),
                std::ops::Bound::Unbounded,
            )),
            None => self.outbox.iter(),
        };
        entries
            .take(limit)
            .map(|item| {
                let (key, value) = item.map_err(io("read the outbox"))?;
                decode(&key, &value)
            })
            .collect()
    }

    async fn outbox_remove(&self, event_id: &str) -> Result<(), StoreError> {
        self.outbox
            .remove(event_id.as_bytes())
            .map_err(io("remove from the outbox"))?;
        Ok(())
    }

    async fn gate_open(&self, gate: &Gate) -> Result<bool, StoreError> {
        self.is_open(gate)
    }

    async fn enqueue(&self, delivery: &Delivery) -> Result<(), StoreError> {
        self.queue
            .insert(queue_key(delivery), encode(delivery)?)
            .map_err(io("queue a delivery"))?;
        Ok(())
    }

    async fn due(
        &self,
        subscription: &str,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let prefix = queue_prefix(subscription);
        let mut upper = prefix.clone();
        upper.extend((now_ms + 1).to_be_bytes());
        self.queue
            .range(prefix..upper)
            .take(limit)
            .map(|item| {
                let (key, value) = item.map_err(io("read a queue"))?;
                decode(&key, &value)
            })
            .collect()
    }

    async fn queue_depth(&self, subscription: &str) -> Result<usize, StoreError> {
        let prefix = queue_prefix(subscription);
        let mut depth = 0;
        for key in self.queue.range(prefix.clone()..prefix_end(&prefix)).keys() {
            key.map_err(io("read a queue"))?;
            depth += 1;
        }
        Ok(depth)
    }

    async fn next_due(&self, subscription: &str) -> Result<Option<u64>, StoreError> {
        let prefix = queue_prefix(subscription);
        let Some(item) = self.queue.range(prefix.clone()..prefix_end(&prefix)).next() else {
            return Ok(None);
        };
        let (key, _) = item.map_err(io("read a queue"))?;
        let due = key
            .get(prefix.len()..prefix.len() + 8)
            .and_then(|bytes| bytes.try_into().ok())
            .map(u64::from_be_bytes);
        Ok(due)
    }

    async fn dequeue(&self, delivery: &Delivery) -> Result<(), StoreError> {
        self.queue
            .remove(queue_key(delivery))
            .map_err(io("dequeue a delivery"))?;
        Ok(())
    }

    async fn bury(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        self.dead_letters
            .insert(letter.id.as_bytes(), encode(letter)?)
            .map_err(io("store a dead letter"))?;
        Ok(())
    }

    async fn dead_letters(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let range = match cursor {
            Some(cursor) => self.dead_letters.range(..cursor.as_bytes()),
            None => self.dead_letters.range::<&[u8], _>(..),
        };
        range
            .rev()
            .take(limit)
            .map(|item| {
                let (key, value) = item.map_err(io("read dead letters"))?;
                decode(&key, &value)
            })
            .collect()
    }

    async fn dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        match self
            .dead_letters
            .get(id.as_bytes())
            .map_err(io("read a dead letter"))?
        {
            Some(value) => decode(id.as_bytes(), &value).map(Some),
            None => Ok(None),
        }
    }

    async fn exhume(&self, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        match self
            .dead_letters
            .remove(id.as_bytes())
            .map_err(io("remove a dead letter"))?
        {
            Some(value) => decode(id.as_bytes(), &value).map(Some),
            None => Ok(None),
        }
    }

    async fn dead_letters_before(
        &self,
        cutoff_ms: u64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        // Ids are ULIDs: their first 48 bits are the time they were given up on, and their
        // text sorts as their time does. The bound is the smallest id of the cutoff's ms.
        let bound = ulid::Ulid::from_parts(cutoff_ms, 0).to_string();
        self.dead_letters
            .range(..bound.as_bytes())
            .keys()
            .take(limit)
            .map(|key| {
                key.map(|k| String::from_utf8_lossy(&k).into_owned())
                    .map_err(io("read dead letters"))
            })
            .collect()
    }
}
