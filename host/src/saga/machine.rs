//! The run lifecycle as a pure state machine: the run's state and an event in, the new state
//! and the actions to take out. No I/O, no clock reads, no randomness: the engine feeds it
//! events, performs the actions it returns, and feeds it the outcome.
//!
//! ```text
//!            Start ──► running ──(every step ok)──────────────► completed
//!                        │  ▲ a failed attempt waits out its backoff (Wait), then tries again
//!                        │  └─────────────────┘
//!                        ├─(a step fails for good, nothing to undo)──► failed
//!                        └─(a step fails for good / Cancel)──► compensating
//!                                                                │ undo completed steps, last first
//!                                 ┌──────────────────────────────┤
//!                                 ▼                              ▼
//!                   compensated (cancelled, if asked)    compensation_failed ──Retry──► compensating
//! ```
//!
//! The state is the [`Run`] itself — its status and each step's state, folded from the
//! journal — so a run read back after a crash is the state it was in, and [`Event::Recovered`]
//! picks up where the journal ends: an attempt that was in flight runs again with the same
//! number. Backoffs are decided here and are deterministic: the delay before attempt `n`
//! of a step is its policy's jittered delay with a seed of the run, step, direction and
//! attempt, counted from when the previous attempt ended; so a restart waits only for what
//! is left, and the engine need not store a due time apart from the journal.
//!
//! Steps that are not plugin calls are decided here too, as journal entries the machine
//! writes itself ([`Action::Record`]): a step whose `when` is false is recorded `skipped`; a
//! sleep is recorded `started` with its due time, then `ok` once that time has come, the run
//! holding no task meanwhile ([`Action::Wait`]). The due time is computed once, when the
//! sleep starts, and read back from the journal after a restart, so each sleep ends once.
//!
//! Steps are matched to the definition by name, never by position. The invariants, which
//! the property tests below hold over random sequences of outcomes, crashes, retries and
//! cancels:
//!
//! - only completed steps are compensated, each once per round, in reverse order;
//! - no step executes after compensation began;
//! - a run ends `compensated` (or `cancelled`) only when every compensable completed step
//!   was compensated;
//! - a terminal state changes only by an explicit [`Event::Retry`].

use crate::model::retry::seed;
use serde_json::{Map, Value};

use crate::model::{
    AwaitDefinition, Direction, ExprError, JournalEntry, Message, OnTimeout, Outcome, Run,
    RunError, RunStatus, StepDefinition, StepKind, StepStatus, WorkflowDefinition,
};

/// What happened to a run.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// The engine takes up a new run (or one that waited for a slot).
    Start,
    /// The engine takes up a run a restart found unfinished; an attempt that was in flight
    /// left no journal entry and runs again.
    Recovered,
    /// The time a [`Action::Wait`] named has come.
    TimerFired,
    /// An attempt ended; its journal entry is written.
    Attempted(&'a JournalEntry),
    /// An operator asks for a failed run's compensation again.
    Retry,
    /// Someone asks for the run to stop: completed steps are undone, and it ends
    /// `cancelled`.
    Cancel,
}

/// An attempt to make: which step, which way, which number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The step's name.
    pub step: String,
    /// Execute or compensate.
    pub direction: Direction,
    /// 1 for the first in this direction; the journal entry carries it.
    pub attempt: u32,
}

/// What the engine must do, in the order given: at most one [`Action::Save`], then exactly
/// one of the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write the run's record: its status (or its cancel flag) changed.
    Save,
    /// Make this attempt, then report it with [`Event::Attempted`].
    Attempt(Attempt),
    /// Journal this entry, which the machine decided without a plugin (a skip, the start
    /// or the end of a sleep), then report it with [`Event::Attempted`].
    Record(JournalEntry),
    /// Nothing is due before this time (ms since the Unix epoch): keep no task for the run
    /// and report [`Event::TimerFired`] then.
    Wait {
        /// When.
        until_ms: u64,
    },
    /// Nothing is due until something arrives from outside (a signal, an event, a cancel):
    /// keep no task and no timer for the run.
    Park,
    /// The run ended in this status (the state says so already): write the record,
    /// announce the end and wake whoever waits for it.
    Finish(RunStatus),
}

/// Why an event does not apply to the run as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The run has ended; only a retry of a failed compensation takes it up again.
    #[error("the run is {}", .0.as_str())]
    Ended(RunStatus),
    /// A retry of a run with nothing to undo, or that is not failed.
    #[error("the run is {}: only failed or compensation_failed runs with steps to undo can be retried", .0.as_str())]
    NotRetryable(RunStatus),
    /// A cancel of a run that is undoing its steps already.
    #[error("the run is compensating already")]
    Compensating,
}

