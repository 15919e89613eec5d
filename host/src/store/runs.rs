//! Runs: records, their journals, the indexes that list them, the pins that keep the
//! versions they need, and the deletion of finished ones ([`RunStore`]).

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{Flush, StoreError};
use crate::model::run::OLDEST_RUN_FORMAT;
use crate::model::{JournalEntry, Message, OutboxEntry, RUN_FORMAT, Run, RunId, RunStatus};

/// Filters and paging of [`RunStore::list`].
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only runs of this workflow.
    pub workflow: Option<String>,
    /// Only runs in this status.
    pub status: Option<RunStatus>,
    /// Only runs created at or after this time, ms since the Unix epoch.
    pub created_after: Option<u64>,
    /// Only runs created before this time, ms since the Unix epoch.
    pub created_before: Option<u64>,
    /// Only runs whose search fields ([`Run::search`]) have these values, all of them.
    pub search: Vec<(String, String)>,
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
    /// A run with this id, or with this idempotency key for this workflow, exists already:
    /// here it is.
    Existing(Box<Run>),
}

/// Which runs [`RunStore::claim`] takes over.
#[derive(Debug, Clone, Copy)]
pub enum Claim<'a> {
    /// This node's unfinished runs (pending, running, compensating), when it starts: a
    /// process of this node that is still about (paused, not dead) is fenced off them.
    Own,
    /// Unfinished runs whose owner's lease expired (it died, or stopped renewing), at most
    /// this many, skipping any another node is claiming now.
    Expired {
        /// The most to take in one call: claims go at a bounded rate.
        limit: usize,
    },
    /// This run, whoever holds it: one that a request here takes over.
    Run(&'a RunId),
    /// This run under a new epoch, if this process holds it still: one halted here by an
    /// unreachable store, whose halted attempt's events must not go out. Nothing if another
    /// node took it meanwhile.
    Again(&'a RunId),
}

/// A topic a run awaits events on, as [`RunStore::note_awaits`] notes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Awaiting {
    /// The topic.
    pub topic: String,
    /// Only events whose field at this path (from the event's root: `["data",
    /// "order_id"]`) has this value (keyed as the engine keys values) are for the run;
    /// `None`: any event on the topic may be.
    pub key: Option<(Vec<String>, String)>,
}

/// What a pin holds on to: a plugin version or a workflow definition version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PinKind {
    /// A plugin name and component digest.
    Plugin,
    /// A workflow name and definition digest.
    Workflow,
}

/// Storage of runs and their journals.
///
/// Every method is async, for backends across a network; the embedded one answers without
/// waiting (no fsync but in `flush`). Each is atomic on its own, and the multi-key ones are
/// ordered so that a crash between their writes leaves nothing a reader would trust (see
/// the backend).
#[async_trait]
pub trait RunStore: Flush {
    /// Stores a new run, unless one with the same id, or the same idempotency key for the
    /// same workflow, exists: then returns that one and stores nothing. Atomic however many
    /// callers race: one id or key, one run. Pins the run's plugin and workflow versions.
    async fn create(&self, run: &Run) -> Result<Created, StoreError>;

    /// Removes a run [`create`](Self::create) stored that was never made durable nor
    /// acknowledged (its creation's flush failed), with its key, indexes and pins, so that
    /// nothing is left a client's retry could find.
    async fn discard(&self, run: &Run) -> Result<(), StoreError>;

    /// Replaces a run's record with `run`, whose [`Run::revision`] must be one more than the
    /// stored record's: a compare-and-swap, [`StoreError::Conflict`] if someone else saved
    /// since. The record must reflect every journal entry below its [`Run::journaled`]. A
    /// save that [closes](Run::closed) the run releases its pins and makes it eligible for
    /// retention, in the same call.
    async fn save(&self, run: &Run) -> Result<(), StoreError>;

    /// [`Self::save`]s `run` and stages `outbox`, entries gated on this save (a run's end
    /// and its announcement): in one write where the store can (PostgreSQL), else the
    /// entries first and withdrawn if the save fails, their gate keeping them back until
    /// the save is in. Either way they are never released without the save.
    async fn save_and_stage(&self, run: &Run, outbox: &[OutboxEntry]) -> Result<(), StoreError>;

    /// The run [`create`](Self::create) would find for `run`: one with its id, or with its
    /// idempotency key for its workflow. Stores nothing.
    async fn find(&self, run: &Run) -> Result<Option<Run>, StoreError>;

    /// The run with this id, with the journal entries written since its record applied.
    async fn get(&self, id: &RunId) -> Result<Option<Run>, StoreError>;

