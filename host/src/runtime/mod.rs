//! The WebAssembly runtime: one engine, plugins compiled once, a fresh store per call.
//!
//! - [`Runtime::new`] builds the engine (component model, async, pooling allocator, epoch
//!   interruption driven by one ticker thread) and the linker (WASI with nothing granted,
//!   `wasi:http` denied, the `flowhost:plugin` capabilities).
//! - [`Runtime::load`] compiles a component (or loads its compiled code from the disk cache,
//!   see [`compile`]), checks which world it implements and pre-instantiates it.
//! - [`Runtime::execute`], [`Runtime::compensate`] and [`Runtime::handle`] run one export in
//!   a fresh store with the plugin's memory cap and deadline. A trap, the deadline or the
//!   cap fails that call with a [`CallError`] naming the plugin and the cause; the host
//!   carries on.
//! - [`state`]: what one call's store holds ([`HostState`]).
//!
//! The runtime takes its own section, `[runtime]` ([`RuntimeConfig`]); a plugin's grants and
//! limits come to it resolved, as [`PluginSettings`].

pub mod compile;
mod config;
pub(crate) mod limits;
mod plugin;
pub mod state;
pub(crate) mod wasi;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::component::Linker;
use wasmtime::{
    Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap, UpdateDeadline,
};

pub use self::compile::CompiledCache;
pub use self::config::{InvalidRuntime, RuntimeConfig};
pub use self::plugin::{LoadError, Plugin, World};
use self::state::{CallContext, HostState};
use crate::bindings::StepPlugin;
use crate::bindings::types::{Event, StepError, StepInfo};
use crate::capabilities::events::TopicPattern;
use crate::capabilities::{self, Capabilities};
pub use crate::model::Direction;
use crate::model::PublishedEvent;
use crate::model::recording::{RecordedCall, RecordedRead, Recording};
use crate::telemetry::metrics::{PLUGIN_CALL_DURATION, PLUGIN_CALLS};

/// How often the epoch ticks. A running guest yields to the async executor once per tick,
/// so a busy plugin cannot starve the host's other tasks for longer than this.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Largest native stack a guest may use, below the fiber's stack so that exhaustion is a
/// clean `StackOverflow` trap.
const MAX_WASM_STACK: usize = 512 * 1024;

/// What a plugin is granted and limited to, resolved from its configuration.
#[derive(Debug, Clone)]
pub struct PluginSettings {
    /// The plugin's name in the configuration.
    pub name: Arc<str>,
    /// Services it may call.
    pub services: Arc<[String]>,
    /// Topic patterns it may publish on.
    pub publish: Arc<[TopicPattern]>,
    /// Its cache namespace.
    pub cache_namespace: Arc<str>,
    /// Its `config` interface values.
    pub config: Arc<BTreeMap<String, String>>,
    /// Cap per linear memory, in bytes.
    pub memory_limit_bytes: usize,
    /// Deadline of one call.
    pub timeout: Duration,
}

impl PluginSettings {
    /// Settings for a plugin that is granted nothing, with the runtime's default limits:
    /// what `flowhost plugin check` and tests use.
    pub fn ungranted(name: &str, runtime: &RuntimeConfig) -> Self {
        Self {
            name: name.into(),
            services: Arc::new([]),
            publish: Arc::new([]),
            cache_namespace: name.into(),
            config: Arc::default(),
            memory_limit_bytes: runtime.memory_limit_mib as usize * 1024 * 1024,
            timeout: runtime.call_timeout,
        }
    }
}

