//! The saga engine: drives runs through their steps by the [`Lifecycle`] state machine,
//! performing the I/O it asks for.
//!
//! A run is driven on a tokio task while it holds a slot of the [`Scheduler`]; between
//! attempts it may wait (a backoff) with no task and no slot, its due time derived from the
//! journal. Every attempt is one journal entry (with what the step returned), which is all
//! a step writes; the run's record is rewritten only when its status changes, as a
//! compare-and-swap on its revision, so two drivers of one run cannot both win. Nothing is
//! flushed to disk but where the API acknowledges something: a new run before its 202, a
//! finished run before anyone is told (group commit shares each flush between all runs
//! waiting for one). After `kill -9`, [`Engine::recover`] queues every unfinished run; the
//! state machine resumes it from its last durable journal entry and re-runs the attempt
//! that was in flight, with the same attempt number and idempotency key.
//!
//! A run is pinned to the workflow definition and the plugin versions that were current
//! when it started ([`Run::workflow_version`], [`Run::plugins`]): every step and
//! compensation follows those, across hot swaps, configuration changes and restarts, while
//! new runs take the current ones.
//!
//! Starts are admitted by the scheduler: past `server.max-concurrent-runs` a run waits for
//! a slot, past `server.max-pending-runs` more the start is refused ([`EngineError::Overloaded`])
//! before anything is stored. A start with an id or idempotency key returns the run that key
//! names however many requests race, and only once that run is durable.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use serde_json::{Map, Value};
use tokio::sync::{OwnedSemaphorePermit, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::awaits::{Awaits, Interest};
use super::histograms::AttemptHistograms;
use super::machine::{self, Action, Attempt, Event, Lifecycle};
use super::scheduler::{Admitted, Limits, Resume, Scheduler};
use crate::Runtime;
use crate::bindings::types::{StepError, StepInfo};
use crate::events::{Outbox, Trigger};
use crate::model::recording::Recording;
use crate::model::run::step_output;
use crate::model::{
    Clock, Direction, Gate, InvalidRunId, JournalEntry, Message, MessageKind, OutboxEntry, Outcome,
    PublishedEvent, RUN_FORMAT, Run, RunError, RunId, RunStatus, StepDefinition, StepState,
    StepStatus, WorkflowDefinition, workflow::MAX_INBOX,
};
use crate::plugins::{PluginRegistry, RegistryError};
use crate::runtime::{CallError, CallOptions, Plugin, WarmInstance};
use crate::store::{BoxFuture, Claim, Created, RunStore, StoreError};
use crate::telemetry::metrics::{ADMISSION_REJECTIONS, RUNS_ENDED, RUNS_STARTED};
use crate::telemetry::trace::{self, Kind};
use crate::workflows::{InvalidInput, Workflow, WorkflowError, WorkflowRegistry};

/// How often a caller waiting for a run's end looks at the store, for a run that ends
/// on another node.
const WAIT_POLL: Duration = Duration::from_secs(1);

/// How long a child workflow step waits for room to start its child, when there is none.
const CHILD_RETRY: Duration = Duration::from_secs(1);

/// How long a client refused for load is told to wait.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How long a run whose drive panicked outside an attempt waits before it is taken up
/// again.
const AFTER_PANIC: Duration = Duration::from_secs(1);

/// How long a run halted by a store error that may pass (the store unreachable) waits
/// before it is taken up again: doubling from the first to the last, for as long as the
/// drives keep halting.
const AFTER_HALT: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

/// How many times a request claims a run another node holds before it gives up: each try
/// loses only to another claim of the same run that came in between.
const HOLD_TRIES: usize = 3;

/// Why the engine refused a request.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No workflow of that name is configured.
    #[error("unknown workflow `{0}`")]
    UnknownWorkflow(String),
    /// No run has that id.
    #[error("unknown run `{0}`")]
    UnknownRun(String),
    /// The run is not in a state that can be retried.
    #[error(
        "run `{id}` is {status}: only failed or compensation_failed runs with steps to undo can be retried"
    )]
    NotRetryable {
        /// The run.
        id: RunId,
        /// Its status.
        status: &'static str,
    },
    /// The run cannot be cancelled: it ended, or compensates a failure already.
    #[error("run `{id}` is {status}: only a pending or running run can be cancelled")]
    NotCancellable {
        /// The run.
        id: RunId,
        /// Its status.
        status: &'static str,
    },
    /// Another request changed the run first (a concurrent retry).
    #[error("run `{0}` changed while this request handled it: another retry took it up")]
    Conflict(RunId),
    /// A signal to a run that takes none of that name: it ended, compensates, or has no
    /// await step ahead for it.
    #[error("run `{id}` takes no signal `{signal}`: {why}")]
    NotAwaited {
        /// The run.
        id: RunId,
        /// The signal.
        signal: String,
        /// Why not.
        why: String,
    },
    /// The run's inbox holds as many messages as it may.
    #[error("run `{0}` has {MAX_INBOX} messages waiting for its await steps already")]
    InboxFull(RunId),
    /// The input does not match the workflow's `input-schema`; no run was made.
    #[error(transparent)]
    InvalidInput(#[from] InvalidInput),
    /// A client-chosen run id is malformed.
    #[error(transparent)]
    InvalidId(#[from] InvalidRunId),
    /// Every slot and every place in the queue is taken; nothing was stored.
    #[error(
        "the host is at capacity: {running} runs running and {pending} waiting (server.max-pending-runs); nothing was stored, try again in {}s",
        .retry_after.as_secs()
    )]
    Overloaded {
        /// Runs driven now.
        running: usize,
        /// Runs waiting for a slot.
        pending: usize,
        /// When to try again.
        retry_after: Duration,
    },
    /// The host is shutting down and starts nothing new.
    #[error("the host is shutting down")]
    ShuttingDown,
    /// Handling the request panicked in the host: a bug, logged.
    #[error("the host failed handling this request: {0}")]
    Panicked(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The workflow registry failed.
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
}

/// The engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn RunStore>,
    /// Where steps' events and the lifecycle events go.
    outbox: Arc<Outbox>,
    runtime: Arc<Runtime>,
    plugins: Arc<PluginRegistry>,
    workflows: Arc<WorkflowRegistry>,
    clock: Arc<dyn Clock>,
    scheduler: Scheduler,
    /// Callers waiting for runs to end. A std `Mutex`: held to push or drain, never across
    /// an `.await`; so are the three below.
    waiters: Mutex<HashMap<RunId, Vec<oneshot::Sender<Run>>>>,
    /// Runs whose creation is not durable yet, with what their creator drops once it is (or
    /// once the run is discarded): a request that finds such a run waits for that before
    /// it answers with it.
    creating: Mutex<HashMap<RunId, watch::Receiver<()>>>,
    /// Runs being driven (or cancelled): one driver per run in this process.
    active: Mutex<HashMap<RunId, Driver>>,
    /// Runs a restart found unfinished and has not driven yet: an attempt may have been in
    /// flight at the crash, which the first drive makes again before it takes a cancel.
    recovering: Mutex<std::collections::HashSet<RunId>>,
    /// Which runs wait for events on which topics.
    awaits: Awaits,
    /// Panics per run, while it keeps panicking outside its attempts.
    panics: Mutex<HashMap<RunId, u32>>,
    /// Drives of each run halted in a row by store errors that may pass, for the pause
    /// before the next ([`AFTER_HALT`]).
    halts: Mutex<HashMap<RunId, u32>>,
    /// The step attempt histograms, by workflow and step.
    attempt_histograms: AttemptHistograms,
    /// Runs that hold no task while they wait, by what they wait for: what the sleeping and
    /// waiting gauges count. A run leaves it when it is driven again or ends.
    resting: Mutex<HashMap<RunId, Rest>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// What others ask of a run while it is driven.
#[derive(Default)]
struct Driver {
    /// Someone took the run up meanwhile (a retry, a timer): its driver hands it back to the
    /// queue when it is done, so that nothing it would have seen is lost.
    again: bool,
    /// Cancels waiting for the driver to record them before its next attempt; each is told
    /// (its sender dropped) once the cancel is durable, or once the driver stops without it.
    cancels: Vec<oneshot::Sender<()>>,
    /// No one drives the run yet: it holds the cancels of a recovered run for its first
    /// driver, which takes it over.
    placeholder: bool,
}

/// Why a drive stopped before the run reached a terminal status; it resumes on restart.
#[derive(Debug, thiserror::Error)]
enum Halt {
    #[error("shutting down")]
    Shutdown,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
}

impl Halt {
    /// Whether another node owns run `id` now: this one must let it go.
    fn fenced(&self, id: &RunId) -> bool {
        matches!(
            self,
            Halt::Store(StoreError::Fenced(fenced))
                | Halt::Workflow(WorkflowError::Store(StoreError::Fenced(fenced)))
                if fenced == id
        )
    }

    /// Whether the same drive may go through later: the store was unreachable, or another
    /// run the drive touched (a child) moved to another node meanwhile.
    fn may_pass(&self) -> bool {
        match self {
            Halt::Shutdown => false,
            // Not a lost compare-and-swap: another writer of the run drives it.
            Halt::Store(e) | Halt::Workflow(WorkflowError::Store(e)) => {
                matches!(e, StoreError::Unavailable { .. } | StoreError::Fenced(_))
            }
            Halt::Workflow(_) => false,
        }
    }
}

/// What a run that holds no task waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rest {
    /// A time: a sleep step, or a retry's backoff.
    Sleeping,
    /// An event or signal at an await step, or its child run.
    Waiting,
}

/// How many runs are where, for the gauges of `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Occupancy {
    /// Driven now, each in a slot.
    pub in_flight: usize,
    /// Admitted and waiting for a slot.
    pub queued: usize,
    /// Waiting for a time.
    pub sleeping: usize,
    /// Waiting for an event, a signal or a child run.
    pub waiting: usize,
}

/// The work a driver starts with: a run in hand (a new one), or an id to read.
enum Work {
    New(Box<Run>),
    Queued(RunId, Resume),
}

/// How a run another node may hold takes an event ([`Inner::record_takes`]).
struct Taken {
    /// It waits for it at a step now; else it keeps it for a step ahead.
    waiting: bool,
    /// When its latest wait began (ms, by the clock of the node that began it).
    began: u64,
}