    /// The run with this id, to drive it: [`StoreError::Fenced`] if another node owns it.
    async fn owned(&self, id: &RunId) -> Result<Option<Run>, StoreError>;

    /// Writes entry number [`Run::journaled`] of `run`'s journal, as its owner at
    /// [`Run::epoch`]: [`StoreError::Fenced`] if the run has another owner since.
    async fn append_journal(&self, run: &Run, entry: &JournalEntry) -> Result<(), StoreError>;

    /// A run's journal, oldest first.
    async fn journal(&self, run_id: &RunId) -> Result<Vec<JournalEntry>, StoreError>;

    /// Adds `message` to a run's inbox, for its await steps.
    async fn put_message(&self, run_id: &RunId, message: &Message) -> Result<(), StoreError>;

    /// A run's inbox, oldest first.
    async fn inbox(&self, run_id: &RunId) -> Result<Vec<Message>, StoreError>;

    /// Removes a message a step took; the journal entry that says so is written first, so a
    /// crash between the two leaves a message that the journal says was taken.
    async fn remove_message(&self, run_id: &RunId, id: &str) -> Result<(), StoreError>;

    /// Runs newest first, filtered and paged, from an index that holds just the runs asked
    /// for: by a search field's value when the query has one, else by status, workflow or
    /// both; the creation time bounds the index's range.
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError>;

    /// Takes runs over for this node, each under a new lease epoch, so that whoever held
    /// them before writes nothing more of them; drops the outbox entries their earlier
    /// owners staged whose causes were never written (orphans). Returns their ids: the
    /// runs the engine must drive now (a few may turn out to be finished: it checks each
    /// record).
    async fn claim(&self, claim: Claim<'_>) -> Result<Vec<RunId>, StoreError>;

    /// Notes what run `id` awaits events on, replacing what was noted of it; nothing: it
    /// awaits none now. On a store several nodes share, so that an event any node takes
    /// reaches the run wherever it is held ([`Self::awaiting`]); where one process drives
    /// every run its own index is enough, and this notes nothing.
    async fn note_awaits(&self, id: &RunId, awaits: &[Awaiting]) -> Result<(), StoreError> {
        let _ = (id, awaits);
        Ok(())
    }

    /// Whether any run is noted as awaiting events on `topic`.
    async fn awaited(&self, topic: &str) -> Result<bool, StoreError> {
        let _ = topic;
        Ok(false)
    }

    /// The runs held by other processes that are noted as awaiting events on `topic` and
    /// that an event may be for: those noted without a key, and those whose key `key_of`
    /// (the event's value at a path, keyed) matches.
    async fn awaiting(
        &self,
        topic: &str,
        key_of: &(dyn for<'p> Fn(&'p [String]) -> Option<String> + Sync),
    ) -> Result<Vec<RunId>, StoreError> {
        let _ = (topic, key_of);
        Ok(Vec::new())
    }

    /// How many runs pin each version of `name`, by digest: runs created and not closed,
    /// that is unfinished or waiting for an operator's retry. Counted from an index of just
    /// those runs.
    async fn pins(&self, kind: PinKind, name: &str) -> Result<BTreeMap<String, usize>, StoreError>;

    /// Closed runs that ended before `cutoff_ms`, oldest first, at most `limit`: their
    /// ids with when they ended.
    async fn ended_before(
        &self,
        cutoff_ms: u64,
        limit: usize,
    ) -> Result<Vec<(u64, RunId)>, StoreError>;

    /// Deletes a closed run that ended at `ended_ms` (as [`ended_before`](Self::ended_before)
    /// listed it), its journal, indexes and idempotency key; a run that is not closed stays,
    /// and only the listing goes. Idempotent; a crash half-way leaves it listed, to be
    /// deleted again.
    async fn delete(&self, id: &RunId, ended_ms: u64) -> Result<(), StoreError>;
}

/// Why a record was refused: a format this release does not read.
#[derive(Debug, thiserror::Error)]
#[error("format {found} (this release reads formats {OLDEST_RUN_FORMAT} to {RUN_FORMAT})")]
struct UnknownFormat {
    found: u32,
}

/// Whether a run record of `format`, stored under `id`, is one this release reads.
pub(crate) fn check_format(id: &[u8], format: u32) -> Result<(), StoreError> {
    if (OLDEST_RUN_FORMAT..=RUN_FORMAT).contains(&format) {
        return Ok(());
    }
    Err(StoreError::Corrupt {
        key: String::from_utf8_lossy(id).into_owned(),
        cause: UnknownFormat { found: format }.into(),
    })
}
