//! [`EventStore`] on [`SledStore`]: the outbox, the embedded queues and the dead letters.

use super::runs::journal_key;
use super::{SledStore, backend, decode, prefix_end};
use crate::store::events::{DeadLetter, Delivery, EventStore, Gate, OutboxEntry};
use crate::store::{BoxFuture, StoreError};

fn queue_prefix(subscription: &str) -> Vec<u8> {
    let mut key = subscription.as_bytes().to_vec();
    key.push(0);
    key
}

fn queue_key(delivery: &Delivery) -> Vec<u8> {
    let mut key = queue_prefix(&delivery.subscription);
    key.extend(delivery.due_ms.to_be_bytes());
    key.extend_from_slice(delivery.event.id.as_bytes());
    key
}

fn encode(value: &impl serde::Serialize) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(backend)
}

impl EventStore for SledStore {
    fn outbox_put(&self, entries: &[OutboxEntry]) -> Result<(), StoreError> {
        for entry in entries {
            let key = entry.event.id.as_bytes();
            // Insert if absent: a repeat of an id keeps the first.
            let _ = self
                .outbox
                .compare_and_swap(key, None as Option<&[u8]>, Some(encode(entry)?))
                .map_err(backend)?;
        }
        Ok(())
    }

    fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        self.outbox
            .iter()
            .take(limit)
            .map(|item| {
                let (key, value) = item.map_err(backend)?;
                decode(&key, &value)
            })
            .collect()
    }

    fn outbox_remove(&self, event_id: &str) -> Result<(), StoreError> {
        self.outbox.remove(event_id.as_bytes()).map_err(backend)?;
        Ok(())
    }

    fn gate_open(&self, gate: &Gate) -> Result<bool, StoreError> {
        self.journal
            .contains_key(journal_key(&gate.run_id, gate.seq))
            .map_err(backend)
    }

    fn enqueue(&self, delivery: &Delivery) -> Result<(), StoreError> {
        self.queue
            .insert(queue_key(delivery), encode(delivery)?)
            .map_err(backend)?;
        Ok(())
    }

    fn due(
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
                let (key, value) = item.map_err(backend)?;
                decode(&key, &value)
            })
            .collect()
    }

    fn next_due(&self, subscription: &str) -> Result<Option<u64>, StoreError> {
        let prefix = queue_prefix(subscription);
        let Some(item) = self.queue.range(prefix.clone()..prefix_end(&prefix)).next() else {
            return Ok(None);
        };
        let (key, _) = item.map_err(backend)?;
        let due = key
            .get(prefix.len()..prefix.len() + 8)
            .and_then(|bytes| bytes.try_into().ok())
            .map(u64::from_be_bytes);
        Ok(due)
    }

    fn dequeue(&self, delivery: &Delivery) -> Result<(), StoreError> {
        self.queue.remove(queue_key(delivery)).map_err(backend)?;
        Ok(())
    }

    fn bury(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        self.dead_letters
            .insert(letter.id.as_bytes(), encode(letter)?)
            .map_err(backend)?;
        Ok(())
    }

    fn dead_letters(
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
                let (key, value) = item.map_err(backend)?;
                decode(&key, &value)
            })
            .collect()
    }

    fn dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        match self.dead_letters.get(id.as_bytes()).map_err(backend)? {
            Some(value) => decode(id.as_bytes(), &value).map(Some),
            None => Ok(None),
        }
    }

    fn exhume(&self, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        match self.dead_letters.remove(id.as_bytes()).map_err(backend)? {
            Some(value) => decode(id.as_bytes(), &value).map(Some),
            None => Ok(None),
        }
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.flush_shared()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::events::PublishedEvent;

    fn event(id: &str) -> PublishedEvent {
        PublishedEvent {
            id: id.into(),
            topic: "order.placed".into(),
            source: "test".into(),
            time_ms: 1,
            correlation_id: None,
            key: None,
            data: "{}".into(),
        }
    }

    fn delivery(subscription: &str, id: &str, due_ms: u64) -> Delivery {
        Delivery {
            subscription: subscription.into(),
            event: event(id),
            attempts: 0,
            due_ms,
            error: None,
        }
    }

    #[tokio::test]
    async fn the_outbox_keeps_the_first_of_an_id_in_id_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let entry = |id: &str, seq| OutboxEntry {
            event: event(id),
            gate: Some(Gate {
                run_id: "r".into(),
                seq,
            }),
        };
        store.outbox_put(&[entry("b", 1), entry("a", 2)]).unwrap();
        store.outbox_put(&[entry("a", 9)]).unwrap();
        let pending = store.outbox_pending(10).unwrap();
        assert_eq!(pending, [entry("a", 2), entry("b", 1)]);
        store.outbox_remove("a").unwrap();
        assert_eq!(store.outbox_pending(10).unwrap(), [entry("b", 1)]);
    }

    #[tokio::test]
    async fn queues_hand_out_what_is_due_per_subscription_earliest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        for d in [
            delivery("s", "late", 300),
            delivery("s", "early", 100),
            delivery("t", "other", 50),
        ] {
            store.enqueue(&d).unwrap();
        }
        let due = store.due("s", 200, 10).unwrap();
        assert_eq!(due, [delivery("s", "early", 100)]);
        assert_eq!(store.next_due("s").unwrap(), Some(100));
        store.dequeue(&due[0]).unwrap();
        assert_eq!(store.next_due("s").unwrap(), Some(300));
        assert_eq!(store.due("s", 300, 10).unwrap().len(), 1);
        assert_eq!(store.next_due("u").unwrap(), None);
    }

    #[tokio::test]
    async fn dead_letters_page_newest_first_and_leave_when_exhumed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        for id in ["1", "2", "3"] {
            store
                .bury(&DeadLetter {
                    id: id.into(),
                    subscription: "s".into(),
                    event: event(id),
                    attempts: 3,
                    error: "no".into(),
                    dead_ms: 1,
                })
                .unwrap();
        }
        let first: Vec<String> = store
            .dead_letters(2, None)
            .unwrap()
            .into_iter()
            .map(|l| l.id)
            .collect();
        assert_eq!(first, ["3", "2"]);
        let rest = store.dead_letters(2, Some("2")).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(store.dead_letter("2").unwrap().unwrap().event.id, "2");
        assert_eq!(store.exhume("2").unwrap().unwrap().event.id, "2");
        assert!(store.dead_letter("2").unwrap().is_none());
        assert!(store.exhume("2").unwrap().is_none());
    }
}
