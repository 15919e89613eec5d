//! The outbox: every event is written here, in the run store's database, before anything
//! delivers it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::capabilities::events::{EventSink, SinkError};
use crate::model::{Gate, OutboxEntry, PublishedEvent};
use crate::store::{EventStore, StoreError};

/// The outbox. The [`super::Dispatcher`] relays from it.
pub struct Outbox {
    store: Arc<dyn EventStore>,
    /// Wakes the relay.
    written: Notify,
}

impl Outbox {
    /// An outbox over `store`.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            written: Notify::new(),
        }
    }

    /// Writes `events`, to be released once written durably and, when `gate` is given, once
    /// what it waits for is there. Not durable on return: the relay flushes before it
    /// releases anything.
    pub async fn stage(
        &self,
        events: Vec<PublishedEvent>,
        gate: Option<Gate>,
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let entries: Vec<OutboxEntry> = events
            .into_iter()
            .map(|event| OutboxEntry {
                event,
                gate: gate.clone(),
            })
            .collect();
        self.store.outbox_put(&entries).await?;
        self.wake();
        Ok(())
    }

    /// Writes `events` and returns once they are durable: what `POST /v1/events` answers
    /// after, and what a handler's delivery waits for before its ack.
    pub async fn publish(&self, events: Vec<PublishedEvent>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.stage(events, None).await?;
        self.store.flush().await
    }

    /// How many events wait in the outbox, gated or not: the `flowhost_outbox_depth` gauge.
    pub async fn depth(&self) -> Result<usize, StoreError> {
        self.store.outbox_depth().await
    }

    /// Tells the relay there may be something to release.
    pub fn wake(&self) {
        self.written.notify_one();
    }

    pub(super) fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    pub(super) async fn written(&self) {
        self.written.notified().await;
    }
}

/// What a bare handler call publishes goes to the outbox once the handler succeeded.
impl EventSink for Outbox {
    fn accept(
        &self,
        events: Vec<PublishedEvent>,
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + '_>> {
        Box::pin(async move {
            self.stage(events, None)
                .await
                .map_err(|e| SinkError(Box::new(e)))
        })
    }
}
