//! The dispatcher: relays durable outbox entries to subscription queues and drives each
//! queue (the embedded transport, on sled).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Outbox, SubscriptionConfig, default_concurrency, delivery_retry};
use crate::Runtime;
use crate::bindings::types::Event;
use crate::capabilities::events::TopicPattern;
use crate::plugins::PluginRegistry;
use crate::runtime::{Plugin, World};
use crate::saga::{Engine, RetryPolicy, WorkflowConfig};
use crate::store::events::{DeadLetter, Delivery, EventStore, PublishedEvent};
use crate::store::{StoreError, now_ms};

/// Outbox entries relayed per pass.
const RELAY_BATCH: usize = 256;
/// How often the relay looks again while a gated entry waits for its journal entry.
const GATE_POLL: Duration = Duration::from_millis(20);
/// Longest a queue worker sleeps without looking.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Where a subscription's events go.
enum Target {
    /// `event-handler.handle` of this plugin.
    Handler(Arc<Plugin>),
    /// A run of this workflow per event.
    Workflow(String),
}

/// A subscription, resolved.
struct Subscription {
    name: String,
    pattern: TopicPattern,
    target: Target,
    retry: RetryPolicy,
    concurrency: usize,
    /// Wakes its worker when the relay queued something.
    queued: Notify,
}