/// The lifecycle of runs of one workflow definition.
#[derive(Debug, Clone, Copy)]
pub struct Lifecycle<'d> {
    definition: &'d WorkflowDefinition,
}

/// What the forward pass finds next.
enum Forward<'d> {
    Done,
    Attempt(&'d StepDefinition, u32),
    Record(JournalEntry),
    Wait(u64),
    Park,
    Failed(&'d StepDefinition),
}

impl<'d> Lifecycle<'d> {
    /// The lifecycle of runs of `definition`.
    pub fn new(definition: &'d WorkflowDefinition) -> Self {
        Self { definition }
    }

    /// Applies `event` to `run` at time `now_ms` and returns what the engine must do.
    pub fn on(&self, run: &mut Run, event: Event<'_>, now_ms: u64) -> Result<Vec<Action>, Refused> {
        let mut save = false;
        match event {
            Event::Start | Event::Recovered | Event::TimerFired => {
                if run.status.is_terminal() {
                    return Err(Refused::Ended(run.status));
                }
            }
            Event::Attempted(entry) => {
                if run.status.is_terminal() {
                    return Err(Refused::Ended(run.status));
                }
                run.apply(entry);
            }
            Event::Retry => {
                let retryable = matches!(
                    run.status,
                    RunStatus::Failed | RunStatus::CompensationFailed
                ) && self.has_steps_to_undo(run);
                if !retryable {
                    return Err(Refused::NotRetryable(run.status));
                }
                // A new round: every step whose compensation failed gets its policy anew.
                for step in &mut run.steps {
                    if step.status == StepStatus::CompensationFailed {
                        step.status = StepStatus::Compensating;
                        step.compensation_base = step.compensation_attempts;
                        step.ended_ms = None;
                    }
                }
                run.error = self.cause(run);
                run.status = RunStatus::Compensating;
                run.ended_ms = None;
                save = true;
            }
            Event::Cancel => match run.status {
                RunStatus::Pending | RunStatus::Running => {
                    run.cancelled = true;
                    // What was waiting (asleep, or between attempts) waits no more.
                    for step in &mut run.steps {
                        if matches!(step.status, StepStatus::Running | StepStatus::Waiting) {
                            step.status = StepStatus::Cancelled;
                            step.ended_ms = Some(now_ms);
                        }
                    }
                    run.error = Some(RunError {
                        step: String::new(),
                        message: "cancelled".into(),
                    });
                    if !self.has_steps_to_undo(run) {
                        return Ok(vec![finish(run, RunStatus::Cancelled, now_ms)]);
                    }
                    run.status = RunStatus::Compensating;
                    save = true;
                }
                RunStatus::Compensating => return Err(Refused::Compensating),
                ended => return Err(Refused::Ended(ended)),
            },
        }
        let next = self.next(run, now_ms, &mut save);
        let mut actions = Vec::with_capacity(2);
        if save && !matches!(next, Action::Finish(_)) {
            actions.push(Action::Save);
        }
        actions.push(next);
        Ok(actions)
    }

    /// Whether a run that ended can be taken up again by a retry: a failed compensation, or
    /// a failure with steps left to undo. A run that cannot is done for good.
    pub fn retryable(&self, run: &Run) -> bool {
        matches!(
            run.status,
            RunStatus::Failed | RunStatus::CompensationFailed
        ) && self.has_steps_to_undo(run)
    }

    /// Whether `run` has completed steps its compensation would undo (or is undoing).
    pub fn has_steps_to_undo(&self, run: &Run) -> bool {
        self.definition.steps.iter().any(|config| {
            config.undoable()
                && run.step(&config.name).is_some_and(|state| {
                    matches!(
                        state.status,
                        StepStatus::Completed
                            | StepStatus::Compensating
                            | StepStatus::CompensationFailed
                    )
                })
        })
    }

    /// What to do next from the run's state, moving its status on where the state
    /// decides it (a pending run starts, a step out of attempts fails, a failure turns to
    /// compensation, the last undo ends the run).
    fn next(&self, run: &mut Run, now_ms: u64, save: &mut bool) -> Action {
        loop {
            match run.status {
                RunStatus::Pending => {
                    run.status = RunStatus::Running;
                    *save = true;
                }
                RunStatus::Running => match self.forward(run, now_ms) {
                    Forward::Done => return finish(run, RunStatus::Completed, now_ms),
                    Forward::Attempt(step, attempt) => {
                        return self.attempt_or_wait(
                            run,
                            step,
                            Direction::Execute,
                            attempt,
                            now_ms,
                        );
                    }
                    Forward::Record(entry) => return Action::Record(entry),
                    Forward::Wait(until_ms) => return Action::Wait { until_ms },
                    Forward::Park => return Action::Park,
                    Forward::Failed(step) => {
                        let state = run.step_mut(&step.name).expect("forward found it");
                        state.status = StepStatus::Failed;
                        state.ended_ms.get_or_insert(now_ms);
                        run.error = Some(RunError {
                            step: step.name.clone(),
                            message: state.error.clone().unwrap_or_default(),
                        });
                        if !self.has_steps_to_undo(run) {
                            return finish(run, RunStatus::Failed, now_ms);
                        }
                        run.status = RunStatus::Compensating;
                        *save = true;
                    }
                },
                RunStatus::Compensating => return self.backward(run, now_ms),
                ended => return Action::Finish(ended),
            }
        }
    }

    /// The first step that is not completed (or skipped), in the definition's order.
    fn forward(&self, run: &Run, now_ms: u64) -> Forward<'d> {
        for step in &self.definition.steps {
            // A step the run has no state for has not started.
            let state = run.step(&step.name);
            let status = state.map_or(StepStatus::Pending, |s| s.status);
            let attempts = state.map_or(0, |s| s.attempts);
            match status {
                StepStatus::Completed | StepStatus::Skipped => continue,
                StepStatus::Pending if attempts == 0 => return self.begin(run, step, now_ms),
                StepStatus::Waiting => {
                    let due = state.and_then(|s| s.due_ms);
                    let awaits = step.awaits.as_ref();
                    match due {
                        None if awaits.is_some() => return Forward::Park,
                        Some(due) if due > now_ms => return Forward::Wait(due),
                        _ => {}
                    }
                    // Due: a sleep is over, an await timed out.
                    let timed_out = awaits.map(|a| match (&a.topic, &a.signal) {
                        (Some(topic), _) => format!("timed out waiting for an event on `{topic}`"),
                        (_, signal) => format!(
                            "timed out waiting for signal `{}`",
                            signal.as_deref().unwrap_or_default()
                        ),
                    });
                    let entry = match timed_out {
                        Some(error) if step.on_timeout != Some(OnTimeout::Continue) => {
                            decided(step, 1, Outcome::Fatal, Some(error), None, now_ms)
                        }
                        _ => decided(step, 1, Outcome::Ok, None, Some(Map::new()), now_ms),
                    };
                    return Forward::Record(entry);
                }
                StepStatus::Pending | StepStatus::Running if attempts < step.retry.attempts => {
                    return Forward::Attempt(step, attempts + 1);
                }
                // Out of attempts, failed for good, or (never in a running run) being
                // undone: nothing more executes.
                _ => return Forward::Failed(step),
            }
        }
        Forward::Done
    }

    /// How a step not reached yet begins: skipped if its condition is false, else its
    /// first attempt, or the start of its wait. An expression that fails to evaluate fails
    /// the step for good: it would fail the same way again.
    fn begin(&self, run: &Run, step: &'d StepDefinition, now_ms: u64) -> Forward<'d> {
        let context = || {
            Value::Object(context_for(
                run,
                self.definition,
                &step.name,
                Direction::Execute,
            ))
        };
        let failed = |what: &str, e: ExprError| {
            Forward::Record(decided(
                step,
                1,
                Outcome::Fatal,
                Some(format!("{what}: {e}")),
                None,
                now_ms,
            ))
        };
        if let Some(when) = &step.when {
            match when.truth(&[("context", &context())]) {
                Ok(true) => {}
                Ok(false) => {
                    return Forward::Record(decided(step, 0, Outcome::Skipped, None, None, now_ms));
                }
                Err(e) => return failed("when", e),
            }
        }
        let due_ms = match step.kind() {
            StepKind::Plugin(_) => return Forward::Attempt(step, 1),
            StepKind::Sleep(sleep) => {
                now_ms.saturating_add(u64::try_from(sleep.as_millis()).unwrap_or(u64::MAX))
            }
            StepKind::SleepUntil(until) => match until.time_ms(&[("context", &context())]) {
                Ok(due) => due,
                Err(e) => return failed("sleep-until", e),
            },
            StepKind::Await(awaits) => {
                let mut entry = decided(step, 1, Outcome::Started, None, None, now_ms);
                entry.due_ms = awaits.timeout.map(|t| {
                    now_ms.saturating_add(u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
                });
                return Forward::Record(entry);
            }
        };
        let mut entry = decided(step, 1, Outcome::Started, None, None, now_ms);
        entry.due_ms = Some(due_ms);
        Forward::Record(entry)
    }

    /// The await step `run` waits at, if it waits at one.
    pub fn awaiting(&self, run: &Run) -> Option<(&'d StepDefinition, &'d AwaitDefinition)> {
        if run.status != RunStatus::Running {
            return None;
        }
        self.definition.steps.iter().find_map(|step| {
            let awaits = step.awaits.as_ref()?;
            (run.step(&step.name)?.status == StepStatus::Waiting).then_some((step, awaits))
        })
    }

    /// The await steps `run` has not reached that keep early events (`buffer`), with the
    /// steps it waits at.
    pub fn interests(&self, run: &Run) -> Vec<(&'d StepDefinition, &'d AwaitDefinition)> {
        if run.status != RunStatus::Running && run.status != RunStatus::Pending {
            return Vec::new();
        }
        self.definition
            .steps
            .iter()
            .filter_map(|step| {
                let awaits = step.awaits.as_ref()?;
                let status = run
                    .step(&step.name)
                    .map_or(StepStatus::Pending, |s| s.status);
                let wants = match status {
                    StepStatus::Waiting => true,
                    StepStatus::Pending => awaits.buffer || awaits.signal.is_some(),
                    _ => false,
                };
                wants.then_some((step, awaits))
            })
            .collect()
    }

    /// The first message of `inbox` that the step `run` waits at takes: one it answers,
    /// that no step took before, whose `match` holds. A `match` that cannot be evaluated
    /// takes nothing (and is logged by the caller from the error).
    pub fn take<'m>(
        &self,
        run: &Run,
        inbox: &'m [Message],
        now_ms: u64,
    ) -> Option<(&'m Message, JournalEntry)> {
        let (step, awaits) = self.awaiting(run)?;
        let taken: Vec<&str> = run
            .steps
            .iter()
            .filter_map(|s| s.message.as_deref())
            .collect();
        let context = Value::Object(context_for(
            run,
            self.definition,
            &step.name,
            Direction::Execute,
        ));
        // An event that came before the step began is its only if it keeps early ones;
        // signals always are.
        let began = run.step(&step.name).and_then(|s| s.started_ms).unwrap_or(0);
        let early_ok = awaits.buffer || awaits.signal.is_some();
        let message = inbox.iter().find(|message| {
            message.answers(awaits)
                && !taken.contains(&message.id.as_str())
                && (early_ok || message.received_ms >= began)
                && awaits.matches.as_ref().is_none_or(|m| {
                    m.truth(&[("event", &message.as_event()), ("context", &context)])
                        .unwrap_or(false)
                })
        })?;
        // An object's keys join the context, as a plugin step's output does; anything else
        // goes under the step's name.
        let output = match &message.data {
            Value::Object(data) => data.clone(),
            other => Map::from_iter([(step.name.clone(), other.clone())]),
        };
        let mut entry = decided(step, 1, Outcome::Ok, None, Some(output), now_ms);
        entry.message = Some(message.id.clone());
        Some((message, entry))
    }

    /// The next undo, last completed step first; or the end of the run.
    fn backward(&self, run: &mut Run, now_ms: u64) -> Action {
        for step in self.definition.steps.iter().rev() {
            if !step.undoable() {
                continue;
            }
            let Some(state) = run.step_mut(&step.name) else {
                continue;
            };
            let round = state.compensation_round();
            match state.status {
                StepStatus::Completed => {
                    let attempt = state.compensation_attempts + 1;
                    return self.attempt_or_wait(run, step, Direction::Compensate, attempt, now_ms);
                }
                StepStatus::Compensating if round < step.retry.attempts => {
                    let attempt = state.compensation_attempts + 1;
                    return self.attempt_or_wait(run, step, Direction::Compensate, attempt, now_ms);
                }
                StepStatus::Compensating | StepStatus::CompensationFailed => {
                    state.status = StepStatus::CompensationFailed;
                    state.ended_ms.get_or_insert(now_ms);
                    let error = state.error.clone().unwrap_or_default();
                    run.error = Some(RunError {
                        step: step.name.clone(),
                        message: format!("compensation failed: {error}"),
                    });
                    return finish(run, RunStatus::CompensationFailed, now_ms);
                }
                // Undone already, or never completed: nothing to undo.
                _ => continue,
            }
        }
        let status = if run.cancelled {
            RunStatus::Cancelled
        } else {
            RunStatus::Compensated
        };
        finish(run, status, now_ms)
    }

    /// `attempt` of `step` now, or a wait until its backoff after the previous one is over.
    fn attempt_or_wait(
        &self,
        run: &Run,
        step: &StepDefinition,
        direction: Direction,
        attempt: u32,
        now_ms: u64,
    ) -> Action {
        let state = run.step(&step.name);
        // The first attempt of a direction (or of a retry's round) goes at once.
        let first = match direction {
            Direction::Execute => attempt == 1,
            Direction::Compensate => state.is_none_or(|s| s.compensation_round() == 0),
        };
        if !first && let Some(ended) = state.and_then(|s| s.attempt_ended_ms) {
            let round_attempt = match direction {
                Direction::Execute => attempt,
                Direction::Compensate => attempt - state.map_or(0, |s| s.compensation_base),
            };
            let delay = step
                .retry
                .delay(round_attempt, backoff_seed(run, step, direction, attempt));
            let due = ended.saturating_add(delay.as_millis() as u64);
            if due > now_ms {
                return Action::Wait { until_ms: due };
            }
        }
        Action::Attempt(Attempt {
            step: step.name.clone(),
            direction,
            attempt,
        })
    }

    /// The failure that turned a run to compensation: the failed step's error, or the
    /// cancel.
    fn cause(&self, run: &Run) -> Option<RunError> {
        if run.cancelled {
            return Some(RunError {
                step: String::new(),
                message: "cancelled".into(),
            });
        }
        self.definition.steps.iter().find_map(|step| {
            let state = run.step(&step.name)?;
            (state.status == StepStatus::Failed).then(|| RunError {
                step: step.name.clone(),
                message: state.error.clone().unwrap_or_default(),
            })
        })
    }
}

/// Ends `run` in `status` at `now_ms`.
fn finish(run: &mut Run, status: RunStatus, now_ms: u64) -> Action {
    run.status = status;
    run.ended_ms = Some(now_ms);
    run.updated_ms = run.updated_ms.max(now_ms);
    Action::Finish(status)
}

/// The seed of the jitter before `attempt`: what the attempt is about, so that the same
/// attempt always waits the same, and runs that failed together spread apart.
fn backoff_seed(run: &Run, step: &StepDefinition, direction: Direction, attempt: u32) -> u64 {
    seed(&[
        run.id.as_bytes(),
        step.name.as_bytes(),
        direction.as_str().as_bytes(),
        &attempt.to_be_bytes(),
    ])
}

/// What an attempt's outcome makes of a journal entry: how the engine and the tests turn an
/// [`Attempt`] into the entry [`Event::Attempted`] reports.
pub fn entry(
    attempt: &Attempt,
    outcome: Outcome,
    error: Option<String>,
    output: Option<serde_json::Map<String, serde_json::Value>>,
    (started_ms, ended_ms): (u64, u64),
) -> JournalEntry {
    JournalEntry {
        step: attempt.step.clone(),
        direction: attempt.direction,
        attempt: attempt.attempt,
        started_ms,
        ended_ms,
        outcome,
        error,
        output: output.filter(|_| attempt.direction == Direction::Execute),
        due_ms: None,
        message: None,
    }
}

/// An entry the machine decides for `step` at `now_ms`, without a plugin.
fn decided(
    step: &StepDefinition,
    attempt: u32,
    outcome: Outcome,
    error: Option<String>,
    output: Option<serde_json::Map<String, Value>>,
    now_ms: u64,
) -> JournalEntry {
    let attempt = Attempt {
        step: step.name.clone(),
        direction: Direction::Execute,
        attempt,
    };
    entry(&attempt, outcome, error, output, (now_ms, now_ms))
}

/// The context a step sees, by the definition's order: the input with the output of every
/// step before it (to execute), or up to and including it (to compensate).
pub fn context_for(
    run: &Run,
    definition: &WorkflowDefinition,
    step: &str,
    direction: Direction,
) -> serde_json::Map<String, Value> {
    let mut context = run.input.clone();
    for config in &definition.steps {
        let is_it = config.name == step;
        if is_it && direction == Direction::Execute {
            break;
        }
        if let Some(output) = run.step(&config.name).and_then(|s| s.output.as_ref()) {
            context.extend(output.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        if is_it {
            break;
        }
    }
    context
}

#[cfg(test)]
mod tests;