/// Why a plugin call produced no answer from the plugin. Each variant names the plugin;
/// all of them fail this call only.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The call ran past the plugin's deadline.
    #[error("plugin `{plugin}` exceeded its deadline of {limit:?}")]
    Deadline {
        /// The plugin.
        plugin: Arc<str>,
        /// The deadline.
        limit: Duration,
    },
    /// The plugin asked for more memory than its cap.
    #[error("plugin `{plugin}` exceeded its memory limit of {limit_mib} MiB")]
    MemoryLimit {
        /// The plugin.
        plugin: Arc<str>,
        /// The cap.
        limit_mib: usize,
    },
    /// The plugin trapped: a panic, an out-of-bounds access, stack exhaustion...
    #[error("plugin `{plugin}` trapped: {trap}")]
    Trap {
        /// The plugin.
        plugin: Arc<str>,
        /// The trap code.
        trap: Trap,
        /// The full error with the guest backtrace, for logs.
        detail: String,
    },
    /// The plugin does not export what was called.
    #[error("plugin `{plugin}` does not implement `{world}`")]
    WrongWorld {
        /// The plugin.
        plugin: Arc<str>,
        /// The world the call needs.
        world: World,
    },
    /// A step returned more than `runtime.max-output-bytes`.
    #[error(
        "plugin `{plugin}` returned {size} bytes of output, over runtime.max-output-bytes ({limit})"
    )]
    OutputTooLarge {
        /// The plugin.
        plugin: Arc<str>,
        /// What it returned, in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The events of a successful call could not be handed on.
    #[error("plugin `{plugin}`: {source}")]
    Sink {
        /// The plugin.
        plugin: Arc<str>,
        /// The sink's error.
        source: capabilities::events::SinkError,
    },
    /// Instantiation or the host failed for another reason.
    #[error("plugin `{plugin}` failed: {detail}")]
    Failed {
        /// The plugin.
        plugin: Arc<str>,
        /// What happened.
        detail: String,
    },
}

/// The engine, linker and capabilities every plugin call shares.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    capabilities: Capabilities,
    compiled: Option<CompiledCache>,
    config: RuntimeConfig,
    _ticker: EpochTicker,
}

/// Where the runtime's sizes and caches come from besides `[runtime]`.
#[derive(Debug, Clone, Default)]
pub struct RuntimeSetup {
    /// The largest memory cap any plugin gets, in MiB, which sizes the instance pool's
    /// slots; at least `runtime.memory-limit-mib`.
    pub max_memory_limit_mib: u32,
    /// Where compiled code is cached, when `runtime.compiled-cache` is on.
    pub compiled_dir: Option<PathBuf>,
}

