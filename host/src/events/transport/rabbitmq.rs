//! The RabbitMQ transport.
//!
//! A durable topic exchange (`exchange`, default `flowhost`) and, per subscription, a durable
//! queue `<exchange>.<subscription>` bound to it with the subscription's name as routing key
//! (the host matches topic patterns, the same way for every transport, and sends each event
//! to the subscriptions it matches). Messages are persistent and every publish waits for
//! the broker's confirm, so a send is durable when it returns.
//!
//! Each queue is consumed with a prefetch of the subscription's concurrency and explicit
//! acks. A retry is published, with its attempt count in the `x-flowhost-attempts` header,
//! to the subscription's delay queue `<exchange>.<subscription>.retry` with the backoff as
//! its expiration; the delay queue dead-letters expired messages back to the exchange with
//! the subscription's routing key. Giving up rejects the message, and the queue's
//! dead-letter exchange `<exchange>.dead` keeps it in the queue `<exchange>.dead` besides
//! the dead letter the host stores. The connection recovers by itself after the broker
//! comes back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};
use serde::{Deserialize, Serialize};

use super::{Received, Settle, Transport, TransportError};
use crate::events::{cloud_event, from_cloud_event};
use crate::model::PublishedEvent;
use crate::store::BoxFuture;

/// The header that counts a message's attempts so far.
const ATTEMPTS: &str = "x-flowhost-attempts";
/// Persistent messages.
const PERSISTENT: u8 = 2;

/// `[events.transport]` with `kind = "rabbitmq"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RabbitMqConfig {
    /// The server, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub url: String,
    /// The topic exchange. Default `flowhost`.
    #[serde(default = "default_exchange")]
    pub exchange: String,
    /// Unacknowledged deliveries per subscription held by this host at once. Default 32.
    #[serde(default = "default_prefetch")]
    pub prefetch: u16,
}

fn default_exchange() -> String {
    "flowhost".to_owned()
}

fn default_prefetch() -> u16 {
    32
}

fn error(e: impl Into<crate::store::Cause>) -> TransportError {
    TransportError::broker("rabbitmq", e)
}

/// A connection, a confirming channel to publish on, and a consumer per subscription.
pub struct RabbitMq {
    connection: Connection,
    publisher: Channel,
    consumer_channel: Channel,
    exchange: String,
    prefetch: u16,
    /// By subscription, once declared. A std `Mutex` over the map, held only to look up or
    /// insert; each consumer behind its own async lock, held while receiving.
    consumers: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Consumer>>>>,
}

impl RabbitMq {
    /// Connects to `config.url` and declares the exchange and the dead-letter queue.
    pub async fn connect(config: &RabbitMqConfig) -> Result<Self, TransportError> {
        let connection = Connection::connect(
            &config.url,
            ConnectionProperties::default().enable_auto_recover(),
        )
        .await
        .map_err(error)?;
        let publisher = connection.create_channel().await.map_err(error)?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(error)?;
        let consumer_channel = connection.create_channel().await.map_err(error)?;
        consumer_channel
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await
            .map_err(error)?;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let dead = format!("{}.dead", config.exchange);
        for (name, kind) in [
            (config.exchange.as_str(), ExchangeKind::Topic),
            (dead.as_str(), ExchangeKind::Fanout),
        ] {
            publisher
                .exchange_declare(name.into(), kind, durable, FieldTable::default())
                .await
                .map_err(error)?;
        }
        declare_queue(&publisher, &dead, FieldTable::default()).await?;
        publisher
            .queue_bind(
                dead.as_str().into(),
                dead.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(error)?;
        Ok(Self {
            connection,
            publisher,
            consumer_channel,
            exchange: config.exchange.clone(),
            prefetch: config.prefetch,
            consumers: Mutex::default(),
        })
    }

    fn queue(&self, subscription: &str) -> String {
        format!("{}.{subscription}", self.exchange)
    }

    fn retry_queue(&self, subscription: &str) -> String {
        format!("{}.{subscription}.retry", self.exchange)
    }

    /// The subscription's queue, delay queue and consumer.
    async fn declare_one(&self, subscription: &str) -> Result<(), TransportError> {
        let queue = self.queue(subscription);
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-dead-letter-exchange".into(),
            long_string(&format!("{}.dead", self.exchange)),
        );
        declare_queue(&self.publisher, &queue, arguments).await?;
        self.publisher
            .queue_bind(
                queue.as_str().into(),
                self.exchange.as_str().into(),
                subscription.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(error)?;
        let mut arguments = FieldTable::default();
        arguments.insert("x-dead-letter-exchange".into(), long_string(&self.exchange));
        arguments.insert(
            "x-dead-letter-routing-key".into(),
            long_string(subscription),
        );
        declare_queue(&self.publisher, &self.retry_queue(subscription), arguments).await?;
        let consumer = self
            .consumer_channel
            .basic_consume(
                queue.as_str().into(),
                format!("flowhost-{subscription}-{}", ulid::Ulid::new()).into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(error)?;
        self.consumers.lock().expect("consumers lock").insert(
            subscription.to_owned(),
            Arc::new(tokio::sync::Mutex::new(consumer)),
        );
        Ok(())
    }
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

async fn declare_queue(
    channel: &Channel,
    name: &str,
    arguments: FieldTable,
) -> Result<(), TransportError> {
    channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            arguments,
        )
        .await
        .map_err(error)?;
    Ok(())
}

/// Publishes persistently and waits for the broker's confirm.
async fn publish(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    payload: &[u8],
    properties: BasicProperties,
) -> Result<(), TransportError> {
    let confirm = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            payload,
            properties.with_delivery_mode(PERSISTENT),
        )
        .await
        .map_err(error)?
        .await
        .map_err(error)?;
    if confirm.is_ack() {
        Ok(())
    } else {
        Err(error("the broker did not take the message"))
    }
}

impl Transport for RabbitMq {
    fn declare<'a>(
        &'a self,
        subscriptions: &'a [String],
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            for subscription in subscriptions {
                self.declare_one(subscription).await?;
            }
            Ok(())
        })
    }

    fn send<'a>(
        &'a self,
        subscription: &'a str,
        event: &'a PublishedEvent,
        message_id: &'a str,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            let payload = serde_json::to_vec(&cloud_event(event)).map_err(error)?;
            let properties = BasicProperties::default()
                .with_message_id(ShortString::from(message_id))
                .with_content_type("application/cloudevents+json".into());
            publish(
                &self.publisher,
                &self.exchange,
                subscription,
                &payload,
                properties,
            )
            .await
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        let connected = self.connection.status().connected();
        Box::pin(std::future::ready(if connected {
            Ok(())
        } else {
            Err(error("not connected to the broker"))
        }))
    }

    fn backlog<'a>(&'a self, subscription: &'a str) -> BoxFuture<'a, Result<u64, TransportError>> {
        Box::pin(async move {
            // A channel of its own: a passive declare that fails closes its channel. Closed
            // when done, or when the caller gives up on the answer (lapin keeps a dropped
            // channel open).
            let channel = ClosedOnDrop(self.connection.create_channel().await.map_err(error)?);
            let mut backlog = 0;
            for queue in [self.queue(subscription), self.retry_queue(subscription)] {
                let queue = channel
                    .0
                    .queue_declare(
                        queue.as_str().into(),
                        QueueDeclareOptions {
                            passive: true,
                            ..Default::default()
                        },
                        FieldTable::default(),
                    )
                    .await
                    .map_err(error)?;
                backlog += u64::from(queue.message_count());
            }
            Ok(backlog)
        })
    }

    fn receive<'a>(
        &'a self,
        subscription: &'a str,
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<Received>, TransportError>> {
        Box::pin(async move {
            let consumer = self
                .consumers
                .lock()
                .expect("consumers lock")
                .get(subscription)
                .cloned()
                .ok_or_else(|| error(format!("subscription `{subscription}` not declared")))?;
            let mut consumer = consumer.lock().await;
            let mut deliveries = Vec::new();
            // The first as soon as it comes, then whatever is already here, up to `max`.
            match tokio::time::timeout(wait, consumer.next()).await {
                Err(_elapsed) => return Ok(Vec::new()),
                Ok(None) => return Err(error("the consumer was cancelled")),
                Ok(Some(delivery)) => deliveries.push(delivery.map_err(error)?),
            }
            let max = max.min(usize::from(self.prefetch)).max(1);
            while deliveries.len() < max {
                match consumer.next().now_or_never() {
                    Some(Some(delivery)) => deliveries.push(delivery.map_err(error)?),
                    _ => break,
                }
            }
            Ok(deliveries
                .into_iter()
                .filter_map(|delivery| self.received(subscription, delivery))
                .collect())
        })
    }
}

