//! The saga engine: drives runs through their steps, forward and, after a failure, back.
//!
//! Each run is one tokio task, bounded by a semaphore. Every attempt is one journal entry
//! (with what the step returned), which is all a step writes; the run's record is rewritten
//! only when its status changes. Nothing is flushed to disk but where the API acknowledges
//! something: a new run before its 202, a finished run before anyone is told (group commit
//! shares each flush between all runs waiting for one). After `kill -9`,
//! [`Engine::recover`] resumes every unfinished run from its last durable journal entry and
//! re-runs the attempt that was in flight, with the same attempt number and idempotency key,
//! so services that honour the key see the repeat as a repeat. So a run of five steps costs
//! two flushes and about a dozen small writes.
//!
//! Retryable errors, traps and deadlines retry per the step's policy; a fatal error or
//! exhausted retries compensates the completed steps in reverse order. A compensation that
//! keeps failing stops the run in `compensation_failed` until [`Engine::retry`].
//!
//! A run is pinned to the plugin versions that were current when it started (recorded in
//! [`Run::plugins`]): every step and compensation runs on those, across hot swaps and
//! restarts, while new runs take the current versions.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::definition::{StepConfig, WorkflowConfig};
use crate::Runtime;
use crate::bindings::types::{StepError, StepInfo};
use crate::events::{Outbox, new_event};
use crate::plugins::{PluginRegistry, RegistryError};
use crate::runtime::{Plugin, WarmInstance};
use crate::store::events::{Gate, PublishedEvent};
use crate::store::{
    Created, Direction, JournalEntry, Outcome, RUN_FORMAT, Run, RunError, RunStatus, RunStore,
    StepState, StepStatus, StoreError, now_ms,
};

/// Longest client-chosen run id.
const MAX_RUN_ID: usize = 128;

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
        id: String,
        /// Its status.
        status: &'static str,
    },
    /// A client-chosen run id is malformed.
    #[error("invalid run id: {0}")]
    InvalidId(String),
    /// The host is shutting down and starts nothing new.
    #[error("the host is shutting down")]
    ShuttingDown,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A workflow definition, validated.
struct Workflow {
    steps: Vec<StepConfig>,
}

impl Workflow {
    /// Whether `run` has completed steps that its compensation would undo.
    fn has_steps_to_undo(&self, run: &Run) -> bool {
        self.steps
            .iter()
            .zip(&run.steps)
            .any(|(config, state)| config.compensate && state.status == StepStatus::Completed)
    }
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
    workflows: BTreeMap<String, Workflow>,
    permits: Arc<Semaphore>,
    /// Callers waiting for runs to end. A std `Mutex`: held to push or drain, never across
    /// an `.await`.
    waiters: Mutex<HashMap<String, Vec<oneshot::Sender<Run>>>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// A run being driven, with the status its stored record has, which the store needs to
/// keep its status index right without reading the record back, and the instance its last
/// step call used.
struct Tracked {
    run: Run,
    stored: RunStatus,
    warm: WarmInstance,
}

impl std::ops::Deref for Tracked {
    type Target = Run;
    fn deref(&self) -> &Run {
        &self.run
    }
}

impl std::ops::DerefMut for Tracked {
    fn deref_mut(&mut self) -> &mut Run {
        &mut self.run
    }
}

/// A workflow with the plugin versions one run is pinned to.
struct Bound<'a> {
    steps: Vec<(&'a StepConfig, Arc<Plugin>)>,
}

/// What the forward pass ended with.
enum Forward {
    Completed,
    /// This step failed for good.
    Failed,
}

/// Why a drive stopped before the run reached a terminal status; it resumes on restart.
#[derive(Debug, thiserror::Error)]
enum Halt {
    #[error("shutting down")]
    Shutdown,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Engine {
    /// An engine over `store`, running the workflows in `workflows` with the plugins in
    /// `plugins`, at most `max_concurrent_runs` at a time. Fails naming the workflow and
    /// key if a step names an unknown plugin (the registry has checked that each is a
    /// `step-plugin`).
    pub fn new(
        store: Arc<dyn RunStore>,
        outbox: Arc<Outbox>,
        runtime: Arc<Runtime>,
        plugins: Arc<PluginRegistry>,
        workflows: &BTreeMap<String, WorkflowConfig>,
        max_concurrent_runs: usize,
    ) -> Result<Self, String> {
        let resolved = resolve(&plugins, workflows)?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                outbox,
                runtime,
                plugins,
                workflows: resolved,
                permits: Arc::new(Semaphore::new(max_concurrent_runs)),
                waiters: Mutex::default(),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        })
    }