/// A run as this node holds it, for a request that changes it ([`Inner::hold`]).
struct Held {
    run: Run,
    /// Claimed from another node for the request (and taken up here if unfinished).
    taken_over: bool,
}

/// Removes its run from [`Inner::creating`] when dropped, waking whoever waits on it.
struct Creation {
    inner: Arc<Inner>,
    id: RunId,
    _done: watch::Sender<()>,
}

/// A new run whose flush is being awaited. If the request making it is dropped meanwhile
/// (its client hung up), the rest of the creation moves to a task of its own, so that a
/// stored run is never left without a driver.
struct Unfinished(Option<(Arc<Inner>, Run, Admitted, Option<Creation>)>);

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some((inner, run, admitted, creation)) = self.0.take() {
            tokio::spawn(async move {
                let flushed = inner.store.flush().await;
                let _ = inner.settle(run, admitted, creation, flushed, None).await;
            });
        }
    }
}

impl Drop for Creation {
    fn drop(&mut self) {
        self.inner
            .creating
            .lock()
            .expect("creating lock")
            .remove(&self.id);
    }
}

/// Removes its run from [`Inner::active`] when dropped, queueing it again if it was taken
/// up meanwhile.
struct Driving {
    inner: Arc<Inner>,
    id: RunId,
}

impl Drop for Driving {
    fn drop(&mut self) {
        let driver = self
            .inner
            .active
            .lock()
            .expect("active lock")
            .remove(&self.id);
        if driver.is_some_and(|d| d.again) {
            self.inner
                .scheduler
                .enqueue(self.id.clone(), Resume::Due, None);
        }
    }
}

impl From<Halt> for EngineError {
    fn from(halt: Halt) -> Self {
        match halt {
            Halt::Shutdown => EngineError::ShuttingDown,
            Halt::Store(e) => EngineError::Store(e),
            Halt::Workflow(e) => EngineError::Workflow(e),
        }
    }
}

impl Engine {
    /// An engine over `store`, running the workflows of `workflows` with the plugins of
    /// `plugins`, admitting runs within `limits`, telling time by `clock`.
    pub fn new(
        store: Arc<dyn RunStore>,
        outbox: Arc<Outbox>,
        runtime: Arc<Runtime>,
        plugins: Arc<PluginRegistry>,
        workflows: Arc<WorkflowRegistry>,
        limits: Limits,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let engine = Self {
            inner: Arc::new(Inner {
                store,
                outbox,
                runtime,
                plugins,
                workflows,
                clock,
                scheduler: Scheduler::new(limits),
                waiters: Mutex::default(),
                creating: Mutex::default(),
                active: Mutex::default(),
                recovering: Mutex::default(),
                awaits: Awaits::default(),
                panics: Mutex::default(),
                halts: Mutex::default(),
                resting: Mutex::default(),
                attempt_histograms: AttemptHistograms::default(),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        };
        engine.start_scheduling();
        engine
    }

    /// Starts a run of `workflow` with `input` as its context, durably, unless a run with
    /// `id` or with `idempotency_key` exists: then returns that one, once it is durable. The
    /// flag says whether the run is new. A new run belongs to the trace `traceparent` names
    /// (the request's). Refused with [`EngineError::Overloaded`] when the host has no room,
    /// before anything is stored.
    pub async fn start(
        &self,
        workflow: &str,
        input: Map<String, Value>,
        id: Option<RunId>,
        idempotency_key: Option<String>,
        traceparent: Option<String>,
    ) -> Result<(Run, bool), EngineError> {
        let start = Start {
            id,
            idempotency_key,
            traceparent,
            ..Start::default()
        };
        self.inner.start(workflow, input, start).await
    }

    /// Starts a run as [`Self::start`] does, then waits up to `timeout` for it to end, as
    /// [`Self::wait`] does: the run as it is then, and whether it is new. A new run's end
    /// is awaited from before its driver starts, so it is not read back.
    pub async fn start_and_wait(
        &self,
        workflow: &str,
        input: Map<String, Value>,
        id: Option<RunId>,
        idempotency_key: Option<String>,
        traceparent: Option<String>,
        timeout: Duration,
    ) -> Result<(Run, bool), EngineError> {
        let (on_end, mut ended) = oneshot::channel();
        let start = Start {
            id,
            idempotency_key,
            traceparent,
            on_end: Some(on_end),
            ..Start::default()
        };
        let (run, new) = self.inner.start(workflow, input, start).await?;
        if run.status.is_terminal() {
            return Ok((run, new));
        }
        let run = match ended.try_recv() {
            Ok(ended) => ended,
            Err(oneshot::error::TryRecvError::Empty) => {
                self.inner.follow(run, ended, timeout).await?
            }
            // Not registered: the run was there before (a repeat), and may be driven
            // anywhere.
            Err(oneshot::error::TryRecvError::Closed) => self.inner.wait(&run.id, timeout).await?,
        };
        Ok((run, new))
    }

    /// The run with this id.
    pub async fn get(&self, id: &str) -> Result<Option<Run>, EngineError> {
        let Ok(id) = RunId::parse(id) else {
            return Ok(None);
        };
        Ok(self.inner.store.get(&id).await?)
    }

    /// How many runs are driven, queued, asleep and waiting now.
    pub fn occupancy(&self) -> Occupancy {
        let (in_flight, queued) = self.inner.scheduler.load();
        let resting = self.inner.resting.lock().expect("resting lock");
        let sleeping = resting.values().filter(|r| **r == Rest::Sleeping).count();
        Occupancy {
            in_flight,
            queued,
            sleeping,
            waiting: resting.len() - sleeping,
        }
    }

    /// The run store, for listings and journals.
    pub fn store(&self) -> &Arc<dyn RunStore> {
        &self.inner.store
    }

    /// The workflow registry.
    pub fn workflows(&self) -> &Arc<WorkflowRegistry> {
        &self.inner.workflows
    }

    /// Waits up to `timeout` for run `id` to reach a terminal status, and returns it as it
    /// is then.
    pub async fn wait(&self, id: &RunId, timeout: Duration) -> Result<Run, EngineError> {
        self.inner.wait(id, timeout).await
    }

    /// Drives the compensation of a `failed` or `compensation_failed` run again: one
    /// retry wins however many race (the record's compare-and-swap), the others get
    /// [`EngineError::Conflict`] or [`EngineError::NotRetryable`].
    pub async fn retry(&self, id: &str) -> Result<Run, EngineError> {
        let inner = self.inner.clone();
        let id = id.to_owned();
        detached(async move { inner.retry(&id).await }).await
    }

    /// Cancels run `id`: the attempt in flight (if any) finishes, completed steps are
    /// compensated in reverse order, and the run ends `cancelled`. A run asleep or queued is
    /// cancelled at once. Returns the run once the cancel is durable; a repeat returns it
    /// again. Refused with [`EngineError::NotCancellable`] for a run that ended or is
    /// compensating a failure.
    pub async fn cancel(&self, id: &str) -> Result<Run, EngineError> {
        let inner = self.inner.clone();
        let id = id.to_owned();
        detached(async move { inner.cancel(&id).await }).await
    }

    /// Delivers signal `name` with `data` to run `id`, durably: kept in the run's inbox
    /// until its await step for that signal takes it (at once if the run waits there). Refused
    /// for a run that ended or has no await step ahead for it.
    pub async fn signal(&self, id: &str, name: &str, data: Value) -> Result<Message, EngineError> {
        let inner = self.inner.clone();
        let (id, name) = (id.to_owned(), name.to_owned());
        detached(async move { inner.signal(&id, &name, data).await }).await
    }

    /// Claims this node's runs that were pending, running or compensating when it stopped,
    /// and queues each: it resumes where its journal ends, a backoff waiting only for what
    /// is left of it. Before it returns, every such run that awaits events is in the index
    /// the relay asks, so that no event is missed while the runs are taken up. Returns how
    /// many.
    pub async fn recover(&self) -> Result<usize, EngineError> {
        let ids = self.inner.store.claim(Claim::Own).await?;
        let count = self.inner.adopt(ids).await;
        if count > 0 {
            tracing::info!(count, "resuming unfinished runs");
        }
        Ok(count)
    }

    /// Takes up runs this node has just claimed (its own on start, or another node's whose
    /// lease expired), as [`Self::recover`] does. Returns how many.
    pub async fn adopt(&self, ids: Vec<RunId>) -> usize {
        self.inner.adopt(ids).await
    }

    /// Starts nothing new, lets in-flight steps finish for up to `grace`, and returns;
    /// whatever is unfinished then resumes on the next start.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        if tokio::time::timeout(grace, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                "grace period over; unfinished runs resume on the next start"
            );
        }
    }

    /// The two tasks that feed drivers: one hands queued runs to free slots, one moves runs
    /// whose time has come to the queue.
    fn start_scheduling(&self) {
        let inner = self.inner.clone();
        self.inner.tasks.spawn(async move {
            loop {
                let (queued, slot) = tokio::select! {
                    next = inner.scheduler.next() => next,
                    () = inner.shutdown.cancelled() => return,
                };
                inner.spawn(Work::Queued(queued.id, queued.resume), slot);
            }
        });
        let inner = self.inner.clone();
        self.inner.tasks.spawn(async move {
            loop {
                let due = tokio::select! {
                    due = inner.scheduler.due(&*inner.clock) => due,
                    () = inner.shutdown.cancelled() => return,
                };
                for id in due {
                    inner.scheduler.enqueue(id, Resume::Due, None);
                }
            }
        });
    }
}

/// A trigger's run: waits for room rather than refusing, so that the event waits in its
/// queue.
impl Trigger for Engine {
    fn start<'a>(
        &'a self,
        workflow: &'a str,
        input: Map<String, Value>,
        id: RunId,
        traceparent: Option<String>,
    ) -> BoxFuture<'a, Result<(), Box<dyn std::error::Error + Send + Sync>>> {
        Box::pin(async move {
            let start = Start {
                id: Some(id),
                traceparent,
                wait_for_room: true,
                ..Start::default()
            };
            self.inner
                .start(workflow, input, start)
                .await
                .map(drop)
                .map_err(Into::into)
        })
    }

    fn awaits<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            if self.inner.awaits.wants(topic) {
                return true;
            }
            // Or a run another node holds: it is worth a delivery whatever the store says.
            self.inner.store.awaited(topic).await.unwrap_or(true)
        })
    }

    fn resume<'a>(
        &'a self,
        event: &'a PublishedEvent,
    ) -> BoxFuture<'a, Result<(), Box<dyn std::error::Error + Send + Sync>>> {
        Box::pin(async move { self.inner.resume(event).await.map_err(Into::into) })
    }
}

