//! Plain data that every layer shares: ids, runs and their journal, events, plugin and
//! workflow versions, workflow definitions, retry policies and time.
//!
//! The bottom layer: nothing here does I/O, and nothing here depends on the modules above
//! it (`store`, `runtime`, `saga`, ...). The store persists these types, the engine and the
//! API pass them around, and each keeps its own behaviour to itself.
//!
//! - [`id`]: [`RunId`], a newtype over the run's ULID or client-chosen id;
//! - [`run`]: a [`Run`] record, its steps, its journal entries and their statuses;
//! - [`event`]: events and what carries them: outbox entries, gates, deliveries, dead letters;
//! - [`version`]: plugin and workflow versions and the heads that say which is current;
//! - [`workflow`]: workflow definitions (`[workflows.<name>]`) and their canonical digest;
//! - [`expr`]: the CEL expressions of definitions (`when`, `sleep-until`), compiled once;
//! - [`retry`]: the one retry policy of steps, deliveries and service calls, with jitter;
//! - [`schedule`]: cron schedules of workflows, and which missed firings to catch up;
//! - [`time`]: the injectable [`Clock`] and the time formats of the API.

pub mod event;
pub mod expr;
pub mod id;
pub mod recording;
pub mod retry;
pub mod run;
pub mod schedule;
pub mod time;
pub mod version;
pub mod workflow;

pub use self::event::{DeadLetter, Delivery, Gate, OutboxEntry, PublishedEvent};
pub use self::expr::{Expr, ExprError};
pub use self::id::{InvalidRunId, RunId};
pub use self::retry::RetryPolicy;
pub use self::run::{
    Direction, JournalEntry, Message, MessageKind, Outcome, RUN_FORMAT, Run, RunError, RunStatus,
    StepState, StepStatus,
};
pub use self::time::{Clock, SystemClock, now_ms, rfc3339};
pub use self::version::{Grants, Head, PluginVersion, SignedBy, VersionSource, WorkflowVersion};
pub use self::workflow::{
    AwaitDefinition, Branch, OnTimeout, StepDefinition, StepKind, WorkflowDefinition,
};

/// A credential from the configuration: never shown by `Debug`, never logged.
#[derive(Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The credential.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}