    /// Starts a run of `workflow` with `input` as its context, durably, unless a run with
    /// `id` or with `idempotency_key` exists: then returns that one. The flag says whether
    /// the run is new.
    pub async fn start(
        &self,
        workflow: &str,
        input: Map<String, Value>,
        id: Option<String>,
        idempotency_key: Option<String>,
    ) -> Result<(Run, bool), EngineError> {
        let definition = self
            .inner
            .workflows
            .get(workflow)
            .ok_or_else(|| EngineError::UnknownWorkflow(workflow.to_owned()))?;
        if self.inner.shutdown.is_cancelled() {
            return Err(EngineError::ShuttingDown);
        }
        if let Some(id) = &id {
            validate_id(id)?;
        }
        // A run that can start at once is stored as running: one write less than storing
        // it pending and then saving it running.
        let permit = self.inner.permits.clone().try_acquire_owned().ok();
        let now = now_ms();
        let mut run = Run {
            format: RUN_FORMAT,
            id: id.unwrap_or_else(|| ulid::Ulid::new().to_string()),
            workflow: workflow.to_owned(),
            status: if permit.is_some() {
                RunStatus::Running
            } else {
                RunStatus::Pending
            },
            input,
            steps: definition
                .steps
                .iter()
                .map(|step| StepState::pending(&step.name))
                .collect(),
            error: None,
            plugins: BTreeMap::new(),
            idempotency_key,
            created_ms: now,
            updated_ms: now,
            ended_ms: None,
            journaled: 0,
        };
        let created = {
            // The versions current now are the run's for its whole life. The registry does
            // not collect a version while this guard is held, so the run is in the store
            // before any version it pins could go.
            let current = self.inner.plugins.current_versions();
            for step in &definition.steps {
                if let Some(plugin) = current.get(&step.plugin) {
                    run.plugins
                        .insert(step.plugin.clone(), plugin.digest().to_owned());
                }
            }
            self.inner.store.create(&run)
        };
        match created? {
            Created::Existing(existing) => Ok((*existing, false)),
            Created::New => {
                self.inner.store.flush().await?;
                self.spawn(run.clone(), permit);
                Ok((run, true))
            }
        }
    }

    /// The run with this id.
    pub fn get(&self, id: &str) -> Result<Option<Run>, EngineError> {
        Ok(self.inner.store.get(id)?)
    }

    /// The run store, for listings and journals.
    pub fn store(&self) -> &Arc<dyn RunStore> {
        &self.inner.store
    }