/// What an attempt takes of its run, apart from it: the run changes while attempts made at
/// once are in flight.
struct Caller {
    run_id: RunId,
    workflow: String,
    /// The trace the run belongs to.
    traceparent: Option<String>,
    /// The context the step sees.
    context: Map<String, Value>,
}

/// How a run is started, besides its workflow and input.
#[derive(Default)]
struct Start {
    /// A client-chosen id.
    id: Option<RunId>,
    /// A client's idempotency key.
    idempotency_key: Option<String>,
    /// The trace the run belongs to.
    traceparent: Option<String>,
    /// Wait for room rather than refuse (a trigger's start, a child's).
    wait_for_room: bool,
    /// The run whose child workflow step this run is.
    parent: Option<RunId>,
    /// Told the run when it ends, if it is new: registered before its driver starts, so
    /// that a caller waiting for the end need not read it back first.
    on_end: Option<oneshot::Sender<Run>>,
}

impl Inner {
    async fn start(
        self: &Arc<Self>,
        workflow: &str,
        input: Map<String, Value>,
        start: Start,
    ) -> Result<(Run, bool), EngineError> {
        let Start {
            id,
            idempotency_key,
            traceparent,
            wait_for_room,
            parent,
            on_end,
        } = start;
        let definition = self
            .workflows
            .current(workflow)
            .ok_or_else(|| EngineError::UnknownWorkflow(workflow.to_owned()))?;
        if definition.input.is_some() {
            definition.check_input(&Value::Object(input.clone()))?;
        }
        if self.shutdown.is_cancelled() {
            return Err(EngineError::ShuttingDown);
        }
        // Only a client's id or key can be raced for; a fresh id cannot.
        let claimed = id.is_some() || idempotency_key.is_some();
        let now = self.clock.now_ms();
        let search = definition.definition.search_values(&input);
        // A run no caller traced (a schedule's firing, an event's trigger without one) is
        // the root of a trace of its own, so that its steps are one trace and not many.
        let traceparent = traceparent.or_else(|| {
            trace::Span::start(|| format!("run {workflow}"), Kind::Internal, None).traceparent()
        });
        let mut run = Run {
            format: RUN_FORMAT,
            id: id.unwrap_or_else(RunId::generate),
            workflow: workflow.to_owned(),
            workflow_version: Some(definition.digest.clone()),
            status: RunStatus::Pending,
            input,
            steps: pending_steps(&definition.definition).collect(),
            error: None,
            plugins: BTreeMap::new(),
            idempotency_key,
            parent,
            traceparent,
            search,
            cancelled: false,
            closed: false,
            created_ms: now,
            updated_ms: now,
            ended_ms: None,
            journaled: 0,
            revision: 0,
            epoch: 0,
        };
        loop {
            let creation = if claimed {
                match self.claim(&run.id) {
                    Ok(creation) => Some(creation),
                    Err(mut pending) => {
                        // Another request is creating a run with this id: its answer is ours.
                        let _ = pending.changed().await;
                        continue;
                    }
                }
            } else {
                None
            };
            // A repeat needs no room: it is answered before admission.
            let found = if claimed {
                self.store.find(&run).await?
            } else {
                None
            };
            let existing = match found {
                Some(existing) => existing,
                None => {
                    let admitted = if wait_for_room {
                        tokio::select! {
                            admitted = self.scheduler.admit_waiting() => admitted,
                            () = self.shutdown.cancelled() => return Err(EngineError::ShuttingDown),
                        }
                    } else {
                        self.admit()?
                    };
                    // A run that can start at once is stored as running: one write less
                    // than storing it pending and then saving it running.
                    run.status = match admitted {
                        Admitted::Slot(_) => RunStatus::Running,
                        Admitted::Ticket(_) => RunStatus::Pending,
                    };
                    match self.create_pinned(&mut run, &definition.definition).await? {
                        Created::New => {
                            return self.commit(run, admitted, creation, on_end).await;
                        }
                        // Created by a request that came between the look-up and now.
                        Created::Existing(existing) => *existing,
                    }
                }
            };
            drop(creation);
            let pending = self
                .creating
                .lock()
                .expect("creating lock")
                .get(&existing.id)
                .cloned();
            if let Some(mut pending) = pending {
                // Its creator has not made it durable yet, and may yet discard it.
                let _ = pending.changed().await;
                continue;
            }
            // Whatever its creator did, the answer names a durable run.
            self.store.flush().await?;
            return Ok((existing, false));
        }
    }

    /// Stores `run` pinned to the plugin versions current now, which are the run's for its
    /// whole life. The registry does not collect a version while its guard is held, so the
    /// run is in the store before any version it pins could go.
    async fn create_pinned(
        &self,
        run: &mut Run,
        definition: &WorkflowDefinition,
    ) -> Result<Created, StoreError> {
        let current = self.plugins.current_versions().await;
        run.plugins.clear();
        for name in definition.plugins() {
            if let Some(plugin) = current.get(name) {
                run.plugins
                    .insert(name.to_owned(), plugin.digest().to_owned());
            }
        }
        self.store.create(run).await
    }

    /// Makes a new run durable and hands it to a driver; if it cannot be made durable,
    /// discards it, so that nothing is left a client's retry could find and get stuck on.
    async fn commit(
        self: &Arc<Self>,
        run: Run,
        admitted: Admitted,
        creation: Option<Creation>,
        on_end: Option<oneshot::Sender<Run>>,
    ) -> Result<(Run, bool), EngineError> {
        let mut unfinished = Unfinished(Some((self.clone(), run, admitted, creation)));
        let flushed = self.store.flush().await;
        let (_, run, admitted, creation) = unfinished.0.take().expect("not dropped yet");
        self.settle(run, admitted, creation, flushed, on_end).await
    }

    /// The end of a creation once its flush returned.
    async fn settle(
        self: &Arc<Self>,
        run: Run,
        admitted: Admitted,
        creation: Option<Creation>,
        flushed: Result<(), StoreError>,
        on_end: Option<oneshot::Sender<Run>>,
    ) -> Result<(Run, bool), EngineError> {
        if let Err(error) = flushed {
            match self.store.discard(&run).await {
                Ok(()) => {
                    tracing::warn!(run_id = %run.id, %error, "a new run could not be made durable; it was discarded");
                    return Err(error.into());
                }
                // Still there, and visible: it must not be left undriven.
                Err(discard) => {
                    tracing::error!(run_id = %run.id, %error, %discard, "a new run could neither be made durable nor discarded; it is driven anyway");
                }
            }
            self.hand_over(&run, admitted);
            drop(creation);
            return Err(error.into());
        }
        drop(creation);
        metrics::counter!(RUNS_STARTED, "workflow" => run.workflow.clone()).increment(1);
        if let Some(on_end) = on_end {
            self.add_waiter(&run.id, on_end);
        }
        self.hand_over(&run, admitted);
        Ok((run, true))
    }

    /// Takes up runs this node has just claimed: each resumes as after a restart (the
    /// attempt its earlier owner may have had in flight runs again), its awaits noted
    /// first, so that no event is missed meanwhile. Returns how many.
    async fn adopt(&self, ids: Vec<RunId>) -> usize {
        let count = ids.len();
        for id in ids {
            match self.store.get(&id).await {
                Ok(Some(mut run)) => {
                    if let Ok(workflow) = self.workflow_of(&mut run).await
                        && let Err(error) = self.note_interests(&run, &workflow.definition).await
                    {
                        tracing::warn!(run_id = %id, %error, "could not note what a claimed run awaits");
                    }
                }
                Ok(None) => continue,
                // Its drive notes what it awaits, once it reads it.
                Err(error) => tracing::warn!(run_id = %id, %error, "could not read a claimed run"),
            }
            self.recovering
                .lock()
                .expect("recovering lock")
                .insert(id.clone());
            self.scheduler.enqueue(id, Resume::Recovered, None);
        }
        count
    }

    /// Makes run `id` this node's before a request changes it, and returns it as held here
    /// (`None`: no such run). A run another node holds (on a store several nodes share) is
    /// claimed from it, which fences that node off it, and taken up here as
    /// [`Self::adopt`] does when it is unfinished.
    async fn hold(&self, id: &RunId) -> Result<Option<Held>, StoreError> {
        match self.store.owned(id).await {
            Err(StoreError::Fenced(_)) => {}
            other => {
                return other.map(|run| {
                    run.map(|run| Held {
                        run,
                        taken_over: false,
                    })
                });
            }
        }
        for _ in 0..HOLD_TRIES {
            let claimed = self.store.claim(Claim::Run(id)).await?;
            let run = match self.store.owned(id).await {
                Ok(Some(run)) => run,
                Ok(None) => return Ok(None),
                // Another node (or a request there) claimed it meanwhile: again.
                Err(StoreError::Fenced(_)) => continue,
                Err(e) => return Err(e),
            };
            if !run.status.is_terminal() {
                tracing::info!(run_id = %id, "took over a run another node held, for a request here");
                self.adopt(claimed).await;
            }
            return Ok(Some(Held {
                run,
                taken_over: true,
            }));
        }
        Err(StoreError::Fenced(id.clone()))
    }

    /// Drives `run` in its slot now, or queues it with its ticket.
    fn hand_over(self: &Arc<Self>, run: &Run, admitted: Admitted) {
        match admitted {
            Admitted::Slot(slot) => self.spawn(Work::New(Box::new(run.clone())), slot),
            Admitted::Ticket(ticket) => {
                self.scheduler
                    .enqueue(run.id.clone(), Resume::Start, Some(ticket));
            }
        }
    }