impl RabbitMq {
    /// The delivery `delivery` carries; `None` for a message that is not a flowhost event,
    /// which is logged and rejected: no attempt would ever handle it.
    fn received(&self, subscription: &str, delivery: Delivery) -> Option<Received> {
        let event = match from_cloud_event(&delivery.data) {
            Ok(event) => event,
            Err(e) => {
                tracing::error!(error = %e, subscription, "rejecting a message that is not a flowhost event");
                tokio::spawn(async move { delivery.acker.nack(BasicNackOptions::default()).await });
                return None;
            }
        };
        let attempts = delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|headers| headers.inner().get(ATTEMPTS))
            .and_then(|value| match value {
                AMQPValue::LongLongInt(n) => u32::try_from(*n).ok(),
                _ => None,
            })
            .unwrap_or(0);
        Some(Received {
            event,
            attempts,
            settle: Box::new(Delivered {
                delivery,
                publisher: self.publisher.clone(),
                retry_queue: self.retry_queue(subscription),
                attempts,
            }),
        })
    }
}

/// A RabbitMQ delivery being handled.
struct Delivered {
    delivery: Delivery,
    publisher: Channel,
    retry_queue: String,
    attempts: u32,
}

impl Settle for Delivered {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin(async move {
            self.delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .map(drop)
                .map_err(error)
        })
    }

    fn retry(
        self: Box<Self>,
        delay: Duration,
        _error: String,
    ) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin(async move {
            // The copy is confirmed before the original is acked: a crash between repeats
            // the attempt, never loses the event.
            let mut headers = FieldTable::default();
            headers.insert(
                ATTEMPTS.into(),
                AMQPValue::LongLongInt(i64::from(self.attempts + 1)),
            );
            let mut properties = self.delivery.properties.clone().with_headers(headers);
            properties = properties.with_expiration(delay.as_millis().to_string().into());
            publish(
                &self.publisher,
                "",
                &self.retry_queue,
                &self.delivery.data,
                properties,
            )
            .await?;
            self.delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .map(drop)
                .map_err(error)
        })
    }

    fn give_up(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin(async move {
            self.delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: false,
                    ..Default::default()
                })
                .await
                .map(drop)
                .map_err(error)
        })
    }
}

/// A channel closed when dropped: lapin keeps a channel open until it is closed.
struct ClosedOnDrop(Channel);

impl Drop for ClosedOnDrop {
    fn drop(&mut self) {
        let channel = self.0.clone();
        if channel.status().connected()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = channel.close(200, "done".into()).await;
            });
        }
    }
}