impl Runtime {
    /// Builds the engine and linker for `config`, with `capabilities` behind the WIT
    /// interfaces.
    pub fn new(
        config: &RuntimeConfig,
        setup: &RuntimeSetup,
        capabilities: Capabilities,
    ) -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config(config, setup))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        capabilities::add_to_linker(&mut linker)?;
        let compiled = setup
            .compiled_dir
            .as_ref()
            .filter(|_| config.compiled_cache)
            .map(|dir| CompiledCache::new(dir.clone(), &engine))
            .transpose()?;
        let ticker = EpochTicker::start(engine.clone());
        Ok(Self {
            engine,
            linker,
            capabilities,
            compiled,
            config: config.clone(),
            _ticker: ticker,
        })
    }

    /// `[runtime]`: the limits a plugin gets unless its own section says otherwise.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// The engine, for callers that inspect components.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The shared capabilities.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// Compiles (or loads from the compiled cache) and pre-instantiates a plugin.
    pub fn load(&self, settings: PluginSettings, wasm: &[u8]) -> Result<Plugin, LoadError> {
        Plugin::load(self, settings, wasm)
    }

    /// Forgets the compiled code of a component that is gone from the registry.
    pub fn forget(&self, digest: &str) {
        if let Some(cache) = &self.compiled {
            cache.remove(digest);
        }
    }

    /// Runs `saga-step.execute` in a fresh instance. The outer `Result` is the host's
    /// verdict, the inner one the plugin's. Events published by a call that returns `Ok`
    /// go to the sink; those of any other call are dropped.
    pub async fn execute(
        &self,
        plugin: &Plugin,
        info: &StepInfo,
        ctx: &str,
    ) -> Result<Result<String, StepError>, CallError> {
        self.call_step(plugin, Direction::Execute, info, ctx, None)
            .await
    }

    /// Runs `saga-step.compensate` in a fresh instance; otherwise as [`Self::execute`].
    pub async fn compensate(
        &self,
        plugin: &Plugin,
        info: &StepInfo,
        ctx: &str,
    ) -> Result<Result<String, StepError>, CallError> {
        self.call_step(plugin, Direction::Compensate, info, ctx, None)
            .await
    }

    /// Runs `saga-step.execute` or `compensate` in a fresh instance, with the deadline
    /// `timeout` instead of the plugin's when given; otherwise as [`Self::execute`].
    pub async fn call_step(
        &self,
        plugin: &Plugin,
        direction: Direction,
        info: &StepInfo,
        ctx: &str,
        timeout: Option<Duration>,
    ) -> Result<Result<String, StepError>, CallError> {
        let mut warm = WarmInstance::default();
        let options = CallOptions {
            timeout,
            ..CallOptions::default()
        };
        let answer = self
            .call_step_in(&mut warm, plugin, direction, info, ctx, options)
            .await?;
        self.release(plugin, answer.events).await?;
        Ok(answer.result)
    }

    /// As [`Self::call_step`], but in `warm`'s instance when it is one of `plugin`, leaving
    /// this call's instance in `warm` unless the call failed, and handing back what the
    /// call published instead of releasing it: the saga engine releases a step's events
    /// once the step's result is written. `options` may shorten its deadline, make it part
    /// of a trace, and record its service calls.
    pub async fn call_step_in(
        &self,
        warm: &mut WarmInstance,
        plugin: &Plugin,
        direction: Direction,
        info: &StepInfo,
        ctx: &str,
        options: CallOptions,
    ) -> Result<StepAnswer, CallError> {
        let started = Instant::now();
        let answer = self
            .step_call(warm, plugin, direction, info, ctx, options)
            .await;
        let export = match direction {
            Direction::Execute => 0,
            Direction::Compensate => 1,
        };
        record_call(plugin, export, started, &answer);
        answer
    }

    /// [`Self::call_step_in`], unmeasured.
    async fn step_call(
        &self,
        warm: &mut WarmInstance,
        plugin: &Plugin,
        direction: Direction,
        info: &StepInfo,
        ctx: &str,
        options: CallOptions,
    ) -> Result<StepAnswer, CallError> {
        let CallOptions {
            timeout,
            traceparent,
            record,
            replay,
        } = options;
        let limit = timeout.unwrap_or(plugin.settings().timeout);
        let pre = plugin.step_pre().ok_or_else(|| CallError::WrongWorld {
            plugin: plugin.name().clone(),
            world: World::Step,
        })?;
        let call = CallContext {
            run_id: Some(info.run_id.as_str().into()),
            step: Some(info.step.as_str().into()),
            idempotency_key: Some(info.idempotency_key.clone()),
            request_id: info.run_id.clone(),
            traceparent,
            record,
            replay,
        };
        let (mut store, mut instance) = match warm.take_for(plugin) {
            Some(Warm {
                mut store,
                instance,
                ..
            }) => {
                store
                    .data_mut()
                    .next_call(&self.capabilities, plugin.settings(), &call);
                store.set_epoch_deadline(1);
                (store, Some(instance))
            }
            None => (self.store(plugin, &call), None),
        };
        let ctx = ctx.to_owned();
        let outcome = tokio::time::timeout(limit, async {
            let step = match &instance {
                Some(step) => step,
                None => instance.insert(pre.instantiate_async(&mut store).await?),
            };
            let step = step.flowhost_plugin_saga_step();
            match direction {
                Direction::Execute => step.call_execute(&mut store, info, &ctx).await,
                Direction::Compensate => step.call_compensate(&mut store, info, &ctx).await,
            }
        })
        .await;
        let (result, events) = answer(plugin, &mut store, limit, outcome)?;
        let calls = store.data_mut().call.services.take_recorded();
        let reads = store.data_mut().call.cache.take_reads();
        let settings = store.data_mut().call.config.take_reads();
        if let Ok(output) = &result
            && output.len() > self.config.max_output_bytes
        {
            return Err(CallError::OutputTooLarge {
                plugin: plugin.name().clone(),
                size: output.len(),
                limit: self.config.max_output_bytes,
            });
        }
        // The call returned normally, so the instance is sound; one that hit its memory cap
        // is not kept, so that the cap's verdict stays about one call.
        if let Some(instance) = instance
            && !store.data().limiter.hit()
        {
            warm.slot = Some(Warm {
                plugin: (plugin.name().clone(), plugin.digest().to_owned()),
                store,
                instance,
            });
        }
        Ok(Answer {
            result,
            events,
            calls,
            reads,
            settings,
        })
    }

    /// Runs `event-handler.handle` in a fresh instance; otherwise as [`Self::execute`].
    /// Service calls carry `Idempotency-Key: <subscription>/<event id>`, the same on every
    /// delivery of the event to that subscription.
    pub async fn handle(
        &self,
        plugin: &Plugin,
        subscription: &str,
        event: &Event,
    ) -> Result<Result<(), String>, CallError> {
        let answer = self.deliver(plugin, subscription, event, None).await?;
        self.release(plugin, answer.events).await?;
        Ok(answer.result)
    }

    /// As [`Self::handle`], but handing back what the call published instead of releasing
    /// it: the dispatcher writes a handler's events durably before it acknowledges the
    /// delivery. The call's service calls and events are part of the trace `traceparent`
    /// names.
    pub async fn deliver(
        &self,
        plugin: &Plugin,
        subscription: &str,
        event: &Event,
        traceparent: Option<String>,
    ) -> Result<Answer<(), String>, CallError> {
        let started = Instant::now();
        let answer = self
            .handler_call(plugin, subscription, event, traceparent)
            .await;
        record_call(plugin, 2, started, &answer);
        answer
    }

    /// [`Self::deliver`], unmeasured.
    async fn handler_call(
        &self,
        plugin: &Plugin,
        subscription: &str,
        event: &Event,
        traceparent: Option<String>,
    ) -> Result<Answer<(), String>, CallError> {
        let pre = plugin.handler_pre().ok_or_else(|| CallError::WrongWorld {
            plugin: plugin.name().clone(),
            world: World::Handler,
        })?;
        let call = CallContext {
            run_id: event.correlation_id.as_deref().map(Into::into),
            step: None,
            idempotency_key: Some(format!("{subscription}/{}", event.id)),
            request_id: event
                .correlation_id
                .clone()
                .unwrap_or_else(|| event.id.clone()),
            traceparent,
            record: false,
            replay: None,
        };
        let mut store = self.store(plugin, &call);
        let outcome = tokio::time::timeout(plugin.settings().timeout, async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance
                .flowhost_plugin_event_handler()
                .call_handle(&mut store, event)
                .await
        })
        .await;
        let (result, events) = answer(plugin, &mut store, plugin.settings().timeout, outcome)?;
        Ok(Answer {
            result,
            events,
            calls: Vec::new(),
            reads: Vec::new(),
            settings: BTreeMap::new(),
        })
    }

    /// A fresh store for one call: the plugin's limits, and a yield to the executor on
    /// every epoch tick.
    fn store(&self, plugin: &Plugin, call: &CallContext) -> Store<HostState> {
        let state = HostState::new(&self.capabilities, plugin.settings(), call);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
        store
    }

    /// Hands the events a successful call published to the sink.
    async fn release(&self, plugin: &Plugin, events: Vec<PublishedEvent>) -> Result<(), CallError> {
        if events.is_empty() {
            return Ok(());
        }
        self.capabilities
            .sink
            .accept(events)
            .await
            .map_err(|source| CallError::Sink {
                plugin: plugin.name().clone(),
                source,
            })
    }
}