    async fn retry(self: &Arc<Self>, id: &str) -> Result<Run, EngineError> {
        let unknown = || EngineError::UnknownRun(id.to_owned());
        let id = RunId::parse(id).map_err(|_| unknown())?;
        let mut run = self.hold(&id).await?.ok_or_else(unknown)?.run;
        let workflow = self.workflow_of(&mut run).await?;
        let not_retryable = |run: &Run| EngineError::NotRetryable {
            id: run.id.clone(),
            status: run.status.as_str(),
        };
        let lifecycle = Lifecycle::new(&workflow.definition);
        if !lifecycle.retryable(&run) {
            return Err(not_retryable(&run));
        }
        let admitted = self.admit()?;
        lifecycle
            .on(&mut run, Event::Retry, self.clock.now_ms())
            .map_err(|_| not_retryable(&run))?;
        match self.save(&mut run).await {
            Err(StoreError::Conflict(id)) => return Err(EngineError::Conflict(id)),
            other => other?,
        }
        let flushed = self.store.flush().await;
        // The run is compensating now, durably or not: drive it either way, so that it is
        // never left waiting for a restart.
        self.hand_over(&run, admitted);
        flushed?;
        Ok(run)
    }

    async fn cancel(self: &Arc<Self>, id: &str) -> Result<Run, EngineError> {
        let unknown = || EngineError::UnknownRun(id.to_owned());
        let id = RunId::parse(id).map_err(|_| unknown())?;
        self.created(&id).await;
        self.hold(&id).await?;
        loop {
            // Either the run's driver records the cancel before its next step, or no one
            // drives it and this request does, holding the run as a driver would.
            let told = {
                let mut active = self.active.lock().expect("active lock");
                let recovering = self
                    .recovering
                    .lock()
                    .expect("recovering lock")
                    .contains(&id);
                match active.get_mut(&id) {
                    Some(driver) => {
                        let (tell, told) = oneshot::channel();
                        driver.cancels.push(tell);
                        Some(told)
                    }
                    // A recovered run waits for its first drive, which makes the attempt
                    // that may have been in flight again, then takes the cancel.
                    None if recovering => {
                        let (tell, told) = oneshot::channel();
                        let driver = Driver {
                            cancels: vec![tell],
                            placeholder: true,
                            ..Driver::default()
                        };
                        active.insert(id.clone(), driver);
                        Some(told)
                    }
                    None => {
                        active.insert(id.clone(), Driver::default());
                        None
                    }
                }
            };
            if let Some(told) = told {
                let _ = told.await;
                let run = self.store.get(&id).await?.ok_or_else(unknown)?;
                if !matches!(run.status, RunStatus::Pending | RunStatus::Running) || run.cancelled {
                    return self.cancelled(run).await;
                }
                // Its driver stopped before its next step (a wait, a halt): try again.
                continue;
            }
            let driving = Driving {
                inner: self.clone(),
                id: id.clone(),
            };
            let mut run = match self.store.owned(&id).await {
                Ok(run) => run.ok_or_else(unknown)?,
                // Another node took it over since: take it back, and look again.
                Err(StoreError::Fenced(_)) => {
                    drop(driving);
                    self.hold(&id).await?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if !matches!(run.status, RunStatus::Pending | RunStatus::Running) || run.cancelled {
                drop(driving);
                return self.cancelled(run).await;
            }
            let workflow = self.workflow_of(&mut run).await?;
            let lifecycle = Lifecycle::new(&workflow.definition);
            let actions = lifecycle
                .on(&mut run, Event::Cancel, self.clock.now_ms())
                .map_err(|_| EngineError::NotCancellable {
                    id: run.id.clone(),
                    status: run.status.as_str(),
                })?;
            for action in actions {
                match action {
                    Action::Save => match self.save(&mut run).await {
                        Err(StoreError::Conflict(id)) => return Err(EngineError::Conflict(id)),
                        other => other?,
                    },
                    Action::Finish(status) => self.finish(&mut run, &lifecycle, status).await?,
                    // Compensation to drive: a driver takes the run up once this lets go.
                    _ => {
                        self.store.flush().await?;
                        if let Some(driver) = self.active.lock().expect("active lock").get_mut(&id)
                        {
                            driver.again = true;
                        }
                    }
                }
            }
            drop(driving);
            return Ok(run);
        }
    }

    /// The answer to a cancel of `run`, which its driver took up or which was not
    /// running: the run, once durable, if it was cancelled; else why it cannot be.
    async fn cancelled(&self, run: Run) -> Result<Run, EngineError> {
        if !run.cancelled {
            return Err(EngineError::NotCancellable {
                id: run.id.clone(),
                status: run.status.as_str(),
            });
        }
        self.store.flush().await?;
        Ok(run)
    }

    /// Returns once run `id` is not being created: a run stored but not yet durable (and not
    /// yet handed to its driver, who drives it from memory) is not to be changed from
    /// outside meanwhile.
    async fn created(&self, id: &RunId) {
        let pending = self
            .creating
            .lock()
            .expect("creating lock")
            .get(id)
            .cloned();
        if let Some(mut pending) = pending {
            let _ = pending.changed().await;
        }
    }

    /// The cancels asked of `id` since its driver last looked.
    fn take_cancels(&self, id: &RunId) -> Vec<oneshot::Sender<()>> {
        self.active
            .lock()
            .expect("active lock")
            .get_mut(id)
            .map(|driver| std::mem::take(&mut driver.cancels))
            .unwrap_or_default()
    }

    async fn signal(&self, id: &str, name: &str, data: Value) -> Result<Message, EngineError> {
        let unknown = || EngineError::UnknownRun(id.to_owned());
        let id = RunId::parse(id).map_err(|_| unknown())?;
        self.created(&id).await;
        let mut run = self.store.get(&id).await?.ok_or_else(unknown)?;
        let not_awaited = |why: String| EngineError::NotAwaited {
            id: id.clone(),
            signal: name.to_owned(),
            why,
        };
        if !matches!(run.status, RunStatus::Pending | RunStatus::Running) {
            return Err(not_awaited(format!("it is {}", run.status.as_str())));
        }
        let workflow = self.workflow_of(&mut run).await?;
        let ahead = Lifecycle::new(&workflow.definition)
            .interests(&run)
            .iter()
            .any(|(_, awaits)| awaits.signal.as_deref() == Some(name));
        if !ahead {
            return Err(not_awaited("no await step ahead waits for it".into()));
        }
        if self.store.inbox(&id).await?.len() >= MAX_INBOX {
            return Err(EngineError::InboxFull(id));
        }
        let message = Message {
            id: ulid::Ulid::new().to_string(),
            kind: MessageKind::Signal {
                name: name.to_owned(),
            },
            data,
            received_ms: self.clock.now_ms(),
        };
        self.store.put_message(&id, &message).await?;
        self.store.flush().await?;
        // Taken up now: if it waits for this signal, its driver takes the message. A run
        // another node holds moves here (its owner is fenced off it): signals wake runs
        // that rest, so it seldom has an attempt in flight to lose.
        // The message is durable now: a retry of this request would send it twice. A run
        // that cannot be taken up now takes it when next driven (at its await's timeout
        // at the latest).
        match self.hold(&id).await {
            Ok(Some(held)) if held.taken_over => {}
            Ok(_) => self.scheduler.enqueue(id, Resume::Due, None),
            Err(error) => {
                tracing::warn!(run_id = %id, %error, "could not take up a run for its signal; it takes it when next driven");
            }
        }
        Ok(message)
    }

    async fn resume(&self, event: &PublishedEvent) -> Result<(), EngineError> {
        let data =
            serde_json::from_str(&event.data).unwrap_or_else(|_| Value::String(event.data.clone()));
        // The event's id is the message's: a redelivery writes the same message again,
        // and a step that took it does not take it twice.
        let message = Message {
            id: event.id.clone(),
            kind: MessageKind::Event {
                id: event.id.clone(),
                topic: event.topic.clone(),
                source: event.source.clone(),
                time_ms: event.time_ms,
            },
            data,
            received_ms: self.clock.now_ms(),
        };
        // Runs held here, by the index; runs other nodes hold (or this one has not indexed
        // yet), by the store's notes, each checked against its record. An index entry of a
        // run another node took meanwhile is dropped, and the run checked as theirs are.
        let seen = message.as_event();
        let key_of = |path: &[String]| super::awaits::event_key(&seen, path);
        let mut noted = self.store.awaiting(&event.topic, &key_of).await?;
        let mut here = std::collections::HashSet::new();
        for id in self.awaits.targets(&event.topic, &message) {
            match self.store.owned(&id).await {
                Ok(Some(_)) => {
                    here.insert(id);
                }
                Ok(None) => {}
                Err(StoreError::Fenced(_)) => {
                    self.let_go(&id);
                    noted.push(id);
                }
                Err(e) => return Err(e.into()),
            }
        }
        noted.sort();
        noted.dedup();
        let mut elsewhere = Vec::new();
        for id in noted {
            if here.contains(&id) {
                continue;
            }
            if self.awaits.has(&id) {
                // Indexed here and not for this event, if this node still holds it.
                match self.store.owned(&id).await {
                    Ok(_) => continue,
                    Err(StoreError::Fenced(_)) => self.let_go(&id),
                    Err(e) => return Err(e.into()),
                }
            }
            if let Some(taken) = self.record_takes(&id, &event.topic, &message).await? {
                elsewhere.push((id, taken.began));
            }
        }
        let mut delivered = Vec::with_capacity(here.len() + elsewhere.len());
        let targets = here
            .iter()
            .map(|id| (id, 0))
            .chain(elsewhere.iter().map(|(id, began)| (id, *began)));
        for (id, began) in targets {
            if self.store.inbox(id).await?.len() >= MAX_INBOX {
                tracing::warn!(run_id = %id, event = %event.id, "the run's inbox is full; the event is not kept for it");
                continue;
            }
            // Never before the wait it ends began, by the clock of the node that began it
            // (this one's may be behind): the step takes no event that came before it.
            let message = Message {
                received_ms: message.received_ms.max(began),
                ..message.clone()
            };
            self.store.put_message(id, &message).await?;
            delivered.push(id.clone());
        }
        if delivered.is_empty() {
            return Ok(());
        }
        self.store.flush().await?;
        for id in delivered {
            if here.contains(&id) {
                self.scheduler.enqueue(id, Resume::Due, None);
                continue;
            }
            // Read again now that the message is in: a run that began to wait since the
            // first read looked at its inbox before the message was there, and is woken.
            // A waiting run another node holds moves here (its holder is fenced off it),
            // as with a signal; one that only keeps events for a step ahead stays.
            let taken = self.record_takes(&id, &event.topic, &message).await?;
            if !taken.is_some_and(|taken| taken.waiting) {
                continue;
            }
            match self.hold(&id).await? {
                Some(held) if !held.taken_over => {
                    self.scheduler.enqueue(id, Resume::Due, None);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether run `id`, as the store holds it now, takes `message` (an event on `topic`),
    /// and how.
    async fn record_takes(
        &self,
        id: &RunId,
        topic: &str,
        message: &Message,
    ) -> Result<Option<Taken>, StoreError> {
        let Some(mut run) = self.store.get(id).await? else {
            return Ok(None);
        };
        if run.status.is_terminal() {
            return Ok(None);
        }
        let workflow = match self.workflow_of(&mut run).await {
            Ok(workflow) => workflow,
            Err(WorkflowError::Store(e)) => return Err(e),
            Err(_) => return Ok(None),
        };
        let probe = Awaits::default();
        probe.set(id, interests(&run, &workflow.definition));
        if probe.targets(topic, message).is_empty() {
            return Ok(None);
        }
        let began = run
            .steps
            .iter()
            .filter(|step| step.status == StepStatus::Waiting)
            .filter_map(|step| step.started_ms)
            .max()
            .unwrap_or(0);
        Ok(Some(Taken {
            waiting: probe.waits_for(id, topic),
            began,
        }))
    }

    /// Sets what `run` wants of events in the index (the topic its await step waits on,
    /// and those its await steps ahead keep), and, when that changed, in the store, for
    /// the nodes that take events from the broker while this one holds the run.
    async fn note_interests(
        &self,
        run: &Run,
        definition: &WorkflowDefinition,
    ) -> Result<(), StoreError> {
        let Some(notes) = self.awaits.set(&run.id, interests(run, definition)) else {
            return Ok(());
        };
        let noted = self.store.note_awaits(&run.id, &notes).await;
        if noted.is_err() {
            // Noted again next time; the index keeps serving this node meanwhile.
            self.awaits.unnote(&run.id);
        }
        noted
    }

    /// The message of its inbox that `run`'s await step takes, journaled; then removed
    /// from the inbox. The entry, to report to the lifecycle.
    async fn take_message(
        &self,
        run: &Run,
        lifecycle: &Lifecycle<'_>,
    ) -> Result<Option<JournalEntry>, StoreError> {
        if lifecycle.awaiting(run).is_none() {
            return Ok(None);
        }
        let inbox = self.store.inbox(&run.id).await?;
        let Some((message, entry)) = lifecycle.take(run, &inbox, self.clock.now_ms()) else {
            return Ok(None);
        };
        self.record(run, &entry, Vec::new()).await?;
        self.store.remove_message(&run.id, &message.id).await?;
        Ok(Some(entry))
    }

    /// Room for one more run, or why there is none.
    fn admit(&self) -> Result<Admitted, EngineError> {
        self.scheduler.admit().ok_or_else(|| {
            metrics::counter!(ADMISSION_REJECTIONS).increment(1);
            let (running, pending) = self.scheduler.load();
            EngineError::Overloaded {
                running,
                pending,
                retry_after: RETRY_AFTER,
            }
        })
    }

    /// Marks `id` as being created, or hands back what to wait on if someone else is
    /// creating it.
    fn claim(self: &Arc<Self>, id: &RunId) -> Result<Creation, watch::Receiver<()>> {
        let mut creating = self.creating.lock().expect("creating lock");
        if let Some(pending) = creating.get(id) {
            return Err(pending.clone());
        }
        let (done, pending) = watch::channel(());
        creating.insert(id.clone(), pending);
        Ok(Creation {
            inner: self.clone(),
            id: id.clone(),
            _done: done,
        })
    }

    /// The definition `run` is pinned to. A run from before definitions were versioned is
    /// pinned to the current one here, and its record gains the steps it lacks.
    async fn workflow_of(&self, run: &mut Run) -> Result<Arc<Workflow>, WorkflowError> {
        if let Some(digest) = &run.workflow_version {
            return self.workflows.pinned(&run.workflow, digest).await;
        }
        let current = self
            .workflows
            .current(&run.workflow)
            .ok_or_else(|| WorkflowError::Unknown(run.workflow.clone()))?;
        run.workflow_version = Some(current.digest.clone());
        for step in pending_steps(&current.definition) {
            if run.step(&step.name).is_none() {
                run.steps.push(step);
            }
        }
        Ok(current)
    }

    /// Drives a run on its own task while it holds `slot`; a panic in the drive is caught,
    /// logged with the run's id, and counted against the attempt it interrupted.
    fn spawn(self: &Arc<Self>, work: Work, slot: OwnedSemaphorePermit) {
        let id = match &work {
            Work::New(run) => run.id.clone(),
            Work::Queued(id, _) => id.clone(),
        };
        {
            let mut active = self.active.lock().expect("active lock");
            match active.get_mut(&id) {
                // Cancels of a recovered run, for its first driver.
                Some(driver) if driver.placeholder => driver.placeholder = false,
                // Driven already: its driver queues it again when it is done.
                Some(driver) => {
                    driver.again = true;
                    return;
                }
                None => {
                    active.insert(id.clone(), Driver::default());
                }
            }
            // Held now: cancels go to this driver, which replays before it takes them.
            self.recovering.lock().expect("recovering lock").remove(&id);
            self.resting.lock().expect("resting lock").remove(&id);
        }
        let inner = self.clone();
        self.tasks.spawn(async move {
            let _slot = slot;
            let driving = Driving {
                inner: inner.clone(),
                id: id.clone(),
            };
            let in_attempt = AtomicBool::new(false);
            let span = tracing::info_span!(
                parent: None,
                "flowhost.run",
                run_id = id.as_str(),
                workflow = tracing::field::Empty,
            );
            let drive =
                AssertUnwindSafe(inner.drive(work, &in_attempt).instrument(span)).catch_unwind();
            match drive.await {
                Ok(Ok(())) => {
                    inner.panics.lock().expect("panics lock").remove(&id);
                    inner.halts.lock().expect("halts lock").remove(&id);
                }
                Ok(Err(Halt::Shutdown)) => {
                    tracing::info!(run_id = %id, "run halted for shutdown; it resumes on the next start");
                }
                Ok(Err(halt)) if halt.fenced(&id) => {
                    tracing::warn!(run_id = %id, "run claimed by another node (this one's lease lapsed); letting it go");
                    inner.let_go(&id);
                }
                Ok(Err(halt)) if halt.may_pass() => {
                    // The store is down or a write lost a race: nothing was lost (the run is
                    // where its last durable write left it), so it is taken up again later,
                    // by itself.
                    let pause = inner.after_halt(&id);
                    tracing::warn!(run_id = %id, reason = %halt, ?pause, "run halted by the store; it is taken up again after a pause");
                    inner.resume_after(id.clone(), pause);
                }
                Ok(Err(halt)) => {
                    tracing::error!(run_id = %id, reason = %halt, "run halted; it resumes on the next start");
                }
                Err(panic) => {
                    // Still marked as driven, so that no one drives it meanwhile.
                    let during_attempt = in_attempt.load(Ordering::SeqCst);
                    inner.after_panic(&id, &panic_message(&*panic), during_attempt).await;
                }
            }
            drop(driving);
        });
    }

    /// Forgets run `id`, now another node's: it no longer rests, waits or retries here.
    fn let_go(&self, id: &RunId) {
        self.panics.lock().expect("panics lock").remove(id);
        self.halts.lock().expect("halts lock").remove(id);
        self.resting.lock().expect("resting lock").remove(id);
        self.recovering.lock().expect("recovering lock").remove(id);
        self.awaits.forget(id);
    }

    /// Takes run `id` up again after `pause` as a restart would: an attempt in flight when
    /// its drive halted left no journal entry and runs again, before any cancel. The run is
    /// claimed anew first, under a new epoch, which drops the events the halted attempt
    /// staged: they must not go out with the ones its next attempt stages.
    fn resume_after(self: &Arc<Self>, id: RunId, pause: Duration) {
        self.recovering
            .lock()
            .expect("recovering lock")
            .insert(id.clone());
        let inner = self.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = inner.shutdown.cancelled() => return,
            }
            // Never driven under the old epoch: should the store still be out of reach, this
            // waits again.
            let again = match inner.store.claim(Claim::Again(&id)).await {
                Ok(claimed) if claimed.is_empty() => return inner.let_go(&id),
                Ok(_) => return inner.scheduler.enqueue(id, Resume::Recovered, None),
                Err(error) => error,
            };
            let pause = inner.after_halt(&id);
            tracing::warn!(run_id = %id, error = %again, ?pause, "could not claim a halted run anew; trying again after a pause");
            inner.resume_after(id, pause);
        });
    }

    /// The pause before run `id`, halted by the store again, is taken up again.
    fn after_halt(&self, id: &RunId) -> Duration {
        let mut halts = self.halts.lock().expect("halts lock");
        let count = halts.entry(id.clone()).or_default();
        let (first, last) = AFTER_HALT;
        let pause = first.saturating_mul(1 << (*count).min(16)).min(last);
        *count += 1;
        pause
    }

    /// A drive panicked. During an attempt (before its journal entry was written), that
    /// attempt fails as a trap would, so that the run retries it by its policy or
    /// compensates; elsewhere the run is taken up again a little later, a few times. Either
    /// way it is never left stuck while the host runs.
    async fn after_panic(self: &Arc<Self>, id: &RunId, message: &str, during_attempt: bool) {
        tracing::error!(run_id = %id, panic = message, during_attempt, "the host panicked while driving a run");
        let outcome: Result<Option<Duration>, Halt> = async {
            let Some(mut run) = self.store.owned(id).await? else {
                return Ok(None);
            };
            let workflow = self.workflow_of(&mut run).await?;
            let lifecycle = Lifecycle::new(&workflow.definition);
            let now = self.clock.now_ms();
            let Ok(actions) = lifecycle.on(&mut run.clone(), Event::Recovered, now) else {
                return Ok(None);
            };
            let attempt = actions.iter().find_map(|action| match action {
                Action::Attempt(attempt) => Some(attempt),
                _ => None,
            });
            if let Some(attempt) = attempt.filter(|_| during_attempt) {
                let entry = machine::entry(
                    attempt,
                    Outcome::Host,
                    Some(format!("the host panicked: {message}")),
                    None,
                    (now, now),
                );
                self.store.append_journal(&run, &entry).await?;
                return Ok(Some(Duration::ZERO));
            }
            // Not in an attempt: try again a little later, a few times.
            let panics = {
                let mut panics = self.panics.lock().expect("panics lock");
                let count = panics.entry(id.clone()).or_default();
                *count += 1;
                *count
            };
            if panics >= 3 {
                return Ok(None);
            }
            Ok(Some(AFTER_PANIC))
        }
        .await;
        match outcome {
            Ok(Some(delay)) => {
                let due = self.clock.now_ms() + delay.as_millis() as u64;
                self.scheduler.schedule(id.clone(), due);
            }
            Ok(None) => {
                tracing::error!(run_id = %id, "the run keeps panicking outside its attempts; it waits for the next start");
            }
            Err(halt) if halt.fenced(id) => self.let_go(id),
            Err(halt) => {
                tracing::error!(run_id = %id, reason = %halt, "could not record the panic; the run resumes on the next start");
            }
        }
    }

    /// Drives a run until it ends or waits. `in_attempt` is set from the start of an
    /// attempt until its journal entry is written, for [`Self::after_panic`].
    async fn drive(self: &Arc<Self>, work: Work, in_attempt: &AtomicBool) -> Result<(), Halt> {
        let (mut run, event) = match work {
            Work::New(run) => (*run, Event::Start),
            Work::Queued(id, resume) => {
                let Some(run) = self.store.owned(&id).await? else {
                    return Ok(());
                };
                let event = match resume {
                    Resume::Start => Event::Start,
                    Resume::Recovered => Event::Recovered,
                    Resume::Due => Event::TimerFired,
                };
                (run, event)
            }
        };
        if run.status.is_terminal() {
            return Ok(());
        }
        tracing::Span::current().record("workflow", run.workflow.as_str());
        let unpinned = run.workflow_version.is_none();
        let workflow = match self.workflow_of(&mut run).await {
            Ok(workflow) => workflow,
            Err(WorkflowError::Store(e)) => return Err(e.into()),
            Err(e) => return self.abandon(&mut run, None, e.to_string()).await,
        };
        let lifecycle = Lifecycle::new(&workflow.definition);
        let plugins = match self.pinned_plugins(&run, &workflow.definition).await {
            Ok(plugins) => plugins,
            Err(RegistryError::Store(e)) => return Err(e.into()),
            Err(e) => {
                return self
                    .abandon(&mut run, Some(&lifecycle), e.to_string())
                    .await;
            }
        };
        if unpinned {
            self.save(&mut run).await?;
        }
        // Instances kept warm for the next attempt of the same plugin, one per attempt
        // made at once.
        let mut warm = Vec::new();
        self.note_interests(&run, &workflow.definition).await?;
        let mut actions = lifecycle
            .on(&mut run, event, self.clock.now_ms())
            .unwrap_or_default();
        let mut first = true;
        let mut flights = FuturesUnordered::new();
        loop {
            let (mut attempts, mut next) = (Vec::new(), None);
            for action in std::mem::take(&mut actions) {
                match action {
                    Action::Save => self.save(&mut run).await?,
                    Action::Finish(status) => {
                        self.finish(&mut run, &lifecycle, status).await?;
                        return Ok(());
                    }
                    Action::Attempt(attempt) => attempts.push(attempt),
                    other => next = Some(other),
                }
            }
            // Before a wait (or an await's timeout), a message in the inbox may end it.
            // The index knows the run first, so that one arriving after this look wakes it.
            if matches!(
                next,
                Some(Action::Wait { .. } | Action::Park | Action::Record(_))
            ) && lifecycle.awaiting(&run).is_some()
            {
                self.note_interests(&run, &workflow.definition).await?;
                if let Some(entry) = self.take_message(&run, &lifecycle).await? {
                    actions = lifecycle
                        .on(&mut run, Event::Attempted(&entry), self.clock.now_ms())
                        .unwrap_or_default();
                    continue;
                }
            }
            // Before parking at a child workflow step: start the child (or its undo) if it
            // is not, or end the step if the child has ended (or undone).
            let child = if !matches!(next, Some(Action::Park)) {
                None
            } else if let Some(step) = lifecycle.child_waiting(&run) {
                self.child_step(&run, &lifecycle, step).await?
            } else if let Some((step, asked)) = lifecycle.child_undoing(&run) {
                self.child_undo(&run, &lifecycle, step, asked).await?
            } else {
                None
            };
            if let Some(entry) = child {
                self.record(&run, &entry, Vec::new()).await?;
                actions = lifecycle
                    .on(&mut run, Event::Attempted(&entry), self.clock.now_ms())
                    .unwrap_or_default();
                continue;
            }
            // A cancel asked meanwhile is taken before the next step; its requests are told
            // (dropped) once it is durable: after the save, or after the finish.
            // A recovered run's first attempts may have been in flight at the crash, with
            // effects: they run again before a cancel, so that compensation knows of them.
            let replaying = first && matches!(event, Event::Recovered) && !attempts.is_empty();
            first = false;
            let cancels = if replaying || (attempts.is_empty() && next.is_none()) {
                Vec::new()
            } else {
                self.take_cancels(&run.id)
            };
            if !cancels.is_empty()
                && let Ok(cancel) = lifecycle.on(&mut run, Event::Cancel, self.clock.now_ms())
            {
                for action in cancel {
                    match action {
                        Action::Save => {
                            self.save(&mut run).await?;
                            self.store.flush().await?;
                        }
                        Action::Finish(status) => {
                            self.finish(&mut run, &lifecycle, status).await?;
                            return Ok(());
                        }
                        other => actions.push(other),
                    }
                }
                continue;
            }
            drop(cancels);
            for attempt in attempts {
                if let Some(state) = run.step_mut(&attempt.step) {
                    state.in_flight = true;
                }
                let instance = warm.pop().unwrap_or_default();
                flights.push(self.attempt(&run, &workflow.definition, &plugins, attempt, instance));
            }
            in_attempt.store(!flights.is_empty(), Ordering::SeqCst);
            let timer = match next {
                Some(Action::Record(entry)) => {
                    if entry.outcome == Outcome::Started {
                        // The index knows the run waits before anyone can see it waiting,
                        // so that an event sent on the strength of that is kept for it.
                        let mut waiting = run.clone();
                        waiting.apply(&entry);
                        self.note_interests(&waiting, &workflow.definition).await?;
                    }
                    self.record(&run, &entry, Vec::new()).await?;
                    // A wait is durable once it begins: a sleep's due time is fixed then (a
                    // crash does not restart it), and an event sent on the strength of a
                    // run seen waiting finds it waiting after a crash too.
                    if entry.outcome == Outcome::Started {
                        self.store.flush().await?;
                    }
                    actions = lifecycle
                        .on(&mut run, Event::Attempted(&entry), self.clock.now_ms())
                        .unwrap_or_default();
                    continue;
                }
                Some(Action::Wait { until_ms }) => Some(until_ms),
                _ => None,
            };
            if flights.is_empty() {
                // Nothing in flight: the run waits holding no task, for its timer or for
                // whatever it is parked on.
                let rest = if timer.is_some() && lifecycle.awaiting(&run).is_none() {
                    Rest::Sleeping
                } else {
                    Rest::Waiting
                };
                self.resting
                    .lock()
                    .expect("resting lock")
                    .insert(run.id.clone(), rest);
                if let Some(until_ms) = timer {
                    warm.clear();
                    self.scheduler.schedule(run.id.clone(), until_ms);
                }
                return Ok(());
            }
            // Attempts in flight: the next to end, or the timer of a branch that waits.
            let due = async {
                match timer {
                    Some(until_ms) => {
                        let wait = until_ms.saturating_sub(self.clock.now_ms());
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                    }
                    None => std::future::pending().await,
                }
            };
            let ended = tokio::select! {
                ended = flights.next() => ended,
                () = due => None,
            };
            let event_entry = match ended {
                Some(ended) => {
                    let (entry, events, instance) = ended?;
                    warm.push(instance);
                    self.record(&run, &entry, events).await?;
                    Some(entry)
                }
                None => None,
            };
            in_attempt.store(!flights.is_empty(), Ordering::SeqCst);
            let now = self.clock.now_ms();
            actions = match &event_entry {
                Some(entry) => lifecycle.on(&mut run, Event::Attempted(entry), now),
                None => lifecycle.on(&mut run, Event::TimerFired, now),
            }
            .unwrap_or_default();
        }
    }

    /// What the child workflow step `step` of `run`, which waits, does now: start its child
    /// if it has none yet (and wait), wait while the child runs, or end with the child.
    async fn child_step(
        self: &Arc<Self>,
        run: &Run,
        lifecycle: &Lifecycle<'_>,
        step: &StepDefinition,
    ) -> Result<Option<JournalEntry>, Halt> {
        let id = run.id.child(&step.name);
        let now = self.clock.now_ms();
        let failed = |error: String| Ok(Some(lifecycle.child_failed(step, error, now)));
        match self.store.get(&id).await? {
            Some(child) if child.parent.as_ref() != Some(&run.id) => {
                failed(format!("run `{id}` exists and is not this run's child"))
            }
            Some(child) => Ok(lifecycle.child_ended(step, &child, now)),
            None => {
                let input = match lifecycle.child_input(run, step) {
                    Ok(input) => input,
                    Err(e) => return failed(format!("input: {e}")),
                };
                let workflow = step.workflow.as_deref().expect("a child workflow step");
                // The child is part of its parent's trace.
                let start = Start {
                    id: Some(id),
                    traceparent: run.traceparent.clone(),
                    parent: Some(run.id.clone()),
                    ..Start::default()
                };
                match self.start(workflow, input, start).await {
                    // Its end wakes this run.
                    Ok((child, _)) => Ok(lifecycle.child_ended(step, &child, now)),
                    Err(e) => match self.child_refused(&run.id, e)? {
                        Some(e) => failed(format!("the child could not start: {e}")),
                        None => Ok(None),
                    },
                }
            }
        }
    }

    /// What the child workflow step `step` of `run`, which waits for its child's undo since
    /// `asked_ms`, does now: ask again what is still to ask (a completed child compensates,
    /// a running one is cancelled, one whose compensation failed before is retried), wait
    /// while the child undoes, or end once nothing of the child is left to undo.
    async fn child_undo(
        self: &Arc<Self>,
        run: &Run,
        lifecycle: &Lifecycle<'_>,
        step: &StepDefinition,
        asked_ms: u64,
    ) -> Result<Option<JournalEntry>, Halt> {
        let id = run.id.child(&step.name);
        let now = self.clock.now_ms();
        let undone =
            |error: Option<String>| Ok(Some(lifecycle.child_undone(run, step, error, now)));
        // Never started: nothing to undo.
        let Some(mut child) = self.store.get(&id).await? else {
            return undone(None);
        };
        let workflow = match self.workflow_of(&mut child).await {
            Ok(workflow) => workflow,
            Err(WorkflowError::Store(e)) => return Err(e.into()),
            Err(e) => return undone(Some(e.to_string())),
        };
        let to_undo = Lifecycle::new(&workflow.definition).has_steps_to_undo(&child);
        let since_asked = child.ended_ms.is_some_and(|ended| ended >= asked_ms);
        let asked = match child.status {
            RunStatus::Completed if to_undo => self.undo(&id).await,
            RunStatus::CompensationFailed if since_asked => {
                let error = child.error.map(|e| e.message).unwrap_or_default();
                return undone(Some(format!(
                    "child run `{id}` failed to compensate: {error}"
                )));
            }
            RunStatus::CompensationFailed => self.retry(id.as_str()).await.map(drop),
            RunStatus::Pending | RunStatus::Running => {
                // Told once its driver takes it, which may be after an attempt in flight:
                // its end wakes this run.
                let inner = self.clone();
                self.tasks.spawn(async move {
                    if let Err(e) = inner.cancel(id.as_str()).await {
                        tracing::debug!(child = %id, error = %e, "the child's cancel did not take");
                    }
                });
                Ok(())
            }
            RunStatus::Compensating => Ok(()),
            // Completed with nothing to undo, compensated, cancelled, failed: done.
            _ => return undone(None),
        };
        match asked {
            // Someone else changed it meanwhile: its end wakes this run.
            Ok(())
            | Err(
                EngineError::Conflict(_)
                | EngineError::NotRetryable { .. }
                | EngineError::UnknownRun(_),
            ) => Ok(None),
            Err(e) => match self.child_refused(&run.id, e)? {
                Some(e) => undone(Some(format!("could not undo child run: {e}"))),
                None => Ok(None),
            },
        }
    }

    /// What a refusal of something run `parent` asked for its child (a start, an undo)
    /// makes of the parent's step: with no room, nothing yet (the parent asks again in a
    /// while); at shutdown or on a store error, a halt; else the error, which ends the step.
    fn child_refused(
        &self,
        parent: &RunId,
        error: EngineError,
    ) -> Result<Option<EngineError>, Halt> {
        match error {
            EngineError::Overloaded { .. } => {
                let due = self.clock.now_ms() + CHILD_RETRY.as_millis() as u64;
                self.scheduler.schedule(parent.clone(), due);
                Ok(None)
            }
            EngineError::ShuttingDown => Err(Halt::Shutdown),
            EngineError::Store(e) => Err(e.into()),
            other => Ok(Some(other)),
        }
    }

    /// Closes the children of `run`, which closed: nothing will undo them now. A child
    /// left open (a write that failed, a crash) is only kept longer.
    async fn close_children(&self, run: &Run) {
        for id in run.steps.iter().filter_map(|s| s.child.as_ref()) {
            let closed: Result<(), StoreError> = async {
                // Held here first: it may have ended on another node.
                if let Some(child) = self.store.get(id).await?
                    && child.status.is_terminal()
                    && !child.closed
                    && let Some(Held { run: mut child, .. }) = self.hold(id).await?
                    && !child.closed
                {
                    child.closed = true;
                    self.save(&mut child).await?;
                }
                Ok(())
            }
            .await;
            if let Err(e) = closed {
                tracing::warn!(run_id = %run.id, child = %id, error = %e, "could not close a child run");
            }
        }
    }

    /// Has completed run `id` undo its steps, for its parent: it compensates, and ends
    /// `compensated`.
    async fn undo(self: &Arc<Self>, id: &RunId) -> Result<(), EngineError> {
        let unknown = || EngineError::UnknownRun(id.to_string());
        let mut run = self.hold(id).await?.ok_or_else(unknown)?.run;
        let workflow = self.workflow_of(&mut run).await?;
        let lifecycle = Lifecycle::new(&workflow.definition);
        let admitted = self.admit()?;
        lifecycle
            .on(&mut run, Event::Undo, self.clock.now_ms())
            .map_err(|_| EngineError::NotRetryable {
                id: run.id.clone(),
                status: run.status.as_str(),
            })?;
        run.closed = false;
        match self.save(&mut run).await {
            Err(StoreError::Conflict(id)) => return Err(EngineError::Conflict(id)),
            other => other?,
        }
        let flushed = self.store.flush().await;
        self.hand_over(&run, admitted);
        Ok(flushed?)
    }

    /// Waits up to `timeout` for run `id` to reach a terminal status, and returns it as it
    /// is then.
    async fn wait(&self, id: &RunId, timeout: Duration) -> Result<Run, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.add_waiter(id, tx);
        let run = self.store.get(id).await?;
        let run = run.ok_or_else(|| EngineError::UnknownRun(id.to_string()))?;
        self.follow(run, rx, timeout).await
    }

    /// Has `waiter` told the run `id` when it ends here.
    fn add_waiter(&self, id: &RunId, waiter: oneshot::Sender<Run>) {
        let mut waiters = self.waiters.lock().expect("waiters lock");
        let waiting = waiters.entry(id.clone()).or_default();
        // Callers that gave up (timed out, or found the run finished) are gone.
        waiting.retain(|waiter| !waiter.is_closed());
        waiting.push(waiter);
    }

    /// Waits up to `timeout` for `run` to end, told by `ended` (a waiter registered before
    /// `run` was read) or, for a run another node took over, seen in the store.
    async fn follow(
        &self,
        mut run: Run,
        mut ended: oneshot::Receiver<Run>,
        timeout: Duration,
    ) -> Result<Run, EngineError> {
        let id = run.id.clone();
        let unknown = || EngineError::UnknownRun(id.to_string());
        let deadline = tokio::time::Instant::now() + timeout;
        let mut gone = false;
        while !run.status.is_terminal() && tokio::time::Instant::now() < deadline {
            // A driver here wakes waiters only once the end is durable; a run another
            // node took over ends there, and is seen in the store.
            let look = deadline.min(tokio::time::Instant::now() + WAIT_POLL);
            if !gone {
                match tokio::time::timeout_at(look, &mut ended).await {
                    Ok(Ok(run)) => return Ok(run),
                    Ok(Err(_)) => gone = true,
                    Err(_) => {}
                }
            }
            if gone {
                tokio::time::sleep_until(look).await;
            }
            run = self.store.get(&id).await?.ok_or_else(unknown)?;
        }
        if run.status.is_terminal() {
            // Read from the store, the end may not be durable yet: an end is not told
            // before it is.
            self.store.flush().await?;
        }
        Ok(run)
    }

    /// Ends a run that cannot go on (its definition or a pinned plugin version is gone):
    /// steps to undo cannot be undone without their version, an operator's matter, as a
    /// compensation that keeps failing is.
    async fn abandon(
        &self,
        run: &mut Run,
        lifecycle: Option<&Lifecycle<'_>>,
        message: String,
    ) -> Result<(), Halt> {
        // Without its definition, any completed step may need undoing: an operator's call.
        let to_undo = lifecycle.map_or_else(
            || run.steps.iter().any(|s| s.status == StepStatus::Completed),
            |l| l.has_steps_to_undo(run),
        );
        run.error = Some(RunError {
            step: String::new(),
            message,
        });
        let status = if to_undo {
            RunStatus::CompensationFailed
        } else {
            RunStatus::Failed
        };
        run.status = status;
        run.ended_ms = Some(self.clock.now_ms());
        self.end(run, status, !to_undo).await?;
        Ok(())
    }

    /// The plugin versions `run` is pinned to, by name; a plugin the run did not record (a
    /// run from before pinning) at its current version.
    async fn pinned_plugins(
        &self,
        run: &Run,
        definition: &WorkflowDefinition,
    ) -> Result<HashMap<String, Arc<Plugin>>, RegistryError> {
        let mut plugins = HashMap::new();
        for name in definition.plugins() {
            let plugin = match run.plugins.get(name) {
                Some(digest) => self.plugins.pinned(name, digest).await?,
                None => self
                    .plugins
                    .current(name)
                    .ok_or_else(|| RegistryError::UnknownPlugin(name.to_owned()))?,
            };
            plugins.insert(name.to_owned(), plugin);
        }
        Ok(plugins)
    }

    /// One attempt, as the journal entry that records it, the events it published when it
    /// succeeded, and the instance it used, kept warm. The future holds no borrow of `run`,
    /// which changes as other attempts made at once end.
    fn attempt<'a>(
        self: &'a Arc<Self>,
        run: &Run,
        definition: &'a WorkflowDefinition,
        plugins: &'a HashMap<String, Arc<Plugin>>,
        attempt: Attempt,
        mut warm: WarmInstance,
    ) -> impl Future<Output = Result<(JournalEntry, Vec<PublishedEvent>, WarmInstance), Halt>> + 'a
    {
        let caller = Caller {
            run_id: run.id.clone(),
            workflow: run.workflow.clone(),
            traceparent: run.traceparent.clone(),
            context: machine::context_for(run, definition, &attempt.step, attempt.direction),
        };
        async move {
            let (entry, events) = self
                .call(caller, definition, plugins, &attempt, &mut warm)
                .await?;
            Ok((entry, events, warm))
        }
    }

    /// [`Self::attempt`]'s call of the plugin.
    async fn call(
        self: &Arc<Self>,
        caller: Caller,
        definition: &WorkflowDefinition,
        plugins: &HashMap<String, Arc<Plugin>>,
        attempt: &Attempt,
        warm: &mut WarmInstance,
    ) -> Result<(JournalEntry, Vec<PublishedEvent>), Halt> {
        let Caller {
            run_id,
            workflow,
            traceparent,
            context,
        } = caller;
        if self.shutdown.is_cancelled() {
            return Err(Halt::Shutdown);
        }
        let step = definition
            .step(&attempt.step)
            .expect("the lifecycle names steps of its definition");
        let plugin = &plugins[step
            .plugin
            .as_deref()
            .expect("the lifecycle attempts plugin steps only")];
        let info = StepInfo {
            run_id: run_id.to_string(),
            workflow,
            step: step.name.clone(),
            attempt: attempt.attempt,
            idempotency_key: format!("{}:{}:{}", run_id, step.name, attempt.direction.as_str()),
        };
        // A recorded workflow keeps the context each attempt saw, to replay it.
        let input = definition.record.then(|| context.clone());
        let context = Value::Object(context).to_string();
        let started_ms = self.clock.now_ms();
        let started = std::time::Instant::now();
        // The attempt is a span of the run's trace; the plugin's service calls and events,
        // its children.
        let mut span = trace::Span::start(
            || format!("{} {}", attempt.direction.as_str(), step.name),
            Kind::Internal,
            traceparent.as_deref(),
        );
        if span.is_recording() {
            span.set("run_id", run_id.to_string());
            span.set("workflow", info.workflow.clone());
            span.set("attempt", i64::from(attempt.attempt));
            span.set("plugin", plugin.name().to_string());
        }
        let options = CallOptions {
            timeout: step.timeout,
            traceparent: span.traceparent(),
            record: definition.record,
            replay: None,
        };
        let call =
            self.runtime
                .call_step_in(warm, plugin, attempt.direction, &info, &context, options);
        // A panic in the host during the call (a capability's bug) fails this attempt as a
        // trap would; the instance it used goes with it.
        let result = match AssertUnwindSafe(call).catch_unwind().await {
            Ok(result) => result,
            Err(panic) => {
                warm.clear();
                let message = panic_message(&*panic);
                tracing::error!(run_id = %run_id, step = %step.name, panic = %message, "the host panicked during a step call");
                Err(CallError::Failed {
                    plugin: plugin.name().clone(),
                    detail: format!("the host panicked: {message}"),
                })
            }
        };
        let (result, events, calls, reads, settings) = match result {
            Ok(answer) => (
                Ok(answer.result),
                answer.events,
                answer.calls,
                answer.reads,
                answer.settings,
            ),
            Err(error) => (
                Err(error),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                BTreeMap::new(),
            ),
        };
        let (outcome, output, error) = match result {
            Ok(Ok(json)) => match step_output(&json) {
                Ok(output) => (Outcome::Ok, Some(output), None),
                Err(error) => (Outcome::Fatal, None, Some(error)),
            },
            Ok(Err(StepError::Retryable(message))) => (Outcome::Retryable, None, Some(message)),
            Ok(Err(StepError::Fatal(message))) => (Outcome::Fatal, None, Some(message)),
            // A larger output will not shrink on a retry.
            Err(error @ CallError::OutputTooLarge { .. }) => {
                (Outcome::Fatal, None, Some(error.to_string()))
            }
            Err(error) => (Outcome::Host, None, Some(error.to_string())),
        };
        // Only a successful attempt's events go out (the transactional outbox).
        let events = if outcome == Outcome::Ok {
            events
        } else {
            Vec::new()
        };
        span.set("outcome", outcome.as_str());
        if let Some(error) = &error {
            span.fail(error.clone());
        }
        drop(span);
        self.attempt_histograms.record(
            &info.workflow,
            &step.name,
            attempt.direction,
            outcome,
            started.elapsed(),
        );
        let mut entry = machine::entry(
            attempt,
            outcome,
            error,
            output,
            (started_ms, self.clock.now_ms()),
        );
        entry.recording = input.map(|input| {
            Box::new(Recording {
                input,
                calls,
                events: events.iter().map(Into::into).collect(),
                cache: reads,
                config: settings,
            })
        });
        Ok((entry, events))
    }

    /// Journals an attempt: one small write. Its events go to the outbox first, gated on
    /// this journal entry, so that they are released only once the step's result is
    /// durable, and dropped if a crash loses it.
    async fn record(
        &self,
        run: &Run,
        entry: &JournalEntry,
        events: Vec<PublishedEvent>,
    ) -> Result<(), StoreError> {
        let published = !events.is_empty();
        let gate = Gate::Journal {
            run_id: run.id.clone(),
            seq: run.journaled,
            epoch: run.epoch,
        };
        self.outbox.stage(events, Some(gate)).await?;
        self.store.append_journal(run, entry).await?;
        if published {
            self.outbox.wake();
        }
        Ok(())
    }

    /// Writes `run`'s record as its next revision.
    async fn save(&self, run: &mut Run) -> Result<(), StoreError> {
        run.updated_ms = run.updated_ms.max(self.clock.now_ms());
        run.revision += 1;
        self.store.save(run).await
    }

    /// Records a terminal status durably, then wakes whoever waits for the run.
    async fn finish(
        &self,
        run: &mut Run,
        lifecycle: &Lifecycle<'_>,
        status: RunStatus,
    ) -> Result<(), Halt> {
        let closed = !lifecycle.retryable(run);
        self.end(run, status, closed).await
    }

    /// Writes the end of `run` (announced by its lifecycle event), closed if no retry can
    /// take it up again, makes all of it durable and tells whoever waits.
    async fn end(&self, run: &mut Run, status: RunStatus, closed: bool) -> Result<(), Halt> {
        // The event is staged with the record that holds the end, gated on it: where the
        // store writes them apart, a crash between the two leaves an event that is never
        // released, and the run, resumed, ends again and announces once.
        let event = lifecycle_event(run, status, self.clock.now_ms());
        let gate = Gate::Record {
            run_id: run.id.clone(),
            revision: run.revision + 1,
            epoch: run.epoch,
        };
        let announcement = OutboxEntry {
            event,
            gate: Some(gate),
        };
        // A child stays open while its parent may still undo it: its record and pins are
        // kept until the parent closes.
        run.closed = closed && run.parent.is_none();
        run.updated_ms = run.updated_ms.max(self.clock.now_ms());
        run.revision += 1;
        self.store.save_and_stage(run, &[announcement]).await?;
        self.outbox.wake();
        // Saved ended, it rests no more, whether or not the flush below succeeds.
        self.resting.lock().expect("resting lock").remove(&run.id);
        self.store.flush().await?;
        metrics::counter!(RUNS_ENDED, "workflow" => run.workflow.clone(), "status" => status.as_str())
            .increment(1);
        if self.awaits.forget(&run.id)
            && let Err(error) = self.store.note_awaits(&run.id, &[]).await
        {
            // Left noted: a node that looks finds the run ended.
            tracing::debug!(run_id = %run.id, %error, "could not clear what an ended run awaited");
        }
        let waiters = self
            .waiters
            .lock()
            .expect("waiters lock")
            .remove(&run.id)
            .unwrap_or_default();
        for waiter in waiters {
            let _ = waiter.send(run.clone());
        }
        // A child's end is its parent's next step, here: a parent another node holds
        // (they parted in a takeover) is claimed, and driven here.
        if let Some(parent) = &run.parent {
            match self.hold(parent).await {
                Ok(Some(held)) if held.taken_over => {}
                Ok(_) => self.scheduler.schedule(parent.clone(), self.clock.now_ms()),
                Err(error) => {
                    tracing::warn!(run_id = %run.id, %parent, %error, "could not take up the parent run; its holder does when it next looks");
                    self.scheduler.schedule(parent.clone(), self.clock.now_ms());
                }
            }
        }
        if run.closed {
            self.close_children(run).await;
        }
        tracing::debug!(status = status.as_str(), "run finished");
        Ok(())
    }
}

/// What `run` wants of events, by topic: the topic its await step waits on, and those its
/// await steps ahead keep (`buffer`).
fn interests(run: &Run, definition: &WorkflowDefinition) -> Vec<(String, Interest)> {
    Lifecycle::new(definition)
        .interests(run)
        .into_iter()
        .filter_map(|(step, awaits)| {
            let topic = awaits.topic.clone()?;
            let waiting = run
                .step(&step.name)
                .is_some_and(|s| s.status == StepStatus::Waiting);
            if !waiting && !awaits.buffer {
                return None;
            }
            let context = machine::context_for(run, definition, &step.name, Direction::Execute);
            let interest = Interest {
                waiting,
                matches: awaits.matches.clone(),
                context: Value::Object(context),
            };
            Some((topic, interest))
        })
        .collect()
}

/// A new run's state of every step of `definition`, its branches' steps too.
fn pending_steps(definition: &WorkflowDefinition) -> impl Iterator<Item = StepState> + '_ {
    definition.all_steps().map(|(step, branch)| {
        StepState::pending(&step.name).in_branch(branch.map(|b| b.name.as_str()))
    })
}

