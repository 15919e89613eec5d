//! A run as stored: its record and the journal entries that make up its steps' history.
//!
//! A run is a record (its status, initial context, the versions it is pinned to, and a
//! snapshot of each step's state and output) plus a journal: one entry per attempt, with
//! what it returned. The journal is the source of truth for steps: the engine appends one
//! entry per attempt and rewrites the record only when the run's status changes, and
//! readers fold the entries written since the snapshot into it ([`Run::apply`]), so a step
//! costs one small write, not a rewrite of the whole run. Records carry a format version so
//! that a later release can migrate them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::RunId;

/// The format of [`Run`] records this release writes. Format 2 added the journal as the
/// source of step state ([`Run::journaled`], [`JournalEntry::output`]); format 3 the pinned
/// workflow definition ([`Run::workflow_version`]), the record's [`Run::revision`] and the
/// step fields a durable backoff needs. Format 2 records read as format 3 with those unset.
pub const RUN_FORMAT: u32 = 3;

/// The oldest format this release reads.
pub const OLDEST_RUN_FORMAT: u32 = 2;

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Accepted, waiting for a slot.
    Pending,
    /// Executing its steps (or waiting out a backoff between attempts).
    Running,
    /// Every step completed.
    Completed,
    /// A step failed or the run was cancelled; completed steps are being undone in reverse
    /// order.
    Compensating,
    /// A step failed and every completed step was undone.
    Compensated,
    /// A compensation kept failing; an operator can retry it.
    CompensationFailed,
    /// A step failed and there was nothing to undo, or the run could not go on.
    Failed,
    /// Cancelled; every completed step was undone.
    Cancelled,
}

impl RunStatus {
    /// All statuses, for parsing and indexes. New ones go at the end: an index byte is a
    /// status's position here.
    pub const ALL: [RunStatus; 8] = [
        RunStatus::Pending,
        RunStatus::Running,
        RunStatus::Completed,
        RunStatus::Compensating,
        RunStatus::Compensated,
        RunStatus::CompensationFailed,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];

    /// Whether the engine is done with the run (an operator may still retry some).
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            RunStatus::Pending | RunStatus::Running | RunStatus::Compensating
        )
    }

    /// The name used in the API and in indexes.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Compensating => "compensating",
            RunStatus::Compensated => "compensated",
            RunStatus::CompensationFailed => "compensation_failed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// Parses [`Self::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The status's byte in indexes: its position in [`Self::ALL`].
    pub fn index_byte(self) -> u8 {
        Self::ALL.iter().position(|s| *s == self).unwrap_or(0) as u8
    }
}

/// Where a step is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not reached.
    Pending,
    /// Executing, or waiting out a backoff between attempts (or was, when the host stopped).
    Running,
    /// Executed successfully.
    Completed,
    /// Failed for good; the run compensates the steps before it.
    Failed,
    /// Being undone.
    Compensating,
    /// Undone.
    Compensated,
    /// Its compensation kept failing.
    CompensationFailed,
    /// Its `when` condition was false: it never ran, and is never compensated.
    Skipped,
    /// Waiting durably: asleep until its due time.
    Waiting,
    /// Interrupted by a cancel while it waited or waited out a backoff.
    Cancelled,
}

/// Which export of `saga-step` an attempt runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// `saga-step.execute`.
    Execute,
    /// `saga-step.compensate`.
    Compensate,
}

impl Direction {
    /// `execute` or `compensate`, as in idempotency keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Execute => "execute",
            Direction::Compensate => "compensate",
        }
    }
}

/// One step's state in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepState {
    /// The step's name in the workflow.
    pub name: String,
    /// Its status.
    pub status: StepStatus,
    /// Execute attempts so far.
    pub attempts: u32,
    /// Compensate attempts so far.
    pub compensation_attempts: u32,
    /// Compensate attempts made before the operator's latest retry: the retry grants the
    /// step's policy anew, counting from here.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub compensation_base: u32,
    /// When its first attempt started, ms since the Unix epoch.
    pub started_ms: Option<u64>,
    /// When it last reached `completed`, `failed`, `compensated` or `compensation_failed`.
    pub ended_ms: Option<u64>,
    /// When its latest attempt, in either direction, ended: a backoff counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_ended_ms: Option<u64>,
    /// When a waiting step is due, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_ms: Option<u64>,
    /// The message (of the run's inbox) an await step completed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The last error of an attempt, if any.
    pub error: Option<String>,
    /// What `execute` returned, merged into the context for the steps after it.
    pub output: Option<Map<String, Value>>,
    /// The parallel branch the step belongs to, if it belongs to one: its output is part of
    /// that branch's, not of the run's context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The id of the child run a child workflow step started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<RunId>,
    /// An attempt of the step is being made. Not stored: a restart finds no attempt in
    /// flight, and makes the one that was again.
    #[serde(skip)]
    pub in_flight: bool,
}

