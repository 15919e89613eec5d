//! The Redis Streams transport.
//!
//! Per subscription a stream `<prefix>:<subscription>` with the consumer group `flowhost`;
//! a send is an `XADD` (durable as far as the server's persistence is configured: AOF with
//! `appendfsync always` for the strongest). A host reads with `XREADGROUP` as a consumer of
//! its own, and first claims (`XAUTOCLAIM`) the entries another consumer has left pending
//! longer than `claim-after`: a host that died mid-delivery. Acks are `XACK` plus `XDEL`.
//! Streams have no delays, so a retry goes to the sorted set `<prefix>:<subscription>:delayed`
//! scored by its due time, from which a script moves due entries back to the stream; the
//! attempt count travels in the entry. Giving up acks (the host keeps the dead letter).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply,
};
use ::redis::{AsyncCommands, Client, Script};
use serde::{Deserialize, Serialize};

use super::{Received, Settle, Transport, TransportError};
use crate::events::{cloud_event, from_cloud_event};
use crate::model::PublishedEvent;
use crate::model::now_ms;
use crate::store::BoxFuture;

/// The consumer group of every subscription's stream.
const GROUP: &str = "flowhost";
/// Delayed entries moved back per receive, at most.
const PROMOTE_BATCH: usize = 256;

/// Moves the due members of a delayed set (KEYS[2]) to the stream (KEYS[1]), atomically.
/// ARGV: now (ms), how many at most.
const PROMOTE: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
    local entry = cjson.decode(member)
    redis.call('XADD', KEYS[1], '*', 'event', entry.event, 'attempts', entry.attempts)
    redis.call('ZREM', KEYS[2], member)
end
return #due
"#;

/// `[events.transport]` with `kind = "redis"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RedisConfig {
    /// The server, e.g. `redis://127.0.0.1:6379`.
    pub url: String,
    /// The prefix of the keys. Default `flowhost`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// How long an entry may stay pending with a consumer before another claims it.
    /// Default 5 minutes: above the longest plugin deadline one would configure.
    #[serde(default = "default_claim_after", with = "humantime_serde")]
    pub claim_after: Duration,
}

fn default_prefix() -> String {
    "flowhost".to_owned()
}

fn default_claim_after() -> Duration {
    Duration::from_secs(5 * 60)
}

fn error(e: impl Into<crate::store::Cause>) -> TransportError {
    TransportError::broker("redis", e)
}

/// A connection for writes, one per subscription for its blocking reads.
pub struct RedisStreams {
    client: Client,
    writer: ConnectionManager,
    prefix: String,
    claim_after: Duration,
    /// This host's consumer name in every group.
    consumer: String,
    promote: Script,
    /// By subscription, once declared. A std `Mutex` over the map, held only to look up or
    /// insert; each connection behind its own async lock, held while receiving.
    readers: Mutex<HashMap<String, Arc<tokio::sync::Mutex<ConnectionManager>>>>,
}

impl RedisStreams {
    /// Connects to `config.url`.
    pub async fn connect(config: &RedisConfig) -> Result<Self, TransportError> {
        let client = Client::open(config.url.as_str()).map_err(error)?;
        let writer = ConnectionManager::new(client.clone())
            .await
            .map_err(error)?;
        Ok(Self {
            client,
            writer,
            prefix: config.prefix.clone(),
            claim_after: config.claim_after,
            consumer: format!("flowhost-{}", ulid::Ulid::new()),
            promote: Script::new(PROMOTE),
            readers: Mutex::default(),
        })
    }

    /// The subscription's stream and group, unless they exist.
    async fn create_group(&self, subscription: &str) -> Result<(), TransportError> {
        let created: Result<(), _> = self
            .writer
            .clone()
            .xgroup_create_mkstream(self.stream(subscription), GROUP, "0")
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(error(e)),
            _ => Ok(()),
        }
    }

    fn stream(&self, subscription: &str) -> String {
        format!("{}:{subscription}", self.prefix)
    }

    fn delayed(&self, subscription: &str) -> String {
        format!("{}:{subscription}:delayed", self.prefix)
    }

    fn settle_with(&self, subscription: &str, id: String, attempts: u32, event: String) -> Entry {
        Entry {
            writer: self.writer.clone(),
            stream: self.stream(subscription),
            delayed: self.delayed(subscription),
            id,
            attempts,
            event,
        }
    }
}