    /// Waits up to `timeout` for run `id` to reach a terminal status, and returns it as it
    /// is then.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<Run, EngineError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut waiters = self.inner.waiters.lock().expect("waiters lock");
            let waiting = waiters.entry(id.to_owned()).or_default();
            // Callers that gave up (timed out, or found the run finished) are gone.
            waiting.retain(|waiter| !waiter.is_closed());
            waiting.push(tx);
        }
        let run = self
            .get(id)?
            .ok_or_else(|| EngineError::UnknownRun(id.to_owned()))?;
        if run.status.is_terminal() {
            return Ok(run);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(run)) => Ok(run),
            _ => self
                .get(id)?
                .ok_or_else(|| EngineError::UnknownRun(id.to_owned())),
        }
    }

    /// Drives the compensation of a `failed` or `compensation_failed` run again.
    pub async fn retry(&self, id: &str) -> Result<Run, EngineError> {
        let mut run = self
            .get(id)?
            .ok_or_else(|| EngineError::UnknownRun(id.to_owned()))?;
        let retryable = matches!(
            run.status,
            RunStatus::Failed | RunStatus::CompensationFailed
        ) && self.inner.workflows.get(&run.workflow).is_some_and(|wf| {
            wf.steps.iter().zip(&run.steps).any(|(config, state)| {
                config.compensate
                    && matches!(
                        state.status,
                        StepStatus::Completed | StepStatus::CompensationFailed
                    )
            })
        });
        if !retryable {
            return Err(EngineError::NotRetryable {
                id: run.id,
                status: run.status.as_str(),
            });
        }
        let previous = run.status;
        run.status = RunStatus::Compensating;
        run.ended_ms = None;
        run.updated_ms = now_ms();
        self.inner.store.save(&run, previous)?;
        self.inner.store.flush().await?;
        self.spawn(run.clone(), None);
        Ok(run)
    }

    /// Resumes every run that was pending, running or compensating when the host stopped.
    /// Returns how many.
    pub fn recover(&self) -> Result<usize, EngineError> {
        let runs = self.inner.store.unfinished()?;
        let count = runs.len();
        for run in runs {
            self.spawn(run, None);
        }
        if count > 0 {
            tracing::info!(count, "resuming unfinished runs");
        }
        Ok(count)
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

    /// Drives `run` on its own task once it holds a permit (`permit`, or one it waits for).
    fn spawn(&self, run: Run, permit: Option<OwnedSemaphorePermit>) {
        let inner = self.inner.clone();
        self.inner.tasks.spawn(async move {
            let _permit = match permit {
                Some(permit) => permit,
                None => match inner.permits.clone().acquire_owned().await {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            let id = run.id.clone();
            let span = tracing::info_span!(parent: None, "flowhost.run", run_id = %id, workflow = %run.workflow);
            if let Err(halt) = inner.drive(run).instrument(span).await {
                tracing::info!(run_id = %id, reason = %halt, "run halted; it resumes on the next start");
            }
        });
    }
}

impl Inner {
    async fn drive(&self, run: Run) -> Result<(), Halt> {
        let mut run = Tracked {
            stored: run.status,
            run,
            warm: WarmInstance::default(),
        };
        let Some(workflow) = self.workflows.get(&run.workflow) else {
            run.error = Some(RunError {
                step: String::new(),
                message: format!("workflow `{}` is no longer configured", run.workflow),
            });
            return self.finish(&mut run, RunStatus::Failed).await;
        };
        let plugins = match self.pinned(&run, workflow).await? {
            Ok(plugins) => plugins,
            Err(message) => {
                // Steps to undo cannot be undone without their version: an operator's
                // matter, as a compensation that keeps failing is.
                let to_undo = workflow.has_steps_to_undo(&run);
                run.error = Some(RunError {
                    step: String::new(),
                    message,
                });
                let status = if to_undo {
                    RunStatus::CompensationFailed
                } else {
                    RunStatus::Failed
                };
                return self.finish(&mut run, status).await;
            }
        };
        let bound = &Bound {
            steps: workflow
                .steps
                .iter()
                .map(|step| (step, plugins[&step.plugin].clone()))
                .collect(),
        };
        if matches!(run.status, RunStatus::Pending | RunStatus::Running) {
            if run.status == RunStatus::Pending {
                run.status = RunStatus::Running;
                self.save(&mut run)?;
            }
            match self.forward(&mut run, bound).await? {
                Forward::Completed => return self.finish(&mut run, RunStatus::Completed).await,
                Forward::Failed => {
                    if !workflow.has_steps_to_undo(&run) {
                        return self.finish(&mut run, RunStatus::Failed).await;
                    }
                    run.status = RunStatus::Compensating;
                    self.save(&mut run)?;
                }
            }
        }
        self.backward(&mut run, bound).await
    }

    /// The versions `run` is pinned to, by plugin name; a plugin the run did not record (a
    /// step added to the workflow since) at its current version. The inner error, a
    /// version that is gone, fails the run.
    async fn pinned(
        &self,
        run: &Run,
        workflow: &Workflow,
    ) -> Result<Result<HashMap<String, Arc<Plugin>>, String>, Halt> {
        let mut plugins = HashMap::new();
        for step in &workflow.steps {
            if plugins.contains_key(&step.plugin) {
                continue;
            }
            let plugin = match run.plugins.get(&step.plugin) {
                Some(digest) => match self.plugins.pinned(&step.plugin, digest).await {
                    Ok(plugin) => plugin,
                    Err(RegistryError::Store(e)) => return Err(Halt::Store(e)),
                    Err(e) => return Ok(Err(e.to_string())),
                },
                None => match self.plugins.current(&step.plugin) {
                    Some(plugin) => plugin,
                    None => {
                        return Ok(Err(format!("plugin `{}` is not loaded", step.plugin)));
                    }
                },
            };
            plugins.insert(step.plugin.clone(), plugin);
        }
        Ok(Ok(plugins))
    }

    /// Executes the steps that have not completed, in order.
    async fn forward(&self, run: &mut Tracked, workflow: &Bound<'_>) -> Result<Forward, Halt> {
        for (index, (config, plugin)) in workflow.steps.iter().enumerate() {
            loop {
                let state = &mut run.steps[index];
                match state.status {
                    StepStatus::Completed => break,
                    StepStatus::Failed => {}
                    _ if state.attempts >= config.retry.attempts => {
                        state.status = StepStatus::Failed;
                    }
                    _ => {
                        let attempt = state.attempts + 1;
                        // Back off after a failed attempt, also one a restart found.
                        if attempt > 1 {
                            self.pause(run, config.retry.backoff(attempt)).await?;
                        }
                        let context = Value::Object(run.context_after(index)).to_string();
                        let entry = self
                            .call(run, config, plugin, Direction::Execute, attempt, &context)
                            .await?;
                        self.record(run, entry)?;
                        continue;
                    }
                }
                // Failed for good: by the plugin's word, or out of attempts.
                let state = &mut run.steps[index];
                state.ended_ms.get_or_insert_with(now_ms);
                let message = state.error.clone().unwrap_or_default();
                run.error = Some(RunError {
                    step: config.name.clone(),
                    message,
                });
                return Ok(Forward::Failed);
            }
        }
        Ok(Forward::Completed)
    }

    /// Compensates the completed steps in reverse order.
    async fn backward(&self, run: &mut Tracked, workflow: &Bound<'_>) -> Result<(), Halt> {
        for (index, (config, plugin)) in workflow.steps.iter().enumerate().rev() {
            if !config.compensate {
                continue;
            }
            // Attempts in this drive: an operator's retry, or a restart, grants new ones.
            let mut tries = 0;
            loop {
                let state = &mut run.steps[index];
                match state.status {
                    StepStatus::Completed | StepStatus::Compensating => {}
                    StepStatus::CompensationFailed if tries == 0 => {}
                    StepStatus::CompensationFailed => break,
                    _ => break,
                }
                if tries >= config.retry.attempts {
                    state.status = StepStatus::CompensationFailed;
                    break;
                }
                if tries > 0 {
                    self.pause(run, config.retry.backoff(tries + 1)).await?;
                }
                tries += 1;
                let attempt = run.steps[index].compensation_attempts + 1;
                let context = Value::Object(run.context_after(index + 1)).to_string();
                let entry = self
                    .call(
                        run,
                        config,
                        plugin,
                        Direction::Compensate,
                        attempt,
                        &context,
                    )
                    .await?;
                self.record(run, entry)?;
            }
            let state = &mut run.steps[index];
            if state.status == StepStatus::CompensationFailed {
                state.ended_ms.get_or_insert_with(now_ms);
                let error = state.error.clone().unwrap_or_default();
                run.error = Some(RunError {
                    step: config.name.clone(),
                    message: format!("compensation failed: {error}"),
                });
                return self.finish(run, RunStatus::CompensationFailed).await;
            }
        }
        self.finish(run, RunStatus::Compensated).await
    }

    /// One attempt of one step, as the journal entry that records it.
    async fn call(
        &self,
        run: &mut Tracked,
        config: &StepConfig,
        plugin: &Plugin,
        direction: Direction,
        attempt: u32,
        context: &str,
    ) -> Result<(JournalEntry, Vec<PublishedEvent>), Halt> {
        if self.shutdown.is_cancelled() {
            return Err(Halt::Shutdown);
        }
        let info = StepInfo {
            run_id: run.id.clone(),
            workflow: run.workflow.clone(),
            step: config.name.clone(),
            attempt,
            idempotency_key: format!("{}:{}:{}", run.id, config.name, direction.as_str()),
        };
        let started_ms = now_ms();
        let result = self
            .runtime
            .call_step_in(
                &mut run.warm,
                plugin,
                direction,
                &info,
                context,
                config.timeout,
            )
            .await;
        let (result, events) = match result {
            Ok(answer) => (Ok(answer.result), answer.events),
            Err(error) => (Err(error), Vec::new()),
        };
        let (outcome, output, error) = match result {
            Ok(Ok(json)) => match serde_json::from_str::<Value>(&json) {
                Ok(Value::Object(output)) => (Outcome::Ok, Some(output), None),
                Ok(Value::Null) => (Outcome::Ok, Some(Map::new()), None),
                Ok(_) => (
                    Outcome::Fatal,
                    None,
                    Some("the step returned JSON that is not an object".into()),
                ),
                Err(e) => (
                    Outcome::Fatal,
                    None,
                    Some(format!("the step returned malformed JSON: {e}")),
                ),
            },
            Ok(Err(StepError::Retryable(message))) => (Outcome::Retryable, None, Some(message)),
            Ok(Err(StepError::Fatal(message))) => (Outcome::Fatal, None, Some(message)),
            Err(error) => (Outcome::Host, None, Some(error.to_string())),
        };
        // Only a successful attempt's events go out (the transactional outbox).
        let events = if outcome == Outcome::Ok {
            events
        } else {
            Vec::new()
        };
        let entry = JournalEntry {
            step: config.name.clone(),
            direction,
            attempt,
            started_ms,
            ended_ms: now_ms(),
            outcome,
            error,
            output: output.filter(|_| direction == Direction::Execute),
        };
        Ok((entry, events))
    }

    /// Journals an attempt and applies it to the run: one small write per attempt. Its
    /// events go to the outbox first, gated on this journal entry, so that they are
    /// released only once the step's result is durable, and dropped if a crash loses it.
    fn record(
        &self,
        run: &mut Tracked,
        (entry, events): (JournalEntry, Vec<PublishedEvent>),
    ) -> Result<(), StoreError> {
        let published = !events.is_empty();
        let gate = Gate {
            run_id: run.id.clone(),
            seq: run.journaled,
        };
        self.outbox.stage(events, Some(gate))?;
        self.store.append_journal(&run.id, run.journaled, &entry)?;
        run.apply(&entry);
        if published {
            self.outbox.wake();
        }
        Ok(())
    }

    /// Sleeps between attempts, unless the host is shutting down, without holding an
    /// instance idle.
    async fn pause(&self, run: &mut Tracked, delay: Duration) -> Result<(), Halt> {
        run.warm.clear();
        tokio::select! {
            () = tokio::time::sleep(delay) => Ok(()),
            () = self.shutdown.cancelled() => Err(Halt::Shutdown),
        }
    }

    fn save(&self, run: &mut Tracked) -> Result<(), StoreError> {
        run.updated_ms = now_ms();
        self.store.save(&run.run, run.stored)?;
        run.stored = run.run.status;
        Ok(())
    }

    /// Records a terminal status durably, then wakes whoever waits for the run.
    async fn finish(&self, run: &mut Tracked, status: RunStatus) -> Result<(), Halt> {
        run.status = status;
        run.ended_ms = Some(now_ms());
        // Written before the record, so that the record's flush covers it too.
        let lifecycle = lifecycle_event(run, status);
        self.outbox.stage(vec![lifecycle], None)?;
        self.save(run)?;
        self.store.flush().await?;
        let waiters = self
            .waiters
            .lock()
            .expect("waiters lock")
            .remove(&run.id)
            .unwrap_or_default();
        for waiter in waiters {
            let _ = waiter.send(run.clone());
        }
        tracing::debug!(status = status.as_str(), "run finished");
        Ok(())
    }
}

/// `flowhost.run.<status>` for a run that ended: its id, workflow, status and error.
fn lifecycle_event(run: &Run, status: RunStatus) -> PublishedEvent {
    let data = serde_json::json!({
        "run_id": run.id,
        "workflow": run.workflow,
        "status": status.as_str(),
        "error": run.error,
    });
    new_event(
        &format!("flowhost.run.{}", status.as_str()),
        "flowhost",
        data.to_string(),
        Some(run.id.clone()),
    )
}

/// Each workflow, validated, or an error naming the workflow and key.
fn resolve(
    plugins: &PluginRegistry,
    workflows: &BTreeMap<String, WorkflowConfig>,
) -> Result<BTreeMap<String, Workflow>, String> {
    let mut resolved = BTreeMap::new();
    for (name, workflow) in workflows {
        workflow
            .validate()
            .map_err(|(key, reason)| format!("workflows.{name}.{key}: {reason}"))?;
        for step in &workflow.steps {
            if plugins.current(&step.plugin).is_none() {
                return Err(format!(
                    "workflows.{name}.steps.{}.plugin: unknown plugin `{}`",
                    step.name, step.plugin
                ));
            }
        }
        resolved.insert(
            name.clone(),
            Workflow {
                steps: workflow.steps.clone(),
            },
        );
    }
    Ok(resolved)
}

fn validate_id(id: &str) -> Result<(), EngineError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_RUN_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(EngineError::InvalidId(format!(
            "`{id}`: 1 to {MAX_RUN_ID} characters of letters, digits, `-`, `_` and `.`"
        )))
    }
}