/// A call's answer and, when the answer is `Ok`, the events the call published, not
/// released yet.
#[derive(Debug)]
pub struct Answer<T, E> {
    /// The plugin's answer.
    pub result: Result<T, E>,
    /// What it published.
    pub events: Vec<PublishedEvent>,
    /// Its service calls, when they were recorded.
    pub calls: Vec<RecordedCall>,
    /// Its cache reads, when they were recorded.
    pub reads: Vec<RecordedRead>,
    /// The settings it read, when they were recorded.
    pub settings: BTreeMap<String, Option<String>>,
}

/// How a step call is made, besides its inputs.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// A deadline instead of the plugin's.
    pub timeout: Option<Duration>,
    /// The trace the call is part of: its service calls and events are spans of it.
    pub traceparent: Option<String>,
    /// Record its service calls and cache reads ([`Answer::calls`], [`Answer::reads`]).
    pub record: bool,
    /// Replay this recording: service calls and cache reads answered from it, in order,
    /// with no network and no shared cache; published events get its ids. What the call
    /// does is recorded, to compare.
    pub replay: Option<Arc<Recording>>,
}

/// A step call's answer: its output JSON or the plugin's error.
pub type StepAnswer = Answer<String, StepError>;

/// The instance a run's last step call used, kept so that the run's next call, when it is
/// to the same plugin, skips instantiation: consecutive steps of one plugin (and their
/// compensations) then cost one instance, not one each. A call that fails (trap, deadline,
/// memory cap) takes its instance with it; the next call gets a fresh one.
///
/// Owned by whoever drives one run; dropping it (or [`Self::clear`]) frees the pool slot.
/// A plugin therefore sees its globals survive between some calls of one run, never
/// between runs: correct plugins rely on neither.
#[derive(Default)]
pub struct WarmInstance {
    slot: Option<Warm>,
}

