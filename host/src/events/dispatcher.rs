//! The dispatcher: relays durable outbox entries to the queues of their subscriptions on the
//! [`Transport`], and drives each subscription's queue.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::transport::{Received, Transport, TransportError};
use super::{Outbox, SubscriptionConfig, Trigger, default_concurrency, delivery_retry};
use crate::Runtime;
use crate::bindings::types::Event;
use crate::capabilities::events::{InvalidTopic, TopicPattern};
use crate::model::retry::seed;
use crate::model::{
    DeadLetter, Gate, PublishedEvent, RetryPolicy, RunId, WorkflowDefinition, now_ms,
};
use crate::plugins::PluginRegistry;
use crate::store::{EventStore, StoreError};
use crate::telemetry::metrics::{DEAD_LETTERS, DELIVERIES, EVENTS_RELAYED, RELAY_LAG};
use crate::telemetry::trace::{Kind, Span};

/// Outbox entries relayed per pass.
const RELAY_BATCH: usize = 256;
/// Most outbox entries one pass looks at to find some whose gate is open.
const RELAY_SCAN: usize = 16 * RELAY_BATCH;
/// How long the relay holds the outbox entries it read against the relays of other nodes
/// sharing the store: what one that dies leaves waits this long for the others.
const RELAY_HOLD: Duration = Duration::from_secs(30);
/// How often the relay looks again while a gated entry waits for its journal entry.
const GATE_POLL: Duration = Duration::from_millis(20);
/// Longest the relay sleeps without looking, and a worker waits in one receive.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Where a subscription's events go.
enum Target {
    /// `event-handler.handle` of this plugin's current version.
    Handler(String),
    /// A run of this workflow per event.
    Workflow(String),
    /// The runs whose await steps wait for the event ([`Trigger::resume`]).
    Awaits,
}

/// The queue of events that runs await.
const AWAITS: &str = "flowhost.awaits";

/// A subscription, resolved.
struct Subscription {
    name: String,
    /// The pattern as configured.
    topic: String,
    pattern: TopicPattern,
    target: Target,
    retry: RetryPolicy,
    concurrency: usize,
}

/// A subscription or trigger that cannot be resolved: the configuration key and why.
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    /// A topic pattern does not parse.
    #[error("{key}: {source}")]
    Pattern {
        /// The key (`subscriptions.<name>.topic`, `workflows.<name>.trigger`).
        key: String,
        /// Why.
        source: InvalidTopic,
    },
    /// The handler names no configured plugin.
    #[error("{key}.handler: unknown plugin `{handler}`")]
    UnknownHandler {
        /// `subscriptions.<name>`.
        key: String,
        /// The plugin it names.
        handler: String,
    },
    /// `retry.attempts` or `concurrency` is zero.
    #[error("{key}: retry.attempts and concurrency must be at least 1")]
    Zero {
        /// `subscriptions.<name>`.
        key: String,
    },
}