/// The dispatcher. Shared by the API (dead letters) and its own tasks.
pub struct Dispatcher {
    outbox: Arc<Outbox>,
    subscriptions: Vec<Arc<Subscription>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Dispatcher {
    /// Resolves `subscriptions` (handler plugins from `plugins`) and the triggers of
    /// `workflows`. Fails naming the key if a handler is unknown or not a `handler-plugin`,
    /// or a pattern is malformed.
    pub fn new(
        outbox: Arc<Outbox>,
        subscriptions: &BTreeMap<String, SubscriptionConfig>,
        workflows: &BTreeMap<String, WorkflowConfig>,
        plugins: &PluginRegistry,
    ) -> Result<Self, String> {
        Ok(Self {
            outbox,
            subscriptions: resolve(subscriptions, workflows, plugins)?,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        })
    }

    /// The outbox it relays from.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Drops outbox entries a crash left behind: events of step attempts whose result was
    /// never written. Call before anything writes to the outbox in this process.
    pub fn drop_orphans(&self) -> Result<usize, StoreError> {
        let store = self.store();
        let mut dropped = 0;
        for entry in store.outbox_pending(usize::MAX)? {
            if let Some(gate) = &entry.gate
                && !store.gate_open(gate)?
            {
                store.outbox_remove(&entry.event.id)?;
                dropped += 1;
            }
        }
        if dropped > 0 {
            tracing::info!(
                dropped,
                "dropped events of step attempts whose result was lost"
            );
        }
        Ok(dropped)
    }

    /// Starts the relay and one worker per subscription.
    pub fn start(self: &Arc<Self>, runtime: Arc<Runtime>, engine: Engine) {
        let relay = self.clone();
        self.tasks.spawn(async move { relay.relay().await });
        for subscription in &self.subscriptions {
            let worker = Worker {
                dispatcher: self.clone(),
                subscription: subscription.clone(),
                runtime: runtime.clone(),
                engine: engine.clone(),
            };
            self.tasks.spawn(async move { worker.run().await });
        }
    }

    /// Stops relaying and delivering; deliveries in flight finish first. Whatever is left
    /// stays queued for the next start.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Dead letters, newest first.
    pub fn dead_letters(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        self.store().dead_letters(limit, cursor)
    }

    /// Queues a dead letter's event for its subscription again, with fresh attempts.
    /// `None` if there is no such dead letter.
    pub fn redeliver(&self, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        let Some(letter) = self.store().exhume(id)? else {
            return Ok(None);
        };
        self.store().enqueue(&Delivery {
            subscription: letter.subscription.clone(),
            event: letter.event.clone(),
            attempts: 0,
            due_ms: now_ms(),
            error: None,
        })?;
        if let Some(subscription) = self
            .subscriptions
            .iter()
            .find(|s| s.name == letter.subscription)
        {
            subscription.queued.notify_one();
        }
        Ok(Some(letter))
    }

    fn store(&self) -> &Arc<dyn EventStore> {
        self.outbox.store()
    }

    /// Moves durable outbox entries to the queues of their subscriptions, for ever.
    async fn relay(&self) {
        while !self.shutdown.is_cancelled() {
            let wait = match self.relay_once().await {
                Ok(Pass::Idle) => IDLE_POLL,
                Ok(Pass::Waiting) => GATE_POLL,
                Ok(Pass::Relayed) => continue,
                Err(error) => {
                    tracing::warn!(%error, "event relay failed; trying again");
                    IDLE_POLL
                }
            };
            tokio::select! {
                () = self.outbox.written() => {}
                () = tokio::time::sleep(wait) => {}
                () = self.shutdown.cancelled() => return,
            }
        }
    }

    async fn relay_once(&self) -> Result<Pass, StoreError> {
        let store = self.store();
        let entries = store.outbox_pending(RELAY_BATCH)?;
        if entries.is_empty() {
            return Ok(Pass::Idle);
        }
        // Everything read above was written before this flush began: durable after it.
        store.flush().await?;
        let mut pass = Pass::Waiting;
        for entry in entries {
            if let Some(gate) = &entry.gate
                && !store.gate_open(gate)?
            {
                // The step's journal entry is being written; it comes next.
                continue;
            }
            for subscription in &self.subscriptions {
                if subscription.pattern.matches(&entry.event.topic) {
                    store.enqueue(&Delivery {
                        subscription: subscription.name.clone(),
                        event: entry.event.clone(),
                        attempts: 0,
                        due_ms: now_ms(),
                        error: None,
                    })?;
                    subscription.queued.notify_one();
                }
            }
            store.outbox_remove(&entry.event.id)?;
            pass = Pass::Relayed;
        }
        Ok(pass)
    }
}

/// Checks `subscriptions` and the triggers of `workflows` as [`Dispatcher::new`] does:
/// what `flowhost check` reports.
pub fn check_subscriptions(
    subscriptions: &BTreeMap<String, SubscriptionConfig>,
    workflows: &BTreeMap<String, WorkflowConfig>,
    plugins: &PluginRegistry,
) -> Result<(), String> {
    resolve(subscriptions, workflows, plugins).map(drop)
}

/// The subscriptions of the configuration and of the workflows' triggers, or an error
/// naming the key.
fn resolve(
    subscriptions: &BTreeMap<String, SubscriptionConfig>,
    workflows: &BTreeMap<String, WorkflowConfig>,
    plugins: &PluginRegistry,
) -> Result<Vec<Arc<Subscription>>, String> {
    let mut resolved = Vec::new();
    for (name, config) in subscriptions {
        let key = format!("subscriptions.{name}");
        let pattern =
            TopicPattern::parse(&config.topic).map_err(|e| format!("{key}.topic: {e}"))?;
        let plugin = plugins
            .get(&config.handler)
            .ok_or_else(|| format!("{key}.handler: unknown plugin `{}`", config.handler))?;
        if !plugin.worlds().contains(&World::Handler) {
            return Err(format!(
                "{key}.handler: plugin `{}` does not implement handler-plugin",
                config.handler
            ));
        }
        if config.retry.attempts == 0 || config.concurrency == 0 {
            return Err(format!(
                "{key}: retry.attempts and concurrency must be at least 1"
            ));
        }
        resolved.push(Arc::new(Subscription {
            name: name.clone(),
            pattern,
            target: Target::Handler(plugin.clone()),
            retry: config.retry,
            concurrency: config.concurrency,
            queued: Notify::new(),
        }));
    }
    for (name, workflow) in workflows {
        let Some(topic) = &workflow.trigger else {
            continue;
        };
        let pattern =
            TopicPattern::parse(topic).map_err(|e| format!("workflows.{name}.trigger: {e}"))?;
        resolved.push(Arc::new(Subscription {
            name: format!("workflow.{name}"),
            pattern,
            target: Target::Workflow(name.clone()),
            retry: delivery_retry(),
            concurrency: default_concurrency(),
            queued: Notify::new(),
        }));
    }
    Ok(resolved)
}

/// What one relay pass did.
enum Pass {
    /// The outbox was empty.
    Idle,
    /// Only gated entries wait.
    Waiting,
    /// Something moved; look again at once.
    Relayed,
}

/// Drives one subscription's queue.
struct Worker {
    dispatcher: Arc<Dispatcher>,
    subscription: Arc<Subscription>,
    runtime: Arc<Runtime>,
    engine: Engine,
}

impl Worker {
    async fn run(self) {
        let this = Arc::new(self);
        while !this.dispatcher.shutdown.is_cancelled() {
            let wait = match this.deliver_due().await {
                Ok(Some(wait)) => wait,
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(subscription = %this.subscription.name, %error, "delivery failed; trying again");
                    IDLE_POLL
                }
            };
            tokio::select! {
                () = this.subscription.queued.notified() => {}
                () = tokio::time::sleep(wait) => {}
                () = this.dispatcher.shutdown.cancelled() => return,
            }
        }
    }

