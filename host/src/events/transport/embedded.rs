//! The embedded transport: a queue per subscription in the run store's sled database,
//! ordered by due time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::{Received, Settle, Transport, TransportError};
use crate::model::{Delivery, PublishedEvent, now_ms};
use crate::store::{BoxFuture, EventStore};

/// Queues in the store.
pub struct Embedded {
    store: Arc<dyn EventStore>,
    /// Wakes a subscription's receiver when something is queued for it. A std `Mutex`:
    /// held only to look up or insert.
    queued: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Embedded {
    /// Queues in `store`.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            queued: Mutex::default(),
        }
    }

    fn queued(&self, subscription: &str) -> Arc<Notify> {
        self.queued
            .lock()
            .expect("queued lock")
            .entry(subscription.to_owned())
            .or_default()
            .clone()
    }
}

impl Transport for Embedded {
    fn declare<'a>(
        &'a self,
        _subscriptions: &'a [String],
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn send<'a>(
        &'a self,
        subscription: &'a str,
        event: &'a PublishedEvent,
        _message_id: &'a str,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            let delivery = Delivery {
                subscription: subscription.to_owned(),
                event: event.clone(),
                attempts: 0,
                due_ms: now_ms(),
                error: None,
            };
            self.store.enqueue(&delivery).await?;
            self.queued(subscription).notify_one();
            Ok(())
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn backlog<'a>(&'a self, subscription: &'a str) -> BoxFuture<'a, Result<u64, TransportError>> {
        Box::pin(async move { Ok(self.store.queue_depth(subscription).await? as u64) })
    }

    fn receive<'a>(
        &'a self,
        subscription: &'a str,
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<Received>, TransportError>> {
        Box::pin(async move {
            let queued = self.queued(subscription);
            let deadline = Instant::now() + wait;
            loop {
                let now = now_ms();
                let due = self.store.due(subscription, now, max).await?;
                if !due.is_empty() {
                    return Ok(due
                        .into_iter()
                        .map(|delivery| Received {
                            event: delivery.event.clone(),
                            attempts: delivery.attempts,
                            settle: Box::new(Queued {
                                store: self.store.clone(),
                                queued: queued.clone(),
                                delivery,
                            }),
                        })
                        .collect());
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(Vec::new());
                }
                let next = self
                    .store
                    .next_due(subscription)
                    .await?
                    .map_or(left, |at| Duration::from_millis(at.saturating_sub(now)));
                tokio::select! {
                    () = queued.notified() => {}
                    () = tokio::time::sleep(next.min(left)) => {}
                }
            }
        })
    }
}

/// A delivery still in the queue while it is being handled.
struct Queued {
    store: Arc<dyn EventStore>,
    queued: Arc<Notify>,
    delivery: Delivery,
}

impl Settle for Queued {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin(async move { Ok(self.store.dequeue(&self.delivery).await?) })
    }

    fn retry(
        self: Box<Self>,
        delay: Duration,
        error: String,
    ) -> BoxFuture<'static, Result<(), TransportError>> {
        // The new record goes in before the old one goes, so a crash repeats, never loses.
        let again = Delivery {
            attempts: self.delivery.attempts + 1,
            due_ms: now_ms() + delay.as_millis() as u64,
            error: Some(error),
            ..self.delivery.clone()
        };
        Box::pin(async move {
            let result = match self.store.enqueue(&again).await {
                Ok(()) => self.store.dequeue(&self.delivery).await,
                Err(error) => Err(error),
            };
            self.queued.notify_one();
            Ok(result?)
        })
    }

    fn give_up(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>> {
        self.ack()
    }
}