struct Warm {
    /// The plugin version it is an instance of: name and digest.
    plugin: (Arc<str>, String),
    store: Store<HostState>,
    instance: StepPlugin,
}

impl WarmInstance {
    /// Drops the kept instance, e.g. before a wait that would hold its pool slot idle.
    pub fn clear(&mut self) {
        self.slot = None;
    }

    /// The kept instance if it is one of `plugin`; any other is dropped.
    fn take_for(&mut self, plugin: &Plugin) -> Option<Warm> {
        let warm = self.slot.take()?;
        let (name, digest) = &warm.plugin;
        (name == plugin.name() && digest == plugin.digest()).then_some(warm)
    }
}

/// The exports a plugin call runs, as the metrics name them.
const EXPORTS: [&str; 3] = ["execute", "compensate", "handle"];

/// How a plugin call can end, as the metrics name it.
const OUTCOMES: [&str; 7] = [
    "ok",
    "error",
    "trap",
    "deadline",
    "memory_cap",
    "output_too_large",
    "failed",
];

/// A plugin's series of the call metrics, registered when it loads, so that a call records
/// into them without building a key: by export, a counter per outcome and a histogram.
pub(crate) struct CallMetrics {
    exports: [(Vec<metrics::Counter>, metrics::Histogram); 3],
}

impl CallMetrics {
    fn new(plugin: &Arc<str>) -> Self {
        Self {
            exports: EXPORTS.map(|export| {
                let outcomes = OUTCOMES
                    .iter()
                    .map(|outcome| {
                        metrics::counter!(PLUGIN_CALLS, "plugin" => plugin.clone(), "export" => export, "outcome" => *outcome)
                    })
                    .collect();
                let duration = metrics::histogram!(PLUGIN_CALL_DURATION, "plugin" => plugin.clone(), "export" => export);
                (outcomes, duration)
            }),
        }
    }
}

/// Counts a call of `plugin`'s export (an index of [`EXPORTS`]) by its outcome, and how
/// long it took.
fn record_call<T, E>(
    plugin: &Plugin,
    export: usize,
    started: Instant,
    answer: &Result<Answer<T, E>, CallError>,
) {
    let outcome = match answer {
        Ok(Answer { result: Ok(_), .. }) => 0,
        Ok(Answer { result: Err(_), .. }) => 1,
        Err(CallError::Trap { .. }) => 2,
        Err(CallError::Deadline { .. }) => 3,
        Err(CallError::MemoryLimit { .. }) => 4,
        Err(CallError::OutputTooLarge { .. }) => 5,
        Err(CallError::WrongWorld { .. } | CallError::Sink { .. } | CallError::Failed { .. }) => 6,
    };
    let (outcomes, duration) = &plugin.metrics().exports[export];
    outcomes[outcome].increment(1);
    duration.record(started.elapsed());
}

