//! Persistence: runs (the records and the [`RunStore`] trait, here), events ([`events`]) and
//! plugin versions ([`plugins`]); backends beside them (`sled`).
//!
//! A run is a record (its status, initial context, the plugin versions it is pinned to, and
//! a snapshot of each step's state and output) plus a journal: one entry per attempt, with
//! what it returned. The journal is the source of truth for steps: the engine appends one
//! entry per attempt and rewrites the record only when the run's status changes, and
//! readers fold the entries written since the snapshot into it ([`Run::apply`]), so a step
//! costs one small write, not a rewrite of the whole run. Records carry a format version so
//! that a later release can migrate them. Writes are cheap and buffered;
//! [`RunStore::flush`] makes everything written so far durable, and concurrent callers
//! share one flush (group commit), so durability does not serialise throughput.

pub mod events;
pub mod plugins;
pub mod sled;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::runtime::Direction;

/// The format of [`Run`] records this release writes. Format 2 added the journal as the
/// source of step state ([`Run::journaled`], [`JournalEntry::output`]).
pub const RUN_FORMAT: u32 = 2;

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Accepted, not started yet.
    Pending,
    /// Executing its steps.
    Running,
    /// Every step completed.
    Completed,
    /// A step failed; completed steps are being undone in reverse order.
    Compensating,
    /// A step failed and every completed step was undone.
    Compensated,
    /// A compensation kept failing; an operator can retry it.
    CompensationFailed,
    /// A step failed and there was nothing to undo, or the run could not go on.
    Failed,
}

impl RunStatus {
    /// All statuses, for parsing and indexes.
    pub const ALL: [RunStatus; 7] = [
        RunStatus::Pending,
        RunStatus::Running,
        RunStatus::Completed,
        RunStatus::Compensating,
        RunStatus::Compensated,
        RunStatus::CompensationFailed,
        RunStatus::Failed,
    ];

    /// Whether the engine is done with the run (an operator may still retry some).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Completed
                | RunStatus::Compensated
                | RunStatus::CompensationFailed
                | RunStatus::Failed
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
        }
    }

    /// Parses [`Self::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// Where a step is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not reached.
    Pending,
    /// Executing (or was, when the host stopped).
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
    /// When its first attempt started, ms since the Unix epoch.
    pub started_ms: Option<u64>,
    /// When it last reached `completed`, `failed`, `compensated` or `compensation_failed`.
    pub ended_ms: Option<u64>,
    /// The last error of an attempt, if any.
    pub error: Option<String>,
    /// What `execute` returned, merged into the context for the steps after it.
    pub output: Option<Map<String, Value>>,
}

impl StepState {
    /// A step not reached yet.
    pub fn pending(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            status: StepStatus::Pending,
            attempts: 0,
            compensation_attempts: 0,
            started_ms: None,
            ended_ms: None,
            error: None,
            output: None,
        }
    }
}

/// Why a run failed: the step and its error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunError {
    /// The step that failed (or whose compensation failed).
    pub step: String,
    /// What happened.
    pub message: String,
}

/// One run of a workflow, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// [`RUN_FORMAT`] when written.
    pub format: u32,
    /// The run id: a ULID, or the client's own id.
    pub id: String,
    /// The workflow it runs.
    pub workflow: String,
    /// Its status.
    pub status: RunStatus,
    /// The context it started with.
    pub input: Map<String, Value>,
    /// One entry per workflow step, in order.
    pub steps: Vec<StepState>,
    /// The failure that stopped it, if any.
    pub error: Option<RunError>,
    /// Plugin name to component digest: the versions this run started with.
    pub plugins: BTreeMap<String, String>,
    /// The client's `Idempotency-Key`, if it sent one.
    pub idempotency_key: Option<String>,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: u64,
    /// Last change.
    pub updated_ms: u64,
    /// When it reached a terminal status.
    pub ended_ms: Option<u64>,
    /// How many journal entries this record reflects: the next entry's sequence number.
    pub journaled: u32,
}

