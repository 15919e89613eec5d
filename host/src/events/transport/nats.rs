//! The NATS JetStream transport.
//!
//! One stream (`stream`, subjects `flowhost.<stream>.>`, file storage, interest retention:
//! a message stays until every consumer that wants it has acknowledged it). Each
//! subscription has the subject `flowhost.<stream>.<subscription>` and a durable pull
//! consumer of it with explicit acks; several hosts pulling from one consumer share its
//! deliveries. A send is durable when JetStream acknowledges the publish; its message id
//! (`Nats-Msg-Id`) lets JetStream drop a repeat within the stream's duplicate window.
//! Settling: `ack`; a retry is a `nak` with the delay; giving up is `term`. The attempt
//! count is JetStream's own delivery count.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config as StreamConfig, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, AckKind, Context};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::{Received, Settle, Transport, TransportError};
use crate::events::{cloud_event, from_cloud_event};
use crate::model::PublishedEvent;
use crate::store::BoxFuture;

/// How long a delivery may be in a handler's hands before JetStream hands it out again:
/// above the longest plugin deadline one would configure.
const ACK_WAIT: Duration = Duration::from_secs(5 * 60);

/// `[events.transport]` with `kind = "nats"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NatsConfig {
    /// The server, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// The JetStream stream. Default `FLOWHOST`.
    #[serde(default = "default_stream")]
    pub stream: String,
}

fn default_stream() -> String {
    "FLOWHOST".to_owned()
}

/// A JetStream connection, the stream's name and the subscriptions' consumers.
pub struct Nats {
    jetstream: Context,
    stream: String,
    /// By subscription, once declared. A std `Mutex`: held only to look up or insert.
    consumers: Mutex<HashMap<String, PullConsumer>>,
}

fn error(e: impl Into<crate::store::Cause>) -> TransportError {
    TransportError::broker("nats", e)
}

impl Nats {
    /// Connects to `config.url` and makes sure the stream exists.
    pub async fn connect(config: &NatsConfig) -> Result<Self, TransportError> {
        let client = async_nats::connect(&config.url).await.map_err(error)?;
        let jetstream = jetstream::new(client);
        jetstream
            .get_or_create_stream(StreamConfig {
                name: config.stream.clone(),
                subjects: vec![format!("{}.>", prefix(&config.stream))],
                retention: RetentionPolicy::Interest,
                storage: StorageType::File,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(error)?;
        Ok(Self {
            jetstream,
            stream: config.stream.clone(),
            consumers: Mutex::default(),
        })
    }

    fn subject(&self, subscription: &str) -> String {
        format!("{}.{subscription}", prefix(&self.stream))
    }

    /// The consumer of `subscription`, created if it is not there yet.
    async fn consumer(&self, subscription: &str) -> Result<PullConsumer, TransportError> {
        if let Some(consumer) = self
            .consumers
            .lock()
            .expect("consumers lock")
            .get(subscription)
        {
            return Ok(consumer.clone());
        }
        let stream = self
            .jetstream
            .get_stream(&self.stream)
            .await
            .map_err(error)?;
        let durable = durable_name(subscription);
        let consumer = stream
            .get_or_create_consumer(
                &durable,
                pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: self.subject(subscription),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    // The dispatcher counts attempts and gives up itself.
                    max_deliver: -1,
                    ..Default::default()
                },
            )
            .await
            .map_err(error)?;
        self.consumers
            .lock()
            .expect("consumers lock")
            .insert(subscription.to_owned(), consumer.clone());
        Ok(consumer)
    }
}

/// The subject prefix of a stream's subscriptions.
fn prefix(stream: &str) -> String {
    format!("flowhost.{}", stream.to_ascii_lowercase())
}

/// A consumer name for `subscription`: no `.`, `*`, `>` or whitespace.
fn durable_name(subscription: &str) -> String {
    let name: String = subscription
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("flowhost-{name}")
}

impl Transport for Nats {
    fn declare<'a>(
        &'a self,
        subscriptions: &'a [String],
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            for subscription in subscriptions {
                self.consumer(subscription).await?;
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
            let message = PublishMessage::build()
                .payload(payload.into())
                .message_id(message_id);
            self.jetstream
                .send_publish(self.subject(subscription), message)
                .await
                .map_err(error)?
                .await
                .map_err(error)?;
            Ok(())
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            self.jetstream
                .get_stream(&self.stream)
                .await
                .map_err(error)?;
            Ok(())
        })
    }

    fn backlog<'a>(&'a self, subscription: &'a str) -> BoxFuture<'a, Result<u64, TransportError>> {
        Box::pin(async move {
            let info = self
                .consumer(subscription)
                .await?
                .get_info()
                .await
                .map_err(error)?;
            Ok(info.num_pending + info.num_ack_pending as u64)
        })
    }

    fn receive<'a>(
        &'a self,
        subscription: &'a str,
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<Received>, TransportError>> {
        Box::pin(async move {
            let consumer = self.consumer(subscription).await?;
            // What is there now; if nothing, wait for the first one only, so that a lone
            // event is not held back until the wait is over.
            // Both requests expire: a request lost to a reconnection is never answered, and
            // only the client's timer (the expiry plus five seconds) ends the wait for it.
            let mut messages = collect(
                consumer
                    .fetch()
                    .max_messages(max)
                    .expires(wait)
                    .messages()
                    .await
                    .map_err(error)?,
            )
            .await?;
            if messages.is_empty() {
                messages = collect(
                    consumer
                        .batch()
                        .max_messages(1)
                        .expires(wait)
                        .messages()
                        .await
                        .map_err(error)?,
                )
                .await?;
            }
            Ok(messages.into_iter().filter_map(received).collect())
        })
    }
}

async fn collect<S, E>(mut batch: S) -> Result<Vec<jetstream::Message>, TransportError>
where
    S: futures_util::Stream<Item = Result<jetstream::Message, E>> + Unpin,
    E: Into<crate::store::Cause>,
{
    let mut messages = Vec::new();
    while let Some(message) = batch.next().await {
        messages.push(message.map_err(error)?);
    }
    Ok(messages)
}

/// The delivery `message` carries; `None` for a message that is not a flowhost event, which
/// is logged and terminated: no attempt would ever handle it.
fn received(message: jetstream::Message) -> Option<Received> {
    let parsed = from_cloud_event(&message.payload)
        .map_err(crate::store::Cause::from)
        .and_then(|event| Ok((event, message.info()?.delivered)));
    let (event, delivered) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            tracing::error!(error = %e, subject = %message.subject, "dropping a message that is not a flowhost event");
            tokio::spawn(async move { message.ack_with(AckKind::Term).await });
            return None;
        }
    };
    Some(Received {
        event,
        attempts: u32::try_from(delivered.saturating_sub(1)).unwrap_or(u32::MAX),
        settle: Box::new(Delivered(message)),
    })
}

/// A JetStream message being handled.
struct Delivered(jetstream::Message);

impl Delivered {
    fn settle(self, kind: AckKind) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin(async move { self.0.ack_with(kind).await.map_err(error) })
    }
}

impl Settle for Delivered {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>> {
        self.settle(AckKind::Ack)
    }

    fn retry(
        self: Box<Self>,
        delay: Duration,
        _error: String,
    ) -> BoxFuture<'static, Result<(), TransportError>> {
        self.settle(AckKind::Nak(Some(delay)))
    }

    fn give_up(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>> {
        self.settle(AckKind::Term)
    }
}