    /// Delivers what is due, concurrently up to the subscription's limit. `None` if it
    /// delivered something (look again at once), else how long until the next is due.
    async fn deliver_due(self: &Arc<Self>) -> Result<Option<Duration>, StoreError> {
        let store = self.dispatcher.store();
        let name = &self.subscription.name;
        let now = now_ms();
        let due = store.due(name, now, self.subscription.concurrency)?;
        if due.is_empty() {
            let wait = store.next_due(name)?.map_or(IDLE_POLL, |at| {
                Duration::from_millis(at.saturating_sub(now))
            });
            return Ok(Some(wait.min(IDLE_POLL)));
        }
        let mut deliveries = JoinSet::new();
        for delivery in due {
            let this = self.clone();
            deliveries.spawn(async move { this.deliver(delivery).await });
        }
        while let Some(done) = deliveries.join_next().await {
            done.map_err(|e| StoreError::Backend(format!("delivery task: {e}")))??;
        }
        Ok(None)
    }

    /// One attempt; then the delivery leaves the queue, comes back later, or is buried.
    /// The new record is written before the old one goes, so a crash repeats, never loses.
    async fn deliver(&self, delivery: Delivery) -> Result<(), StoreError> {
        let store = self.dispatcher.store();
        let outcome = self.attempt(&delivery.event).await;
        if let Err(error) = outcome {
            let attempts = delivery.attempts + 1;
            let retry = &self.subscription.retry;
            tracing::debug!(subscription = %self.subscription.name, event = %delivery.event.id, attempts, %error, "delivery failed");
            if attempts >= retry.attempts {
                store.bury(&DeadLetter {
                    id: ulid::Ulid::new().to_string(),
                    subscription: delivery.subscription.clone(),
                    event: delivery.event.clone(),
                    attempts,
                    error,
                    dead_ms: now_ms(),
                })?;
            } else {
                store.enqueue(&Delivery {
                    attempts,
                    due_ms: now_ms() + retry.backoff(attempts + 1).as_millis() as u64,
                    error: Some(error),
                    ..delivery.clone()
                })?;
            }
        }
        store.dequeue(&delivery)
    }

    async fn attempt(&self, event: &PublishedEvent) -> Result<(), String> {
        match &self.subscription.target {
            Target::Handler(plugin) => {
                match self
                    .runtime
                    .handle(plugin, &self.subscription.name, &wit_event(event))
                    .await
                {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(message)) => Err(message),
                    Err(error) => Err(error.to_string()),
                }
            }
            Target::Workflow(workflow) => {
                let input = match serde_json::from_str(&event.data) {
                    Ok(Value::Object(map)) => map,
                    Ok(other) => Map::from_iter([("data".to_owned(), other)]),
                    Err(e) => return Err(format!("event data is not JSON: {e}")),
                };
                // One run per event: a redelivery finds the run it started.
                let id = format!("{workflow}.{}", event.id);
                self.engine
                    .start(workflow, input, Some(id), None)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// The WIT view of an event.
fn wit_event(event: &PublishedEvent) -> Event {
    Event {
        id: event.id.clone(),
        topic: event.topic.clone(),
        source: event.source.clone(),
        time_ms: event.time_ms,
        correlation_id: event.correlation_id.clone(),
        data: event.data.clone(),
    }
}
