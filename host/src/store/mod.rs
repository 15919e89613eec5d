//! Persistence behind traits, one module per keyspace, backends beside them.
//!
//! - [`runs`]: [`RunStore`]: run records, their journals, indexes, pins and retention;
//! - [`events`]: [`EventStore`]: the outbox, the embedded delivery queues, dead letters;
//! - [`plugins`]: [`PluginStore`]: plugin components and versions;
//! - [`workflows`]: [`WorkflowStore`]: workflow definitions and versions;
//! - [`nodes`]: [`NodeStore`]: the nodes sharing the store, their heartbeats and leases;
//! - [`sled`]: the embedded backend, one database for all of them (group commit);
//! - [`postgres`]: the backend several nodes share;
//! - [`config`]: `[store]`, which backend;
//! - [`faults`]: a wrapper that fails or panics on chosen writes and flushes, for tests.
//!
//! The traits are async (`async_trait`, so that the host holds them as `dyn`): a backend
//! may be across a network. The store depends on [`crate::model`] only. Every write is
//! atomic per call and visible to reads at once, but durable only after a
//! [`Flush::flush`] that started after it returns; concurrent callers share one flush of
//! the backend (group commit), so durability does not serialise throughput. Errors say
//! what the caller can do next ([`StoreError::is_retryable`]).

pub mod config;
pub mod events;
pub mod faults;
pub mod nodes;
pub mod plugins;
pub mod postgres;
pub mod runs;
pub mod sled;
#[cfg(test)]
mod tests;
pub mod workflows;

use std::error::Error;
use std::future::Future;
use std::pin::Pin;

pub use self::config::{StoreConfig, StoreKind};
pub use self::events::EventStore;
pub use self::nodes::{Node, NodeInfo, NodeStore};
pub use self::plugins::PluginStore;
pub use self::runs::{Awaiting, Claim, Created, ListQuery, Page, PinKind, RunStore};
pub use self::workflows::WorkflowStore;
use crate::model::RunId;

/// A boxed future, for the async methods of dyn-compatible traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The underlying error an error of ours carries (and shows in its message, so that a log
/// line with `%error` says it).
pub type Cause = Box<dyn Error + Send + Sync>;

/// Why a store operation failed, grouped by what the caller can do next.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not read, write or flush. Nothing is known to have changed; the
    /// operation may succeed later ([`Self::is_retryable`]).
    #[error("store: {op} failed: {cause}")]
    Unavailable {
        /// What was being done (`flush`, `write a journal entry`, ...).
        op: &'static str,
        /// The backend's error.
        cause: Cause,
    },
    /// A record does not decode: corrupt, or written by a newer release. Retrying will not
    /// help; the record needs an operator.
    #[error("store: record `{key}` does not decode: {cause}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// Why.
        cause: Cause,
    },
    /// The backend refused what was written (a value it cannot hold, over one of its
    /// limits): the same write would be refused again.
    #[error("store: {op} refused: {cause}")]
    Rejected {
        /// What was being done.
        op: &'static str,
        /// The backend's error.
        cause: Cause,
    },
    /// A compare-and-swap lost: the run's record changed since the caller read it. Read it
    /// again and decide anew.
    #[error("store: run `{0}` changed since it was read")]
    Conflict(RunId),
    /// The run has a new owner: another node claimed it (this one's lease expired, or a
    /// request there took the run over), so this node's lease epoch no longer writes it.
    /// Drop the run; its owner drives it now.
    #[error("store: run `{0}` is owned by another node now")]
    Fenced(RunId),
    /// The cursor was not one this store handed out: the client's mistake.
    #[error("invalid cursor")]
    InvalidCursor,
}

impl StoreError {
    /// An [`Self::Unavailable`] for `op`, caused by `source`.
    pub fn unavailable(op: &'static str, cause: impl Into<Cause>) -> Self {
        Self::Unavailable {
            op,
            cause: cause.into(),
        }
    }

    /// Whether the same operation may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Conflict(_))
    }
}

/// Durability: what makes the writes before it survive a crash. Every store has it.
pub trait Flush: Send + Sync {
    /// Makes every write that happened before this call durable. Concurrent calls share
    /// one flush of the backend. May take milliseconds (an fsync); never blocks the
    /// executor.
    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>>;
}

/// All the stores the host needs, in one backend.
pub trait Store: RunStore + EventStore + PluginStore + WorkflowStore + NodeStore {}

impl<T: RunStore + EventStore + PluginStore + WorkflowStore + NodeStore> Store for T {}