/// Runs `request` to its end on a task of its own, whatever happens to its caller: an HTTP
/// handler is dropped when its client hangs up, and a start or retry dropped half-way could
/// leave a stored run that no one drives.
async fn detached<T: Send + 'static>(
    request: impl Future<Output = Result<T, EngineError>> + Send + 'static,
) -> Result<T, EngineError> {
    // In the caller's span, so that what the request does is part of its trace.
    tokio::spawn(request.in_current_span())
        .await
        .unwrap_or_else(|e| {
            let what = if e.is_panic() {
                panic_message(&*e.into_panic())
            } else {
                "the runtime stopped".to_owned()
            };
            tracing::error!(panic = %what, "a request failed in the host");
            Err(EngineError::Panicked(what))
        })
}

/// `flowhost.run.<status>` for a run that ended: its id, workflow, status and error.
fn lifecycle_event(run: &Run, status: RunStatus, now_ms: u64) -> PublishedEvent {
    let data = serde_json::json!({
        "run_id": run.id,
        "workflow": run.workflow,
        "status": status.as_str(),
        "error": run.error,
    });
    let mut event = PublishedEvent::new(
        &format!("flowhost.run.{}", status.as_str()),
        "flowhost",
        data.to_string(),
        Some(run.id.to_string()),
        now_ms,
    );
    event.traceparent = run.traceparent.clone();
    event
}

/// What a panic said, if it said it as text.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