impl Transport for RedisStreams {
    fn declare<'a>(
        &'a self,
        subscriptions: &'a [String],
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            for subscription in subscriptions {
                self.create_group(subscription).await?;
                // Blocking reads get a connection each: a blocked connection serves no one else.
                let reader = ConnectionManager::new(self.client.clone())
                    .await
                    .map_err(error)?;
                self.readers.lock().expect("readers lock").insert(
                    subscription.clone(),
                    Arc::new(tokio::sync::Mutex::new(reader)),
                );
            }
            Ok(())
        })
    }

    fn send<'a>(
        &'a self,
        subscription: &'a str,
        event: &'a PublishedEvent,
        _message_id: &'a str,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            let event = cloud_event(event).to_string();
            let _: String = self
                .writer
                .clone()
                .xadd(
                    self.stream(subscription),
                    "*",
                    &[("event", event.as_str()), ("attempts", "0")],
                )
                .await
                .map_err(error)?;
            Ok(())
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            let _: String = ::redis::cmd("PING")
                .query_async(&mut self.writer.clone())
                .await
                .map_err(error)?;
            Ok(())
        })
    }

    fn backlog<'a>(&'a self, subscription: &'a str) -> BoxFuture<'a, Result<u64, TransportError>> {
        Box::pin(async move {
            let mut writer = self.writer.clone();
            // Entries leave the stream when they are acknowledged: its length is what waits
            // and what is handed out; delayed retries wait in the sorted set.
            let waiting: u64 = writer
                .xlen(self.stream(subscription))
                .await
                .map_err(error)?;
            let delayed: u64 = writer
                .zcard(self.delayed(subscription))
                .await
                .map_err(error)?;
            Ok(waiting + delayed)
        })
    }

    fn receive<'a>(
        &'a self,
        subscription: &'a str,
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<Received>, TransportError>> {
        Box::pin(async move {
            let stream = self.stream(subscription);
            let reader = self
                .readers
                .lock()
                .expect("readers lock")
                .get(subscription)
                .cloned()
                .ok_or_else(|| error(format!("subscription `{subscription}` not declared")))?;
            let mut reader = reader.lock().await;
            let _: usize = self
                .promote
                .key(&stream)
                .key(self.delayed(subscription))
                .arg(now_ms())
                .arg(PROMOTE_BATCH)
                .invoke_async(&mut *reader)
                .await
                .map_err(error)?;
            // Entries a consumer that died left pending.
            let claimed: Result<StreamAutoClaimReply, _> = reader
                .xautoclaim_options(
                    &stream,
                    GROUP,
                    &self.consumer,
                    self.claim_after.as_millis() as u64,
                    "0-0",
                    StreamAutoClaimOptions::default().count(max),
                )
                .await;
            let claimed = match claimed {
                // A server that restarted without persistence lost the group: make it again.
                Err(e) if e.code() == Some("NOGROUP") => {
                    self.create_group(subscription).await?;
                    return Ok(Vec::new());
                }
                other => other.map_err(error)?,
            };
            let mut entries = claimed.claimed;
            if entries.is_empty() {
                // Short blocks, so that a retry falling due is promoted soon.
                let block = wait.min(Duration::from_millis(200)).as_millis() as usize;
                let options = StreamReadOptions::default()
                    .group(GROUP, &self.consumer)
                    .count(max)
                    .block(block.max(1));
                let read: Option<StreamReadReply> = reader
                    .xread_options(&[&stream], &[">"], &options)
                    .await
                    .map_err(error)?;
                entries = read
                    .into_iter()
                    .flat_map(|reply| reply.keys)
                    .flat_map(|key| key.ids)
                    .collect();
            }
            Ok(entries
                .into_iter()
                .filter_map(|entry| self.received(subscription, entry))
                .collect())
        })
    }
}

impl RedisStreams {
    /// The delivery an entry carries; `None` for one that is not a flowhost event, which is
    /// logged and acknowledged: no attempt would ever handle it.
    fn received(&self, subscription: &str, entry: StreamId) -> Option<Received> {
        let raw: Option<String> = entry.get("event");
        let attempts: u32 = entry.get("attempts").unwrap_or(0);
        let parsed = raw.as_deref().map(|raw| from_cloud_event(raw.as_bytes()));
        let (raw, event) = match (raw.clone(), parsed) {
            (Some(raw), Some(Ok(event))) => (raw, event),
            _ => {
                tracing::error!(subscription, id = %entry.id, "dropping a stream entry that is not a flowhost event");
                let settle = self.settle_with(subscription, entry.id, attempts, String::new());
                tokio::spawn(Box::new(settle).ack());
                return None;
            }
        };
        Some(Received {
            event,
            attempts,
            settle: Box::new(self.settle_with(subscription, entry.id, attempts, raw)),
        })
    }
}

/// A stream entry being handled.
struct Entry {
    writer: ConnectionManager,
    stream: String,
    delayed: String,
    id: String,
    attempts: u32,
    /// The event as the entry holds it, for a retry.
    event: String,
}

impl Entry {
    async fn done(mut self) -> Result<(), TransportError> {
        let _: usize = self
            .writer
            .xack(&self.stream, GROUP, &[&self.id])
            .await
            .map_err(error)?;
        let _: usize = self
            .writer
            .xdel(&self.stream, &[&self.id])
            .await
            .map_err(error)?;
        Ok(())
    }
}

impl Settle for Entry {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin(self.done())
    }

    fn retry(
        self: Box<Self>,
        delay: Duration,
        _error: String,
    ) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin(async move {
            // Scheduled before the entry is acked: a crash between repeats, never loses.
            let member = serde_json::json!({
                "event": self.event,
                "attempts": self.attempts + 1,
                // Two retries of one event must not collapse into one member.
                "id": self.id,
            })
            .to_string();
            let due = now_ms() + delay.as_millis() as u64;
            let _: usize = self
                .writer
                .clone()
                .zadd(&self.delayed, member, due)
                .await
                .map_err(error)?;
            self.done().await
        })
    }

    fn give_up(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin(self.done())
    }
}