impl Run {
    /// The context after the first `steps` steps: the input with each completed step's
    /// output merged in, later keys over earlier ones.
    pub fn context_after(&self, steps: usize) -> Map<String, Value> {
        let mut context = self.input.clone();
        for step in self.steps.iter().take(steps) {
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
    /// step's retries are exhausted; the engine, which knows the policy, decides that.
    pub fn apply(&mut self, entry: &JournalEntry) {
        self.journaled += 1;
        self.updated_ms = self.updated_ms.max(entry.ended_ms);
        let Some(state) = self.steps.iter_mut().find(|s| s.name == entry.step) else {
            return;
        };
        state.error.clone_from(&entry.error);
        let ended = Some(entry.ended_ms);
        match entry.direction {
            Direction::Execute => {
                state.attempts = entry.attempt;
                state.started_ms.get_or_insert(entry.started_ms);
                state.status = match entry.outcome {
                    Outcome::Ok => {
                        state.output = Some(entry.output.clone().unwrap_or_default());
                        state.ended_ms = ended;
                        StepStatus::Completed
                    }
                    Outcome::Fatal => {
                        state.ended_ms = ended;
                        StepStatus::Failed
                    }
                    Outcome::Retryable | Outcome::Host => StepStatus::Running,
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
                    Outcome::Retryable | Outcome::Host => StepStatus::Compensating,
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
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The plugin succeeded.
    Ok,
    /// The plugin asked for a retry.
    Retryable,
    /// The plugin failed for good, or returned something that is not a JSON object.
    Fatal,
    /// The host stopped the call: trap, deadline, memory cap.
    Host,
}

/// Filters and paging of [`RunStore::list`].
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only runs of this workflow.
    pub workflow: Option<String>,
    /// Only runs in this status.
    pub status: Option<RunStatus>,
    /// Page size.
    pub limit: usize,
    /// Where the previous page ended (its `next_cursor`).
    pub cursor: Option<String>,
}

/// One page of runs, newest first.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The runs.
    pub runs: Vec<Run>,
    /// Pass as `cursor` for the next page; none on the last page.
    pub next_cursor: Option<String>,
}

/// What [`RunStore::create`] did.
#[derive(Debug, Clone)]
pub enum Created {
    /// The run is new.
    New,
    /// A run with this id or idempotency key exists already: here it is.
    Existing(Box<Run>),
}

/// A storage failure. The engine treats every one as a reason to stop driving the run;
/// the run resumes from its last durable state on the next start.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed.
    #[error("run store: {0}")]
    Backend(String),
    /// A record does not decode (corrupt, or written by a newer release).
    #[error("run store: record `{key}` does not decode: {reason}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The cursor was not one this store handed out.
    #[error("invalid cursor")]
    InvalidCursor,
}

/// A boxed future, for the one async method of a dyn-compatible trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Storage of runs and their journals.
///
/// Writes are atomic per call and visible to reads at once, but durable only after a
/// [`flush`](Self::flush) that started after them returns. All methods but `flush` are
/// quick and may be called from async code.
pub trait RunStore: Send + Sync {
    /// Stores a new run, unless one with the same id, or the same idempotency key for the
    /// same workflow, exists: then returns that one and stores nothing.
    fn create(&self, run: &Run) -> Result<Created, StoreError>;

    /// Replaces a run's record; `previous` is the status it had in the store, so that the
    /// status index moves only when the status does. The record must reflect every entry
    /// of the journal below its [`Run::journaled`].
    fn save(&self, run: &Run, previous: RunStatus) -> Result<(), StoreError>;

    /// The run with this id, with the journal entries written since its record applied.
    fn get(&self, id: &str) -> Result<Option<Run>, StoreError>;

    /// Writes entry number `seq` of a run's journal: the run's [`Run::journaled`] before
    /// the entry is applied to it.
    fn append_journal(
        &self,
        run_id: &str,
        seq: u32,
        entry: &JournalEntry,
    ) -> Result<(), StoreError>;

    /// A run's journal, oldest first.
    fn journal(&self, run_id: &str) -> Result<Vec<JournalEntry>, StoreError>;

    /// Runs newest first, filtered and paged.
    fn list(&self, query: &ListQuery) -> Result<Page, StoreError>;

    /// Every run the engine must drive on start: pending, running or compensating.
    fn unfinished(&self) -> Result<Vec<Run>, StoreError>;

    /// Makes every write that happened before this call durable. Concurrent calls share
    /// one flush of the backend.
    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// How many runs pin each plugin version, by plugin name and digest: the runs that may
    /// still call a plugin, that is the unfinished ones and the ended ones an operator may
    /// retry (`compensation_failed`, and `failed` with a completed step). An admin's
    /// question, answered by scans of those runs.
    ///
    /// A retry moves a run from the second group to the first while the scans run, and a
    /// failing compensation the other way; scanning the unfinished runs before and after
    /// the ended ones sees a run that moves either way.
    fn pins(&self) -> Result<HashMap<(String, String), usize>, StoreError> {
        let mut runs: HashMap<String, Run> = HashMap::new();
        let mut add = |found: Vec<Run>| {
            for run in found {
                runs.entry(run.id.clone()).or_insert(run);
            }
        };
        add(self.unfinished()?);
        for status in [RunStatus::CompensationFailed, RunStatus::Failed] {
            let mut cursor = None;
            loop {
                let page = self.list(&ListQuery {
                    status: Some(status),
                    limit: 500,
                    cursor,
                    ..ListQuery::default()
                })?;
                add(page
                    .runs
                    .into_iter()
                    .filter(|run| {
                        status == RunStatus::CompensationFailed
                            || run.steps.iter().any(|s| s.status == StepStatus::Completed)
                    })
                    .collect());
                cursor = page.next_cursor;
                if cursor.is_none() {
                    break;
                }
            }
        }
        add(self.unfinished()?);
        let mut pins = HashMap::new();
        for run in runs.into_values() {
            for (name, digest) in run.plugins {
                *pins.entry((name, digest)).or_default() += 1;
            }
        }
        Ok(pins)
    }
}

/// `ms` since the Unix epoch as RFC 3339 with milliseconds, UTC: how the API and
/// CloudEvents show times.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
