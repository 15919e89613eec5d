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
//! A parallel step's branches go at once: the machine offers every open branch's next
//! attempt together, the engine marks each in flight while it makes it, and nothing
//! compensates, and no run ends, while an attempt executes. A branch that fails for good
//! (or a cancel) stops new steps; once the attempts in flight end, every branch is undone,
//! each in reverse order. A restart makes the open branches' current steps again, as it
//! makes a lone step's in-flight attempt again. A child workflow step journals its child's
//! id, parks until the engine reports the child's end, and is undone by an attempt that
//! undoes (or cancels) the child; [`Event::Undo`] is that request as the child sees it.
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
    AwaitDefinition, Branch, Direction, ExprError, JournalEntry, Message, OnTimeout, Outcome, Run,
    RunError, RunStatus, StepDefinition, StepKind, StepState, StepStatus, WorkflowDefinition,
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
    /// The parent of a completed child run undoes the step that ran it: the child's
    /// completed steps are undone, and it ends `compensated`.
    Undo,
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
    /// The parallel branch the step belongs to, if it belongs to one.
    pub branch: Option<String>,
}

/// What the engine must do, in the order given: at most one [`Action::Save`], then either
/// one [`Action::Finish`], or the attempts to make at once (several when parallel branches
/// run) followed by at most one [`Action::Record`], [`Action::Wait`] or [`Action::Park`].
/// No action at all means: nothing is due before an attempt in flight ends.
///
/// The engine marks a step [`StepState::in_flight`](crate::model::StepState) while it makes
/// one of its attempts; the machine offers no step in flight again, does not compensate
/// while a step executes, and ends no run with an attempt in flight.
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
    /// An attempt is in flight where the pass would go on.
    Busy,
    /// The run was cancelled while its branches ran, and no attempt is in flight now.
    Stopped,
    /// What a parallel step's branches do next, together.
    Actions(Vec<Action>),
    Failed(&'d StepDefinition),
}