/// The plugin's answer with what the call published: everything when the answer is `Ok`,
/// nothing otherwise (a failed attempt's events are dropped).
fn answer<T, E>(
    plugin: &Plugin,
    store: &mut Store<HostState>,
    limit: Duration,
    outcome: Result<wasmtime::Result<Result<T, E>>, tokio::time::error::Elapsed>,
) -> Result<(Result<T, E>, Vec<PublishedEvent>), CallError> {
    let result = settle(plugin, store, limit, outcome)?;
    let published = store.data_mut().call.events.take_pending();
    let events = if result.is_ok() {
        published
    } else {
        Vec::new()
    };
    Ok((result, events))
}

/// Turns the outcome of a call into the plugin's answer or a typed [`CallError`].
fn settle<R>(
    plugin: &Plugin,
    store: &Store<HostState>,
    limit: Duration,
    outcome: Result<wasmtime::Result<R>, tokio::time::error::Elapsed>,
) -> Result<R, CallError> {
    let name = plugin.name().clone();
    let error = match outcome {
        Ok(Ok(value)) => return Ok(value),
        Err(_elapsed) => {
            return Err(CallError::Deadline {
                plugin: name,
                limit,
            });
        }
        Ok(Err(error)) => error,
    };
    let limiter = &store.data().limiter;
    let call_error = if limiter.hit() {
        CallError::MemoryLimit {
            plugin: name,
            limit_mib: limiter.limit_bytes() / (1024 * 1024),
        }
    } else if let Some(trap) = error.downcast_ref::<Trap>() {
        CallError::Trap {
            plugin: name,
            trap: *trap,
            detail: format!("{error:?}"),
        }
    } else {
        CallError::Failed {
            plugin: name,
            detail: format!("{error:#}"),
        }
    };
    tracing::warn!(plugin = %plugin.name(), error = %call_error, "plugin call failed");
    Err(call_error)
}

/// The engine settings: component model, async, pooling allocator sized from `config`,
/// epoch interruption.
fn engine_config(config: &RuntimeConfig, setup: &RuntimeSetup) -> wasmtime::Config {
    let instances = config.max_instances;
    let max_memory_mib = setup.max_memory_limit_mib.max(config.memory_limit_mib);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(8))
        .total_memories(instances.saturating_mul(2))
        .total_tables(instances.saturating_mul(4))
        .total_stacks(instances)
        .max_memory_size(max_memory_mib as usize * 1024 * 1024)
        .max_core_instances_per_component(64)
        .max_memories_per_component(16)
        .max_tables_per_component(32)
        .max_component_instance_size(4 << 20)
        .max_core_instance_size(4 << 20)
        .table_elements(64 * 1024)
        // The per-call cost is dominated by resetting the instance's slot. With PAGEMAP_SCAN
        // (Linux 6.7+) the pool finds the pages a call dirtied and resets just those with a
        // memset, keeping them mapped: no `madvise`, no TLB shootdown, no page faults on the
        // next call. Measured by `cargo bench --bench call`: the no-op call went from 73 µs
        // (memset of a fixed 1 MiB) and 35 µs (madvise) to about 23 µs. Where the ioctl is
        // missing, `Auto` falls back to `madvise`.
        .pagemap_scan(wasmtime::Enabled::Auto)
        .linear_memory_keep_resident(4 << 20)
        .table_keep_resident(64 << 10);
    let mut engine = wasmtime::Config::new();
    engine
        .wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .async_stack_size(MAX_WASM_STACK + (1 << 20))
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    engine
}

/// Increments the engine's epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("flowhost-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
