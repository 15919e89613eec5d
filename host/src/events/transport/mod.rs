//! Transports: how relayed events reach the workers of their subscriptions.
//!
//! The relay decides which subscriptions an event goes to (topic patterns are matched in
//! the host, the same way for every transport) and [`Transport::send`]s it to each one's
//! queue; each subscription's worker [`Transport::receive`]s from its queue and settles
//! every delivery: done, again after a delay, or given up (the dispatcher then keeps a dead
//! letter in the store). Delivery is at least once with every transport. Brokers carry
//! each event as CloudEvents 1.0 JSON ([`super::cloud_event`]), so other consumers can read
//! them.
//!
//! - [`embedded`]: queues in the run store's sled database; one process.
//! - [`nats`]: NATS JetStream: one stream, a subject and a durable pull consumer per
//!   subscription, ack / nak with delay / term. Several hosts share the consumers, so a
//!   subscription's deliveries are spread over them.
//! - [`rabbitmq`]: RabbitMQ: a durable topic exchange, a durable queue per subscription,
//!   persistent messages with publisher confirms, ack / delayed retry / reject to a
//!   dead-letter exchange.
//! - [`redis_streams`]: Redis Streams: a stream and consumer group per subscription,
//!   `XACK`, delayed retries in a sorted set, `XAUTOCLAIM` for what a dead host left.

pub mod embedded;
pub mod nats;
pub mod rabbitmq;
pub mod redis_streams;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::PublishedEvent;
use crate::store::{BoxFuture, Cause, EventStore, StoreError};

/// `[events.transport]`: where events travel between the outbox and the handlers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TransportConfig {
    /// Queues in the run store (one process). The default.
    #[default]
    Embedded,
    /// NATS JetStream.
    Nats(nats::NatsConfig),
    /// RabbitMQ.
    Rabbitmq(rabbitmq::RabbitMqConfig),
    /// Redis Streams.
    Redis(redis_streams::RedisConfig),
}

/// A transport failed. Every case is worth retrying later, and nothing is lost meanwhile:
/// the outbox keeps what was not sent, the broker what was not settled.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The broker refused, or could not be reached.
    #[error("event transport: {broker}: {cause}")]
    Broker {
        /// `nats`, `rabbitmq` or `redis`.
        broker: &'static str,
        /// The client's error.
        cause: Cause,
    },
    /// The store failed (the embedded transport's queues, the outbox, a dead letter).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TransportError {
    /// A [`Self::Broker`] error of `broker`.
    pub fn broker(broker: &'static str, cause: impl Into<Cause>) -> Self {
        Self::Broker {
            broker,
            cause: cause.into(),
        }
    }
}

/// A queue per subscription, at least once.
pub trait Transport: Send + Sync {
    /// Makes sure each of `subscriptions` has its queue. Called once before anything is
    /// sent or received.
    fn declare<'a>(
        &'a self,
        subscriptions: &'a [String],
    ) -> BoxFuture<'a, Result<(), TransportError>>;

    /// Queues `event` for `subscription`, durably, due now. `message_id` identifies this
    /// send: a transport that deduplicates drops a second send with the same id.
    fn send<'a>(
        &'a self,
        subscription: &'a str,
        event: &'a PublishedEvent,
        message_id: &'a str,
    ) -> BoxFuture<'a, Result<(), TransportError>>;

    /// Whether the broker answers now: what `GET /readyz` checks. One round trip, no
    /// retries.
    fn ping(&self) -> BoxFuture<'_, Result<(), TransportError>>;

    /// How many events `subscription`'s queue holds: waiting, waiting out a retry's delay,
    /// or handed out and not settled yet, as far as the broker says.
    fn backlog<'a>(&'a self, subscription: &'a str) -> BoxFuture<'a, Result<u64, TransportError>>;

    /// Up to `max` deliveries of `subscription` that are due, waiting up to `wait` for
    /// the first. A delivery is not handed out again while it is being settled.
    fn receive<'a>(
        &'a self,
        subscription: &'a str,
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<Received>, TransportError>>;
}

/// One delivery of an event to a subscription.
pub struct Received {
    /// The event.
    pub event: PublishedEvent,
    /// Attempts made before this one.
    pub attempts: u32,
    /// How to settle it.
    pub settle: Box<dyn Settle>,
}

/// How a delivery ends.
pub trait Settle: Send {
    /// Handled: it leaves the queue.
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>>;

    /// Failed: deliver it again after `delay`, counting this attempt.
    fn retry(
        self: Box<Self>,
        delay: Duration,
        error: String,
    ) -> BoxFuture<'static, Result<(), TransportError>>;

    /// Given up on: it leaves the queue (the dispatcher has kept a dead letter).
    fn give_up(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>>;
}

/// The transport `config` names; the embedded one keeps its queues in `store`.
pub async fn connect(
    config: &TransportConfig,
    store: Arc<dyn EventStore>,
) -> Result<Arc<dyn Transport>, TransportError> {
    Ok(match config {
        TransportConfig::Embedded => Arc::new(embedded::Embedded::new(store)),
        TransportConfig::Nats(config) => Arc::new(nats::Nats::connect(config).await?),
        TransportConfig::Rabbitmq(config) => Arc::new(rabbitmq::RabbitMq::connect(config).await?),
        TransportConfig::Redis(config) => {
            Arc::new(redis_streams::RedisStreams::connect(config).await?)
        }
    })
}