/// What the backward pass finds for one step.
enum Undo {
    /// Nothing to undo.
    Nothing,
    /// This compensate attempt.
    Attempt(u32),
    /// Its compensation is out of attempts.
    Failed,
    /// It waits for its child's undo.
    Park,
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
            Event::Undo => {
                if run.status != RunStatus::Completed || !self.has_steps_to_undo(run) {
                    return Err(Refused::Ended(run.status));
                }
                run.error = Some(RunError {
                    step: String::new(),
                    message: "undone by its parent run".into(),
                });
                run.status = RunStatus::Compensating;
                run.ended_ms = None;
                save = true;
            }
            Event::Cancel => match run.status {
                RunStatus::Pending | RunStatus::Running => {
                    run.cancelled = true;
                    stop_waiting(run, now_ms);
                    run.error = Some(RunError {
                        step: String::new(),
                        message: "cancelled".into(),
                    });
                    // With attempts in flight (parallel branches), the run stays running,
                    // cancelled, until they end: a crash meanwhile makes them again.
                    if !executing(run) {
                        if !self.has_steps_to_undo(run) {
                            return Ok(vec![finish(run, RunStatus::Cancelled, now_ms)]);
                        }
                        run.status = RunStatus::Compensating;
                    }
                    save = true;
                }
                RunStatus::Compensating => return Err(Refused::Compensating),
                ended => return Err(Refused::Ended(ended)),
            },
        }
        let recovering = matches!(event, Event::Recovered);
        let next = self.next(run, now_ms, &mut save, recovering);
        let mut actions = Vec::with_capacity(next.len() + 1);
        if save && !matches!(next[..], [Action::Finish(_)]) {
            actions.push(Action::Save);
        }
        actions.extend(next);
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
        self.definition.all_steps().any(|(config, _)| {
            run.step(&config.name).is_some_and(|state| {
                let done = matches!(
                    state.status,
                    StepStatus::Completed
                        | StepStatus::Compensating
                        | StepStatus::CompensationFailed
                );
                (config.undoable() && done)
                    || cancelled_child(config, state)
                    || undoing_child(config, state)
            })
        })
    }

    /// What to do next from the run's state, moving its status on where the state
    /// decides it (a pending run starts, a step out of attempts fails, a failure turns to
    /// compensation, the last undo ends the run).
    /// `recovering` when a restart takes the run up: attempts that may have been in flight
    /// are made again before anything else.
    fn next(&self, run: &mut Run, now_ms: u64, save: &mut bool, recovering: bool) -> Vec<Action> {
        loop {
            match run.status {
                RunStatus::Pending => {
                    run.status = RunStatus::Running;
                    *save = true;
                }
                RunStatus::Running => {
                    match self.forward(run, &self.definition.steps, now_ms, recovering) {
                        Forward::Done => return vec![finish(run, RunStatus::Completed, now_ms)],
                        Forward::Attempt(step, attempt) => {
                            return vec![self.attempt_or_wait(
                                run,
                                step,
                                Direction::Execute,
                                attempt,
                                now_ms,
                            )];
                        }
                        Forward::Record(entry) => return vec![Action::Record(entry)],
                        Forward::Wait(until_ms) => return vec![Action::Wait { until_ms }],
                        Forward::Park => return vec![Action::Park],
                        Forward::Busy => return Vec::new(),
                        Forward::Actions(actions) => return actions,
                        // Cancelled while branches ran: they have ended.
                        Forward::Stopped => {
                            stop_waiting(run, now_ms);
                            if !self.has_steps_to_undo(run) {
                                return vec![finish(run, RunStatus::Cancelled, now_ms)];
                            }
                            run.status = RunStatus::Compensating;
                            *save = true;
                        }
                        Forward::Failed(step) => {
                            let state = run.step_mut(&step.name).expect("forward found it");
                            state.status = StepStatus::Failed;
                            state.ended_ms.get_or_insert(now_ms);
                            let error = RunError {
                                step: step.name.clone(),
                                message: state.error.clone().unwrap_or_default(),
                            };
                            // A branch's failure is its parallel step's.
                            if let Some((parallel, branch)) = self.definition.branch_of(&step.name)
                                && let Some(state) = run.step_mut(&parallel.name)
                            {
                                state.status = StepStatus::Failed;
                                state.ended_ms.get_or_insert(now_ms);
                                state.error = Some(format!(
                                    "branch `{}` failed at step `{}`: {}",
                                    branch.name, error.step, error.message
                                ));
                            }
                            run.error = Some(error);
                            // Branches waiting (a sleep, a backoff) wait no more.
                            stop_waiting(run, now_ms);
                            if !self.has_steps_to_undo(run) {
                                return vec![finish(run, RunStatus::Failed, now_ms)];
                            }
                            run.status = RunStatus::Compensating;
                            *save = true;
                        }
                    }
                }
                // Compensation waits for the steps still executing: what they complete,
                // it undoes too.
                RunStatus::Compensating if executing(run) => return Vec::new(),
                RunStatus::Compensating => return self.backward(run, now_ms),
                ended => return vec![Action::Finish(ended)],
            }
        }
    }

    /// The first of `steps` that is not completed (or skipped), in order.
    fn forward(
        &self,
        run: &Run,
        steps: &'d [StepDefinition],
        now_ms: u64,
        recovering: bool,
    ) -> Forward<'d> {
        for step in steps {
            // A step the run has no state for has not started.
            let state = run.step(&step.name);
            let status = state.map_or(StepStatus::Pending, |s| s.status);
            let attempts = state.map_or(0, |s| s.attempts);
            if state.is_some_and(|s| s.in_flight) {
                return Forward::Busy;
            }
            if let StepKind::Parallel(branches, max) = step.kind() {
                match status {
                    StepStatus::Completed | StepStatus::Skipped => continue,
                    StepStatus::Pending => return self.begin(run, step, now_ms),
                    // Cancelled, it still waits for its branches' attempts in flight.
                    StepStatus::Waiting | StepStatus::Cancelled => {
                        return self.fork(run, step, branches, max, now_ms, recovering);
                    }
                    _ => return Forward::Failed(step),
                }
            }
            match status {
                StepStatus::Completed | StepStatus::Skipped => continue,
                // A branch's step a cancel stopped.
                StepStatus::Cancelled => return Forward::Stopped,
                StepStatus::Pending if attempts == 0 => return self.begin(run, step, now_ms),
                StepStatus::Waiting => {
                    let due = state.and_then(|s| s.due_ms);
                    let awaits = step.awaits.as_ref();
                    match due {
                        // An await parks until a message comes, a child step until its
                        // child ends.
                        None if awaits.is_some() || step.workflow.is_some() => {
                            return Forward::Park;
                        }
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
                            self.decided(step, Outcome::Fatal, Some(error), None, now_ms)
                        }
                        _ => self.decided(step, Outcome::Ok, None, Some(Map::new()), now_ms),
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

    /// What the branches of the parallel step `parallel` do next: each branch's next
    /// attempt, at once, with up to `max` branches open; a wait for the soonest of their
    /// timers; the step's end once every branch is done, with each branch's output under
    /// its name. Once a branch has failed for good, or the run was cancelled, no branch
    /// takes a new step, and the failure waits for the attempts in flight to end. Taken up
    /// by a restart, the open branches make their current step again first: it may have
    /// been in flight at the crash, with effects to undo.
    fn fork(
        &self,
        run: &Run,
        parallel: &'d StepDefinition,
        branches: &'d [Branch],
        max: usize,
        now_ms: u64,
        recovering: bool,
    ) -> Forward<'d> {
        let next: Vec<(bool, Forward<'d>)> = branches
            .iter()
            .map(|branch| {
                let started = branch.steps.iter().any(|step| {
                    run.step(&step.name).is_some_and(|s| {
                        s.status != StepStatus::Pending || s.attempts > 0 || s.in_flight
                    })
                });
                (started, self.forward(run, &branch.steps, now_ms, false))
            })
            .collect();
        let mut open = next
            .iter()
            .filter(|(started, next)| *started && !matches!(next, Forward::Done))
            .count();
        let (mut actions, mut record, mut wait) = (Vec::new(), None, None::<u64>);
        let (mut park, mut busy, mut failed, mut done) = (false, false, None, true);
        let mut stopped = run.cancelled;
        for (started, next) in next {
            if matches!(next, Forward::Done) {
                continue;
            }
            done = false;
            if !started {
                if open >= max {
                    continue;
                }
                open += 1;
            }
            match next {
                Forward::Attempt(step, attempt) => {
                    let action =
                        self.attempt_or_wait(run, step, Direction::Execute, attempt, now_ms);
                    offer(action, &mut actions, &mut wait);
                }
                Forward::Record(entry) => {
                    record.get_or_insert(entry);
                }
                Forward::Wait(until_ms) => {
                    offer(Action::Wait { until_ms }, &mut actions, &mut wait)
                }
                Forward::Park => park = true,
                Forward::Busy => busy = true,
                Forward::Failed(step) => {
                    failed.get_or_insert(step);
                }
                Forward::Stopped => stopped = true,
                // Branches hold no parallel steps.
                Forward::Done | Forward::Actions(_) => {}
            }
        }
        if failed.is_some() || stopped {
            if busy {
                return Forward::Busy;
            }
            // Which of the open branches' steps were in flight at the crash is not known:
            // each is made again (at worst a step runs after the failure, and is undone).
            if recovering && !actions.is_empty() {
                return Forward::Actions(actions);
            }
            return failed.map_or(Forward::Stopped, Forward::Failed);
        }
        if done {
            let output = branches
                .iter()
                .map(|branch| {
                    let mut output = Map::new();
                    for step in &branch.steps {
                        if let Some(out) = run.step(&step.name).and_then(|s| s.output.as_ref()) {
                            output.extend(out.iter().map(|(k, v)| (k.clone(), v.clone())));
                        }
                    }
                    (branch.name.clone(), Value::Object(output))
                })
                .collect();
            return Forward::Record(self.decided(
                parallel,
                Outcome::Ok,
                None,
                Some(output),
                now_ms,
            ));
        }
        if let Some(entry) = record {
            actions.push(Action::Record(entry));
        } else if let Some(until_ms) = wait {
            actions.push(Action::Wait { until_ms });
        } else if park {
            actions.push(Action::Park);
        }
        Forward::Actions(actions)
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
            Forward::Record(self.decided(
                step,
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
                    let mut skipped = self.decided(step, Outcome::Skipped, None, None, now_ms);
                    skipped.attempt = 0;
                    return Forward::Record(skipped);
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
            // The fork is journaled, so that the run shows the step running.
            StepKind::Parallel(..) => {
                return Forward::Record(self.decided(step, Outcome::Started, None, None, now_ms));
            }
            // The child's id is journaled before the child is started, so that a restart
            // finds (or starts) the same child.
            StepKind::Child(..) => {
                let mut entry = self.decided(step, Outcome::Started, None, None, now_ms);
                entry.child = Some(run.id.child(&step.name));
                return Forward::Record(entry);
            }
            StepKind::Await(awaits) => {
                let mut entry = self.decided(step, Outcome::Started, None, None, now_ms);
                entry.due_ms = awaits.timeout.map(|t| {
                    now_ms.saturating_add(u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
                });
                return Forward::Record(entry);
            }
        };
        let mut entry = self.decided(step, Outcome::Started, None, None, now_ms);
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

    /// The child workflow step `run` waits at, if it waits at one.
    pub fn child_waiting(&self, run: &Run) -> Option<&'d StepDefinition> {
        if run.status != RunStatus::Running {
            return None;
        }
        self.definition.steps.iter().find(|step| {
            step.workflow.is_some()
                && run
                    .step(&step.name)
                    .is_some_and(|s| s.status == StepStatus::Waiting)
        })
    }

    /// The input of the child that `step` of `run` starts: its `input` expression's object,
    /// or the context the step sees.
    pub fn child_input(
        &self,
        run: &Run,
        step: &StepDefinition,
    ) -> Result<Map<String, Value>, ExprError> {
        let context = context_for(run, self.definition, &step.name, Direction::Execute);
        let Some(input) = &step.input else {
            return Ok(context);
        };
        match input.json(&[("context", &Value::Object(context))])? {
            Value::Object(input) => Ok(input),
            other => Err(ExprError(format!(
                "a child's input must be an object, not {other}"
            ))),
        }
    }

    /// The end of the child workflow step `step` of `run`, once `child` has ended: `ok`
    /// with the child's output under the step's name if it completed, else `fatal`.
    pub fn child_ended(
        &self,
        step: &StepDefinition,
        child: &Run,
        now_ms: u64,
    ) -> Option<JournalEntry> {
        if !child.status.is_terminal() {
            return None;
        }
        if child.status != RunStatus::Completed {
            let why = child.error.as_ref().map_or(String::new(), |e| {
                let at = if e.step.is_empty() {
                    String::new()
                } else {
                    format!(" at `{}`", e.step)
                };
                format!("{at}: {}", e.message)
            });
            let error = format!(
                "child run `{}` ended {}{why}",
                child.id,
                child.status.as_str()
            );
            return Some(self.child_failed(step, error, now_ms));
        }
        let mut output = Map::new();
        for state in child.steps.iter().filter(|s| s.branch.is_none()) {
            if let Some(out) = &state.output {
                output.extend(out.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        let output = Map::from_iter([(step.name.clone(), Value::Object(output))]);
        Some(self.decided(step, Outcome::Ok, None, Some(output), now_ms))
    }

    /// The child workflow step `run` waits at to undo its child, with when it asked, if it
    /// waits at one.
    pub fn child_undoing(&self, run: &Run) -> Option<(&'d StepDefinition, u64)> {
        if run.status != RunStatus::Compensating {
            return None;
        }
        self.definition.steps.iter().find_map(|step| {
            let state = run.step(&step.name)?;
            let asked = state.attempt_ended_ms.unwrap_or(0);
            undoing_child(step, state).then_some((step, asked))
        })
    }

    /// The end of the undo of the child of `step`, which `run` waits for: `ok`, or
    /// `fatal` with `error`.
    pub fn child_undone(
        &self,
        run: &Run,
        step: &StepDefinition,
        error: Option<String>,
        now_ms: u64,
    ) -> JournalEntry {
        let outcome = if error.is_some() {
            Outcome::Fatal
        } else {
            Outcome::Ok
        };
        let attempt = run.step(&step.name).map_or(1, |s| s.compensation_attempts);
        let undo = self.attempt_of(step, Direction::Compensate, attempt);
        entry(&undo, outcome, error, None, (now_ms, now_ms))
    }

    /// The failure of the child workflow step `step` for `error`.
    pub fn child_failed(&self, step: &StepDefinition, error: String, now_ms: u64) -> JournalEntry {
        self.decided(step, Outcome::Fatal, Some(error), None, now_ms)
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
        let mut entry = self.decided(step, Outcome::Ok, None, Some(output), now_ms);
        entry.message = Some(message.id.clone());
        Some((message, entry))
    }

    /// The next undo, last completed step first; or the end of the run. A parallel step's
    /// branches are undone at once, each in reverse order.
    fn backward(&self, run: &mut Run, now_ms: u64) -> Vec<Action> {
        for step in self.definition.steps.iter().rev() {
            if let StepKind::Parallel(branches, _) = step.kind() {
                let (mut actions, mut wait, mut busy, mut failed) = (Vec::new(), None, false, None);
                for branch in branches {
                    let Some((step, attempt)) =
                        branch
                            .steps
                            .iter()
                            .rev()
                            .find_map(|step| match self.undo(run, step) {
                                // Branches hold no child steps, which alone park.
                                Undo::Nothing | Undo::Park => None,
                                Undo::Attempt(attempt) => Some((step, Some(attempt))),
                                Undo::Failed => Some((step, None)),
                            })
                    else {
                        continue;
                    };
                    match attempt {
                        _ if run.step(&step.name).is_some_and(|s| s.in_flight) => busy = true,
                        None => {
                            failed.get_or_insert(step);
                        }
                        Some(attempt) => {
                            let action = self.attempt_or_wait(
                                run,
                                step,
                                Direction::Compensate,
                                attempt,
                                now_ms,
                            );
                            offer(action, &mut actions, &mut wait);
                        }
                    }
                }
                // A branch whose undo failed stops there; the others are undone as far as
                // they go, and only then does the run end `compensation_failed`.
                if let Some(step) = failed
                    && actions.is_empty()
                    && wait.is_none()
                    && !busy
                {
                    return vec![compensation_failed(run, step, now_ms)];
                }
                if let Some(until_ms) = wait {
                    actions.push(Action::Wait { until_ms });
                }
                if !actions.is_empty() || busy || failed.is_some() {
                    return actions;
                }
                continue;
            }
            match self.undo(run, step) {
                Undo::Nothing => continue,
                Undo::Park => return vec![Action::Park],
                // A child's undo is asked, then waited for holding no task, as its run was.
                Undo::Attempt(attempt) if step.workflow.is_some() => {
                    let undo = self.attempt_of(step, Direction::Compensate, attempt);
                    let mut entry = entry(&undo, Outcome::Started, None, None, (now_ms, now_ms));
                    entry.child = Some(run.id.child(&step.name));
                    return vec![Action::Record(entry)];
                }
                Undo::Attempt(attempt) => {
                    return vec![self.attempt_or_wait(
                        run,
                        step,
                        Direction::Compensate,
                        attempt,
                        now_ms,
                    )];
                }
                Undo::Failed => return vec![compensation_failed(run, step, now_ms)],
            }
        }
        let status = if run.cancelled {
            RunStatus::Cancelled
        } else {
            RunStatus::Compensated
        };
        vec![finish(run, status, now_ms)]
    }

    /// What undoing `step` takes next.
    fn undo(&self, run: &Run, step: &StepDefinition) -> Undo {
        let Some(state) = run.step(&step.name) else {
            return Undo::Nothing;
        };
        if undoing_child(step, state) {
            return Undo::Park;
        }
        // A child cancelled with its parent is cancelled too.
        if cancelled_child(step, state) {
            return Undo::Attempt(state.compensation_attempts + 1);
        }
        if !step.undoable() {
            return Undo::Nothing;
        }
        match state.status {
            StepStatus::Completed => Undo::Attempt(state.compensation_attempts + 1),
            StepStatus::Compensating if state.compensation_round() < step.retry.attempts => {
                Undo::Attempt(state.compensation_attempts + 1)
            }
            StepStatus::Compensating | StepStatus::CompensationFailed => Undo::Failed,
            // Undone already, or never completed: nothing to undo.
            _ => Undo::Nothing,
        }
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
        Action::Attempt(self.attempt_of(step, direction, attempt))
    }

    /// `attempt` of `step` in `direction`, with the branch the step belongs to.
    fn attempt_of(&self, step: &StepDefinition, direction: Direction, attempt: u32) -> Attempt {
        Attempt {
            step: step.name.clone(),
            direction,
            attempt,
            branch: self
                .definition
                .branch_of(&step.name)
                .map(|(_, branch)| branch.name.clone()),
        }
    }

    /// An entry the machine decides for `step` at `now_ms`, without a plugin.
    fn decided(
        &self,
        step: &StepDefinition,
        outcome: Outcome,
        error: Option<String>,
        output: Option<Map<String, Value>>,
        now_ms: u64,
    ) -> JournalEntry {
        let attempt = self.attempt_of(step, Direction::Execute, 1);
        entry(&attempt, outcome, error, output, (now_ms, now_ms))
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
        // A parallel step fails with its branch's step, which names the cause.
        let steps = self.definition.all_steps().map(|(step, _)| step);
        steps
            .filter(|step| step.parallel.is_none())
            .find_map(|step| {
                let state = run.step(&step.name)?;
                (state.status == StepStatus::Failed).then(|| RunError {
                    step: step.name.clone(),
                    message: state.error.clone().unwrap_or_default(),
                })
            })
    }
}

/// Adds `action` to what a parallel step offers: an attempt to the `actions`, a wait to
/// the soonest `wait`.
fn offer(action: Action, actions: &mut Vec<Action>, wait: &mut Option<u64>) {
    match action {
        Action::Wait { until_ms } => *wait = Some(wait.map_or(until_ms, |w| w.min(until_ms))),
        action => actions.push(action),
    }
}

/// Marks the steps of `run` that wait (asleep, between attempts, for a message or a child)
/// and have no attempt in flight `cancelled`: they wait no more.
fn stop_waiting(run: &mut Run, now_ms: u64) {
    for step in &mut run.steps {
        if !step.in_flight && matches!(step.status, StepStatus::Running | StepStatus::Waiting) {
            step.status = StepStatus::Cancelled;
            step.ended_ms = Some(now_ms);
        }
    }
}

/// Whether `state` is of a child workflow step that waits for its child's undo.
fn undoing_child(step: &StepDefinition, state: &StepState) -> bool {
    step.workflow.is_some()
        && state.status == StepStatus::Waiting
        && state.compensation_attempts > 0
}

/// Whether `state` is of a child workflow step cancelled while its child ran: the child is
/// to be cancelled too, whether or not the step undoes a completed child.
fn cancelled_child(step: &StepDefinition, state: &StepState) -> bool {
    step.workflow.is_some() && state.status == StepStatus::Cancelled && state.child.is_some()
}

/// Whether a step of `run` executes: an attempt of it is in flight, and not to undo it.
fn executing(run: &Run) -> bool {
    run.steps.iter().any(|s| {
        s.in_flight
            && !matches!(
                s.status,
                StepStatus::Completed | StepStatus::Compensating | StepStatus::CompensationFailed
            )
    })
}

/// Ends `run` in `compensation_failed`: undoing `step` is out of attempts.
fn compensation_failed(run: &mut Run, step: &StepDefinition, now_ms: u64) -> Action {
    let state = run
        .step_mut(&step.name)
        .expect("the backward pass found it");
    state.status = StepStatus::CompensationFailed;
    state.ended_ms.get_or_insert(now_ms);
    let error = state.error.clone().unwrap_or_default();
    run.error = Some(RunError {
        step: step.name.clone(),
        message: format!("compensation failed: {error}"),
    });
    finish(run, RunStatus::CompensationFailed, now_ms)
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
        branch: attempt.branch.clone(),
        child: None,
        recording: None,
    }
}

/// The context a step sees, by the definition's order: the input with the output of every
/// step before it (to execute), or up to and including it (to compensate). A branch's step
/// sees the context before its parallel step, with the output of its branch's steps
/// before it.
pub fn context_for(
    run: &Run,
    definition: &WorkflowDefinition,
    step: &str,
    direction: Direction,
) -> serde_json::Map<String, Value> {
    let (steps, mut context) = match definition.branch_of(step) {
        Some((parallel, branch)) => (
            &branch.steps[..],
            context_for(run, definition, &parallel.name, Direction::Execute),
        ),
        None => (&definition.steps[..], run.input.clone()),
    };
    for config in steps {
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