impl StepState {
    /// A step not reached yet.
    pub fn pending(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            status: StepStatus::Pending,
            attempts: 0,
            compensation_attempts: 0,
            compensation_base: 0,
            started_ms: None,
            ended_ms: None,
            attempt_ended_ms: None,
            due_ms: None,
            message: None,
            error: None,
            output: None,
            branch: None,
            child: None,
            in_flight: false,
        }
    }

    /// A step of the parallel branch `branch` not reached yet.
    pub fn in_branch(mut self, branch: Option<&str>) -> Self {
        self.branch = branch.map(str::to_owned);
        self
    }

    /// Compensate attempts since the operator's latest retry (or ever, without one).
    pub fn compensation_round(&self) -> u32 {
        self.compensation_attempts
            .saturating_sub(self.compensation_base)
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Why a run failed: the step and its error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunError {
    /// The step that failed (or whose compensation failed); empty when no step did.
    pub step: String,
    /// What happened.
    pub message: String,
}

/// One run of a workflow, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// [`RUN_FORMAT`] when written.
    pub format: u32,
    /// The run id.
    pub id: RunId,
    /// The workflow it runs.
    pub workflow: String,
    /// The digest of the workflow definition the run is pinned to: every step and
    /// compensation follows that definition, across restarts and configuration changes.
    /// `None` only in format 2 records, which the engine pins when it next drives them.
    #[serde(default)]
    pub workflow_version: Option<String>,
    /// Its status.
    pub status: RunStatus,
    /// The context it started with.
    pub input: Map<String, Value>,
    /// One entry per step of its definition, in order.
    pub steps: Vec<StepState>,
    /// The failure that stopped it, if any.
    pub error: Option<RunError>,
    /// Plugin name to component digest: the versions this run started with.
    pub plugins: BTreeMap<String, String>,
    /// The client's `Idempotency-Key`, if it sent one.
    pub idempotency_key: Option<String>,
    /// The run whose child workflow step started this one; its end wakes that run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<RunId>,
    /// The W3C `traceparent` of the span that started the run (the trigger's request, the
    /// delivery, the parent's step): every piece of the run's drive is a child of it, so
    /// that the run is one trace however often it waits or the host restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The values of its workflow's search fields in its input, as JSON prints them:
    /// what listings find it by. Set when the run is made, never changed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub search: BTreeMap<String, String>,
    /// Whether a cancel was asked for: the run compensates and ends `cancelled`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
    /// Whether the run is done for good: it ended in a status no retry can leave. A closed
    /// run pins no version and becomes eligible for retention.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub closed: bool,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: u64,
    /// Last change.
    pub updated_ms: u64,
    /// When it reached a terminal status.
    pub ended_ms: Option<u64>,
    /// How many journal entries this record reflects: the next entry's sequence number.
    pub journaled: u32,
    /// How many times the record was written before this version of it: a save replaces
    /// revision `n - 1` with revision `n`, and fails if someone else wrote in between.
    #[serde(default)]
    pub revision: u32,
    /// The lease epoch under which this node holds the run, as read from a shared store:
    /// it grows with every new owner, and every write of the run is conditional on it
    /// (fencing), so that a node that lost the run writes nothing more. Not part of the
    /// record; 0 on the embedded store, which has one node.
    #[serde(skip)]
    pub epoch: u64,
}