/// The dispatcher. Shared by the API (dead letters) and its own tasks.
pub struct Dispatcher {
    outbox: Arc<Outbox>,
    plugins: Arc<PluginRegistry>,
    transport: Arc<dyn Transport>,
    subscriptions: Vec<Arc<Subscription>>,
    /// The engine, once started: the relay asks it which events runs await.
    trigger: std::sync::OnceLock<Arc<dyn Trigger>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Dispatcher {
    /// Resolves `subscriptions` and the triggers of `workflows`. Fails naming the key if a
    /// handler is unknown or a pattern is malformed; the registry has checked that each
    /// handler is a `handler-plugin`. Each delivery runs the handler's current version.
    pub fn new(
        outbox: Arc<Outbox>,
        transport: Arc<dyn Transport>,
        subscriptions: &BTreeMap<String, SubscriptionConfig>,
        workflows: &BTreeMap<String, WorkflowDefinition>,
        plugins: Arc<PluginRegistry>,
    ) -> Result<Self, SubscriptionError> {
        let mut subscriptions = resolve(subscriptions, workflows, &|name| {
            plugins.current(name).is_some()
        })?;
        subscriptions.push(Arc::new(Subscription {
            name: AWAITS.to_owned(),
            topic: "#".to_owned(),
            pattern: TopicPattern::parse("#").expect("a pattern"),
            target: Target::Awaits,
            retry: delivery_retry(),
            concurrency: default_concurrency(),
        }));
        Ok(Self {
            outbox,
            plugins,
            transport,
            subscriptions,
            trigger: std::sync::OnceLock::new(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        })
    }

    /// The outbox it relays from.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Declares every subscription's queue on the transport, then starts the relay and one
    /// worker per subscription.
    pub async fn start(
        self: &Arc<Self>,
        runtime: Arc<Runtime>,
        trigger: Arc<dyn Trigger>,
    ) -> Result<(), TransportError> {
        let names: Vec<String> = self.subscriptions.iter().map(|s| s.name.clone()).collect();
        self.transport.declare(&names).await?;
        let _ = self.trigger.set(trigger.clone());
        let relay = self.clone();
        self.tasks.spawn(async move { relay.relay().await });
        for subscription in &self.subscriptions {
            let worker = Worker {
                dispatcher: self.clone(),
                subscription: subscription.clone(),
                runtime: runtime.clone(),
                trigger: trigger.clone(),
            };
            self.tasks.spawn(async move { worker.run().await });
        }
        Ok(())
    }

    /// Stops relaying and delivering; deliveries in flight finish first. Whatever is left
    /// stays queued for the next start.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Every subscription: the configured ones, the workflows' triggers, and the queue of
    /// events that runs await.
    pub fn subscriptions(&self) -> Vec<SubscriptionInfo> {
        self.subscriptions
            .iter()
            .map(|s| SubscriptionInfo {
                name: s.name.clone(),
                topic: s.topic.clone(),
                target: match &s.target {
                    Target::Handler(plugin) => SubscriptionTarget::Handler(plugin.clone()),
                    Target::Workflow(workflow) => SubscriptionTarget::Workflow(workflow.clone()),
                    Target::Awaits => SubscriptionTarget::Awaits,
                },
                attempts: s.retry.attempts,
                concurrency: s.concurrency,
            })
            .collect()
    }

    /// How many events wait in `subscription`'s queue; `None` for an unknown subscription.
    pub async fn backlog(&self, subscription: &str) -> Result<Option<u64>, TransportError> {
        if !self.subscriptions.iter().any(|s| s.name == subscription) {
            return Ok(None);
        }
        self.transport.backlog(subscription).await.map(Some)
    }

    /// Whether the transport's broker answers.
    pub async fn ping(&self) -> Result<(), TransportError> {
        self.transport.ping().await
    }

    /// Dead letters, newest first.
    pub async fn dead_letters(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        self.store().dead_letters(limit, cursor).await
    }

    /// Queues a dead letter's event for its subscription again, with fresh attempts, and
    /// removes the dead letter, durably: both are on disk (or at the broker) on return.
    /// `None` if there is no such dead letter.
    pub async fn redeliver(&self, id: &str) -> Result<Option<DeadLetter>, TransportError> {
        let Some(letter) = self.store().dead_letter(id).await? else {
            return Ok(None);
        };
        let message_id = format!("{}/{}/{}", letter.subscription, letter.event.id, letter.id);
        self.transport
            .send(&letter.subscription, &letter.event, &message_id)
            .await?;
        self.store().exhume(id).await?;
        self.store().flush().await?;
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

    async fn relay_once(&self) -> Result<Pass, TransportError> {
        let store = self.store();
        // Pages on past entries whose gate is closed, so that events stuck behind them (a
        // step whose journal write failed) do not hold up the others.
        let mut released = Vec::new();
        let mut after: Option<String> = None;
        let mut scanned = 0;
        while released.is_empty() && scanned < RELAY_SCAN {
            let page = store
                .outbox_take(after.as_deref(), RELAY_BATCH, RELAY_HOLD)
                .await?;
            let Some(last) = page.last() else {
                break;
            };
            after = Some(last.event.id.clone());
            scanned += page.len();
            // The page's gates in one look.
            let gates: Vec<Gate> = page.iter().filter_map(|e| e.gate.clone()).collect();
            let mut open = store.gates_open(&gates).await?.into_iter();
            for entry in page {
                // A closed gate: what the event waits for is being written; it comes next.
                if entry.gate.is_none() || open.next() == Some(true) {
                    released.push(entry.event);
                }
            }
        }
        if released.is_empty() {
            return Ok(if scanned == 0 {
                Pass::Idle
            } else {
                Pass::Waiting
            });
        }
        // Every entry read above, and every gate found open, was written before this flush
        // began: durable after it. (No flush while only gated entries wait.)
        store.flush().await?;
        // Whether runs await each topic of the batch, asked once per topic.
        let mut awaited = std::collections::HashMap::new();
        if let Some(trigger) = self.trigger.get() {
            for event in &released {
                if !awaited.contains_key(event.topic.as_str()) {
                    let runs_await = trigger.awaits(&event.topic).await;
                    awaited.insert(event.topic.as_str(), runs_await);
                }
            }
        }
        // Every send of the batch at once: a broker acknowledges them together instead of
        // one round trip each. Entries leave the outbox only once all are sent; after a
        // failure (or a crash before they left) the batch goes again: NATS drops a repeat
        // by its message id, the other transports deliver it again, with the same event id
        // (delivery is at least once).
        let sends = released.iter().flat_map(|event| {
            self.subscriptions
                .iter()
                .filter(|subscription| {
                    subscription.pattern.matches(&event.topic)
                        && (!matches!(subscription.target, Target::Awaits)
                            || awaited.get(event.topic.as_str()) == Some(&true))
                })
                .map(move |subscription| async move {
                    let message_id = format!("{}/{}", subscription.name, event.id);
                    self.transport
                        .send(&subscription.name, event, &message_id)
                        .await
                })
        });
        futures_util::future::try_join_all(sends).await?;
        let ids: Vec<&str> = released.iter().map(|event| event.id.as_str()).collect();
        store.outbox_remove_all(&ids).await?;
        let now = now_ms();
        for event in &released {
            let lag = Duration::from_millis(now.saturating_sub(event.time_ms));
            metrics::histogram!(RELAY_LAG).record(lag);
        }
        metrics::counter!(EVENTS_RELAYED).increment(released.len() as u64);
        Ok(Pass::Relayed)
    }
}

/// Checks `subscriptions` and the triggers of `workflows` as [`Dispatcher::new`] does:
/// what `flowhost check` reports.
pub fn check_subscriptions(
    subscriptions: &BTreeMap<String, SubscriptionConfig>,
    workflows: &BTreeMap<String, WorkflowDefinition>,
    is_plugin: &dyn Fn(&str) -> bool,
) -> Result<(), SubscriptionError> {
    resolve(subscriptions, workflows, is_plugin).map(drop)
}

/// The subscriptions of the configuration and of the workflows' triggers, or an error
/// naming the key.
fn resolve(
    subscriptions: &BTreeMap<String, SubscriptionConfig>,
    workflows: &BTreeMap<String, WorkflowDefinition>,
    is_plugin: &dyn Fn(&str) -> bool,
) -> Result<Vec<Arc<Subscription>>, SubscriptionError> {
    let mut resolved = Vec::new();
    for (name, config) in subscriptions {
        let key = format!("subscriptions.{name}");
        let pattern =
            TopicPattern::parse(&config.topic).map_err(|source| SubscriptionError::Pattern {
                key: format!("{key}.topic"),
                source,
            })?;
        if !is_plugin(&config.handler) {
            return Err(SubscriptionError::UnknownHandler {
                key,
                handler: config.handler.clone(),
            });
        }
        if config.retry.attempts == 0 || config.concurrency == 0 {
            return Err(SubscriptionError::Zero { key });
        }
        resolved.push(Arc::new(Subscription {
            name: name.clone(),
            topic: config.topic.clone(),
            pattern,
            target: Target::Handler(config.handler.clone()),
            retry: config.retry,
            concurrency: config.concurrency,
        }));
    }
    for (name, workflow) in workflows {
        let Some(topic) = &workflow.trigger else {
            continue;
        };
        let pattern = TopicPattern::parse(topic).map_err(|source| SubscriptionError::Pattern {
            key: format!("workflows.{name}.trigger"),
            source,
        })?;
        resolved.push(Arc::new(Subscription {
            name: format!("workflow.{name}"),
            topic: topic.clone(),
            pattern,
            target: Target::Workflow(name.clone()),
            retry: delivery_retry(),
            concurrency: default_concurrency(),
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

/// A subscription as operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionInfo {
    /// Its name: the configured one, `workflow.<name>` for a trigger, or `flowhost.awaits`.
    pub name: String,
    /// The topic pattern it takes.
    pub topic: String,
    /// Where its events go.
    pub target: SubscriptionTarget,
    /// Attempts before an event becomes a dead letter.
    pub attempts: u32,
    /// Deliveries in flight at once.
    pub concurrency: usize,
}

/// Where a subscription's events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionTarget {
    /// A handler plugin's `handle`.
    Handler(String),
    /// A new run of a workflow per event.
    Workflow(String),
    /// The runs whose await steps wait for them.
    Awaits,
}

/// Drives one subscription's queue.
struct Worker {
    dispatcher: Arc<Dispatcher>,
    subscription: Arc<Subscription>,
    runtime: Arc<Runtime>,
    trigger: Arc<dyn Trigger>,
}

impl Worker {
    async fn run(self) {
        let this = Arc::new(self);
        let shutdown = this.dispatcher.shutdown.clone();
        while !shutdown.is_cancelled() {
            let received = tokio::select! {
                received = this.dispatcher.transport.receive(
                    &this.subscription.name,
                    this.subscription.concurrency,
                    IDLE_POLL,
                ) => received,
                () = shutdown.cancelled() => return,
            };
            let deliveries = match received {
                Ok(deliveries) => deliveries,
                Err(error) => {
                    tracing::warn!(subscription = %this.subscription.name, %error, "receiving failed; trying again");
                    tokio::select! {
                        () = tokio::time::sleep(IDLE_POLL) => {}
                        () = shutdown.cancelled() => return,
                    }
                    continue;
                }
            };
            // All of them settled before the next receive, so that none is handed out twice.
            let mut in_flight = JoinSet::new();
            for received in deliveries {
                let this = this.clone();
                in_flight.spawn(async move { this.deliver(received).await });
            }
            while let Some(done) = in_flight.join_next().await {
                match done {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        tracing::warn!(subscription = %this.subscription.name, %error, "settling a delivery failed; it comes again");
                    }
                    Err(panic) => {
                        tracing::error!(subscription = %this.subscription.name, error = %panic, "a delivery panicked; it comes again");
                    }
                }
            }
        }
    }

    /// One attempt; then the delivery is done, comes again after the backoff, or, out of
    /// attempts, becomes a dead letter. What the attempt left in the store (a handler's
    /// events, the dead letter) is flushed before the broker hears the delivery is over:
    /// if the flush fails, the delivery is not acknowledged but comes again.
    async fn deliver(&self, received: Received) -> Result<(), TransportError> {
        let Received {
            event,
            attempts,
            settle,
        } = received;
        let attempts = attempts + 1;
        // The delivery is a span of the trace that published the event, whichever host
        // published it. Named by the subscription (configured, so bounded), not the topic
        // (anyone's who publishes), which is an attribute.
        let mut span = Span::start(
            || format!("deliver to {}", self.subscription.name),
            Kind::Consumer,
            event.traceparent.as_deref(),
        );
        if span.is_recording() {
            span.set("subscription", self.subscription.name.clone());
            span.set("topic", event.topic.clone());
            span.set("event_id", event.id.clone());
            span.set("attempt", i64::from(attempts));
        }
        let retry = &self.subscription.retry;
        // The jitter of a delivery's backoff is the event's and the attempt's.
        let event_id = event.id.clone();
        let delay = |attempt: u32| {
            retry.delay(
                attempt,
                seed(&[event_id.as_bytes(), &attempt.to_be_bytes()]),
            )
        };
        let counted = |outcome: &'static str| {
            let subscription = self.subscription.name.clone();
            metrics::counter!(DELIVERIES, "subscription" => subscription, "outcome" => outcome)
                .increment(1);
        };
        let error = match self.attempt(&event, &span).await {
            Ok(published) => match self.dispatcher.outbox.publish(published).await {
                Ok(()) => {
                    counted("ok");
                    return settle.ack().await;
                }
                Err(error) => {
                    tracing::warn!(subscription = %self.subscription.name, event = %event.id, %error, "the handler's events are not durable; the delivery comes again");
                    counted("retry");
                    return settle.retry(delay(attempts + 1), error.to_string()).await;
                }
            },
            Err(error) => error,
        };
        tracing::debug!(subscription = %self.subscription.name, event = %event.id, attempts, %error, "delivery failed");
        span.fail(error.clone());
        if attempts < retry.attempts {
            counted("retry");
            return settle.retry(delay(attempts + 1), error).await;
        }
        let letter = DeadLetter {
            id: ulid::Ulid::new().to_string(),
            subscription: self.subscription.name.clone(),
            event,
            attempts,
            error,
            dead_ms: now_ms(),
        };
        let store = self.dispatcher.store();
        let buried = async {
            store.bury(&letter).await?;
            store.flush().await
        };
        if let Err(error) = buried.await {
            tracing::warn!(subscription = %self.subscription.name, event = %letter.event.id, %error, "the dead letter is not durable; the delivery comes again");
            // The delivery comes again and gives up again: one dead letter, not two.
            let _ = store.exhume(&letter.id).await;
            counted("retry");
            return settle.retry(delay(attempts + 1), letter.error).await;
        }
        counted("dead");
        metrics::counter!(DEAD_LETTERS, "subscription" => letter.subscription.clone()).increment(1);
        settle.give_up().await
    }

    /// Runs the delivery's target, in `delivery`'s trace; a handler's answer comes with what
    /// it published.
    async fn attempt(
        &self,
        event: &PublishedEvent,
        delivery: &Span,
    ) -> Result<Vec<PublishedEvent>, String> {
        match &self.subscription.target {
            Target::Handler(name) => {
                let Some(plugin) = self.dispatcher.plugins.current(name) else {
                    return Err(format!("plugin `{name}` is not loaded"));
                };
                let handler = Span::start(
                    || format!("handle {name}"),
                    Kind::Internal,
                    delivery.traceparent().as_deref(),
                );
                match self
                    .runtime
                    .deliver(
                        &plugin,
                        &self.subscription.name,
                        &wit_event(event),
                        handler.traceparent(),
                    )
                    .await
                {
                    Ok(answer) => answer.result.map(|()| answer.events),
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
                let id =
                    RunId::parse(&format!("{workflow}.{}", event.id)).map_err(|e| e.to_string())?;
                // The run is part of the delivery's trace.
                self.trigger
                    .start(workflow, input, id, delivery.traceparent())
                    .await
                    .map(|()| Vec::new())
                    .map_err(|e| e.to_string())
            }
            Target::Awaits => self
                .trigger
                .resume(event)
                .await
                .map(|()| Vec::new())
                .map_err(|e| e.to_string()),
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