impl Run {
    /// The position of step `name` among the run's steps.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.name == name)
    }

    /// The state of step `name`.
    pub fn step(&self, name: &str) -> Option<&StepState> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// The state of step `name`, to change.
    pub fn step_mut(&mut self, name: &str) -> Option<&mut StepState> {
        self.steps.iter_mut().find(|s| s.name == name)
    }

    /// The context after the first `steps` steps: the input with each completed step's
    /// output merged in, later keys over earlier ones. A branch's steps are in it as their
    /// parallel step's output.
    pub fn context_after(&self, steps: usize) -> Map<String, Value> {
        let mut context = self.input.clone();
        for step in self.steps.iter().take(steps).filter(|s| s.branch.is_none()) {
            if let Some(output) = &step.output {
                context.extend(output.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        context
    }

    /// The current context: the input merged with every completed step's output.
    pub fn context(&self) -> Map<String, Value> {
        self.context_after(self.steps.len())
    }

    /// Folds the next journal entry into the step it is about: what the engine does after
    /// each attempt, and what the store does with entries written after the record.
    ///
    /// An entry records what happened, not what the engine decided next: a failed attempt
    /// leaves its step `running` (or `compensating`) with the error, whether or not the
    /// step's retries are exhausted; the run's state machine, which knows the policy,
    /// decides that. Steps are matched by name.
    pub fn apply(&mut self, entry: &JournalEntry) {
        self.journaled += 1;
        self.updated_ms = self.updated_ms.max(entry.ended_ms);
        let Some(state) = self.step_mut(&entry.step) else {
            return;
        };
        state.in_flight = false;
        state.error.clone_from(&entry.error);
        state.attempt_ended_ms = Some(entry.ended_ms);
        let ended = Some(entry.ended_ms);
        match entry.direction {
            Direction::Execute => {
                state.attempts = entry.attempt;
                state.started_ms.get_or_insert(entry.started_ms);
                state.status = match entry.outcome {
                    Outcome::Ok => {
                        state.output = Some(entry.output.clone().unwrap_or_default());
                        state.ended_ms = ended;
                        state.message.clone_from(&entry.message);
                        StepStatus::Completed
                    }
                    Outcome::Fatal => {
                        state.ended_ms = ended;
                        StepStatus::Failed
                    }
                    Outcome::Retryable | Outcome::Host => StepStatus::Running,
                    Outcome::Skipped => {
                        state.ended_ms = ended;
                        StepStatus::Skipped
                    }
                    Outcome::Started => {
                        state.due_ms = entry.due_ms;
                        state.child.clone_from(&entry.child);
                        StepStatus::Waiting
                    }
                };
            }
            Direction::Compensate => {
                state.compensation_attempts = entry.attempt;
                state.status = match entry.outcome {
                    Outcome::Ok => {
                        state.ended_ms = ended;
                        StepStatus::Compensated
                    }
                    Outcome::Fatal => {
                        state.ended_ms = ended;
                        StepStatus::CompensationFailed
                    }
                    // A child's undo is asked, then waited for.
                    Outcome::Started => StepStatus::Waiting,
                    // Only execution skips.
                    Outcome::Retryable | Outcome::Host | Outcome::Skipped => {
                        StepStatus::Compensating
                    }
                };
            }
        }
    }
}

/// One attempt of a step, in either direction, appended to a run's journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// The step.
    pub step: String,
    /// `execute` or `compensate`.
    pub direction: Direction,
    /// 1 for the first attempt in this direction.
    pub attempt: u32,
    /// Start, ms since the Unix epoch.
    pub started_ms: u64,
    /// End.
    pub ended_ms: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// The error, unless it succeeded.
    pub error: Option<String>,
    /// What a successful `execute` returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Map<String, Value>>,
    /// For a step that began to wait ([`Outcome::Started`]): when it is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_ms: Option<u64>,
    /// For an await step that ended `ok`: the id of the message it took from the run's
    /// inbox, which no other step takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The parallel branch the step belongs to, if it belongs to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// For a child workflow step that began ([`Outcome::Started`]): the child run's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<RunId>,
    /// For a plugin step of a workflow with `record = true`: what the attempt saw, called
    /// and published, to replay it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<Box<super::recording::Recording>>,
}

/// The output a step's answer `json` gives its run: a JSON object (`null` is an empty
/// one), or why it gives none, a fatal error of the step.
pub fn step_output(json: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(output)) => Ok(output),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => Err("the step returned JSON that is not an object".into()),
        Err(e) => Err(format!("the step returned malformed JSON: {e}")),
    }
}

/// Something delivered to a run for its await steps, kept in its inbox until a step takes
/// it: a signal, or an event on a topic a step awaits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// A ULID: the inbox is in arrival order.
    pub id: String,
    /// What it is.
    pub kind: MessageKind,
    /// Its JSON.
    pub data: Value,
    /// When it arrived, ms since the Unix epoch.
    pub received_ms: u64,
}

/// What a [`Message`] is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// `POST /v1/runs/{id}/signals/{name}`.
    Signal {
        /// The signal's name.
        name: String,
    },
    /// An event.
    Event {
        /// The event's id.
        id: String,
        /// Its topic.
        topic: String,
        /// Its source.
        source: String,
        /// Its time.
        time_ms: u64,
    },
}

impl Message {
    /// What an await's `match` sees as `event`: `{id, topic, source, time_ms, data}` for an
    /// event, `{name, data}` for a signal.
    pub fn as_event(&self) -> Value {
        match &self.kind {
            MessageKind::Signal { name } => serde_json::json!({ "name": name, "data": self.data }),
            MessageKind::Event {
                id,
                topic,
                source,
                time_ms,
            } => serde_json::json!({
                "id": id, "topic": topic, "source": source, "time_ms": time_ms, "data": self.data,
            }),
        }
    }

    /// Whether an await step waiting for `awaits` takes it (its `match` aside).
    pub fn answers(&self, awaits: &super::AwaitDefinition) -> bool {
        match &self.kind {
            MessageKind::Signal { name } => awaits.signal.as_ref() == Some(name),
            MessageKind::Event { topic, .. } => awaits.topic.as_ref() == Some(topic),
        }
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The plugin succeeded.
    Ok,
    /// The plugin asked for a retry.
    Retryable,
    /// The plugin failed for good, or returned something the host refuses (not a JSON
    /// object, or over `runtime.max-output-bytes`).
    Fatal,
    /// The host stopped the call: trap, deadline, memory cap, or a panic in the host.
    Host,
    /// The step's `when` condition was false: it is skipped.
    Skipped,
    /// A waiting step began to wait (a sleep): the entry says until when. Its end is
    /// another entry, `ok` (or `fatal`).
    Started,
}

impl Outcome {
    /// Its name in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Retryable => "retryable",
            Outcome::Fatal => "fatal",
            Outcome::Host => "host",
            Outcome::Skipped => "skipped",
            Outcome::Started => "started",
        }
    }
}
