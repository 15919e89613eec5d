//! Fault injection, for tests: a [`FaultyStore`] wraps a real store and fails, or panics on,
//! the writes and flushes a test's [`Faults`] plan picks, passing everything else through.
//!
//! ```
//! # use std::sync::Arc;
//! # use flowhost::store::faults::{Faults, FaultyStore, Op};
//! # let dir = tempfile::tempdir().unwrap();
//! # let sled_store = Arc::new(flowhost::store::sled::SledStore::open(dir.path()).unwrap());
//! let faults = Arc::new(Faults::default());
//! let store = FaultyStore::new(sled_store, faults.clone());
//! // The next flush fails, as a full disk would make it.
//! faults.fail(1, |op| matches!(op, Op::Flush));
//! // The second journal entry of any run is never written: the engine must stop cleanly.
//! faults.fail(1, |op| matches!(op, Op::AppendJournal { run, .. } if run.journaled == 1));
//! ```
//!
//! Reads are never failed: a plan is about what a crash or a broken disk does to writes.
//! A plan's predicates may keep state of their own, set by an [`Faults::observe`]r that
//! sees every operation, so that a fault can wait for a moment: "fail the flush that
//! follows this handler's events".

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{
    Awaiting, BoxFuture, Claim, Created, EventStore, Flush, ListQuery, Node, NodeInfo, NodeStore,
    Page, PinKind, PluginStore, RunStore, Store, StoreError, WorkflowStore,
};
use crate::model::{
    DeadLetter, Delivery, Gate, Head, JournalEntry, Message, OutboxEntry, PluginVersion, Run,
    RunId, WorkflowVersion,
};

/// A write or a flush, as a fault plan sees it.
#[derive(Debug)]
pub enum Op<'a> {
    /// [`RunStore::create`].
    Create(&'a Run),
    /// [`RunStore::discard`].
    Discard(&'a Run),
    /// [`RunStore::save`].
    Save(&'a Run),
    /// [`RunStore::append_journal`].
    AppendJournal {
        /// The run, as of before the entry (its `journaled` is the entry's number).
        run: &'a Run,
        /// The entry.
        entry: &'a JournalEntry,
    },
    /// [`RunStore::put_message`] and [`RunStore::remove_message`].
    Inbox(&'a RunId),
    /// [`RunStore::delete`].
    Delete(&'a RunId),
    /// [`EventStore::outbox_put`].
    OutboxPut(&'a [OutboxEntry]),
    /// [`EventStore::outbox_remove`].
    OutboxRemove(&'a str),
    /// [`EventStore::enqueue`].
    Enqueue(&'a Delivery),
    /// [`EventStore::dequeue`].
    Dequeue(&'a Delivery),
    /// [`EventStore::bury`].
    Bury(&'a DeadLetter),
    /// [`EventStore::exhume`].
    Exhume(&'a str),
    /// A write of the plugin or workflow registry.
    Registry,
    /// [`RunStore::claim`].
    Claim,
    /// [`NodeStore::heartbeat`] and [`NodeStore::leave`].
    Membership,
    /// [`Flush::flush`].
    Flush,
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// The operation fails with [`StoreError::Unavailable`] and changes nothing.
    Fail,
    /// The operation panics, as a bug in the host would.
    Panic,
}

type Predicate = Box<dyn Fn(&Op<'_>) -> bool + Send + Sync>;

struct Rule {
    when: Predicate,
    times: usize,
    /// What it does; none for an observer, which only sees.
    effect: Option<Effect>,
}

/// A fault plan: rules tried in the order they were added; the first that matches and has
/// times left applies. Shared between the test and its [`FaultyStore`].
#[derive(Default)]
pub struct Faults {
    /// A std `Mutex`: held while the predicates run, never across an `.await`.
    rules: Mutex<Vec<Rule>>,
}

/// The cause of an injected failure.
#[derive(Debug, thiserror::Error)]
#[error("injected fault")]
pub struct InjectedFault;

impl Faults {
    /// The next `times` operations `when` matches fail.
    pub fn fail(&self, times: usize, when: impl Fn(&Op<'_>) -> bool + Send + Sync + 'static) {
        self.add(times, Some(Effect::Fail), Box::new(when));
    }

    /// The next `times` operations `when` matches panic.
    pub fn panic(&self, times: usize, when: impl Fn(&Op<'_>) -> bool + Send + Sync + 'static) {
        self.add(times, Some(Effect::Panic), Box::new(when));
    }

    /// Shows every operation to `see`, before any rule added after it: a way to arm a
    /// fault when something has happened.
    pub fn observe(&self, see: impl Fn(&Op<'_>) + Send + Sync + 'static) {
        self.add(
            usize::MAX,
            None,
            Box::new(move |op| {
                see(op);
                false
            }),
        );
    }

    /// Drops every rule: the store works again.
    pub fn clear(&self) {
        self.rules.lock().expect("faults lock").clear();
    }

    fn add(&self, times: usize, effect: Option<Effect>, when: Predicate) {
        self.rules.lock().expect("faults lock").push(Rule {
            when,
            times,
            effect,
        });
    }

    /// Applies the plan to `op`: `Err` for an injected failure, a panic for an injected
    /// panic.
    fn check(&self, name: &'static str, op: &Op<'_>) -> Result<(), StoreError> {
        let effect = {
            let mut rules = self.rules.lock().expect("faults lock");
            let hit = rules
                .iter_mut()
                .find(|rule| rule.times > 0 && (rule.when)(op));
            hit.and_then(|rule| {
                rule.times -= 1;
                rule.effect
            })
        };
        match effect {
            None => Ok(()),
            Some(Effect::Fail) => Err(StoreError::unavailable(name, InjectedFault)),
            Some(Effect::Panic) => panic!("injected panic: {name}"),
        }
    }
}

/// A store that consults a [`Faults`] plan before every write and flush.
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    faults: Arc<Faults>,
}

impl FaultyStore {
    /// Wraps `inner`, following `faults`.
    pub fn new(inner: Arc<dyn Store>, faults: Arc<Faults>) -> Self {
        Self { inner, faults }
    }
}

impl Flush for FaultyStore {
    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.faults.check("flush", &Op::Flush)?;
            self.inner.flush().await
        })
    }
}

#[async_trait]
impl RunStore for FaultyStore {
    async fn create(&self, run: &Run) -> Result<Created, StoreError> {
        self.faults.check("create a run", &Op::Create(run))?;
        self.inner.create(run).await
    }

    async fn discard(&self, run: &Run) -> Result<(), StoreError> {
        self.faults.check("discard a run", &Op::Discard(run))?;
        self.inner.discard(run).await
    }

    async fn save(&self, run: &Run) -> Result<(), StoreError> {
        self.faults.check("save a run", &Op::Save(run))?;
        self.inner.save(run).await
    }

    async fn save_and_stage(&self, run: &Run, outbox: &[OutboxEntry]) -> Result<(), StoreError> {
        self.faults
            .check("write the outbox", &Op::OutboxPut(outbox))?;
        self.faults.check("save a run", &Op::Save(run))?;
        self.inner.save_and_stage(run, outbox).await
    }

    async fn get(&self, id: &RunId) -> Result<Option<Run>, StoreError> {
        self.inner.get(id).await
    }

    async fn owned(&self, id: &RunId) -> Result<Option<Run>, StoreError> {
        self.inner.owned(id).await
    }

    async fn append_journal(&self, run: &Run, entry: &JournalEntry) -> Result<(), StoreError> {
        self.faults
            .check("write a journal entry", &Op::AppendJournal { run, entry })?;
        self.inner.append_journal(run, entry).await
    }

    async fn put_message(&self, run_id: &RunId, message: &Message) -> Result<(), StoreError> {
        self.faults.check("write a message", &Op::Inbox(run_id))?;
        self.inner.put_message(run_id, message).await
    }

    async fn inbox(&self, run_id: &RunId) -> Result<Vec<Message>, StoreError> {
        self.inner.inbox(run_id).await
    }

    async fn remove_message(&self, run_id: &RunId, id: &str) -> Result<(), StoreError> {
        self.faults.check("remove a message", &Op::Inbox(run_id))?;
        self.inner.remove_message(run_id, id).await
    }

    async fn journal(&self, run_id: &RunId) -> Result<Vec<JournalEntry>, StoreError> {
        self.inner.journal(run_id).await
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.inner.list(query).await
    }

    async fn claim(&self, claim: Claim<'_>) -> Result<Vec<RunId>, StoreError> {
        self.faults.check("claim runs", &Op::Claim)?;
        self.inner.claim(claim).await
    }

    async fn find(&self, run: &Run) -> Result<Option<Run>, StoreError> {
        self.inner.find(run).await
    }

    async fn note_awaits(&self, id: &RunId, awaits: &[Awaiting]) -> Result<(), StoreError> {
        self.inner.note_awaits(id, awaits).await
    }

    async fn awaited(&self, topic: &str) -> Result<bool, StoreError> {
        self.inner.awaited(topic).await
    }

    async fn awaiting(
        &self,
        topic: &str,
        key_of: &(dyn for<'p> Fn(&'p [String]) -> Option<String> + Sync),
    ) -> Result<Vec<RunId>, StoreError> {
        self.inner.awaiting(topic, key_of).await
    }

    async fn pins(&self, kind: PinKind, name: &str) -> Result<BTreeMap<String, usize>, StoreError> {
        self.inner.pins(kind, name).await
    }

    async fn ended_before(
        &self,
        cutoff_ms: u64,
        limit: usize,
    ) -> Result<Vec<(u64, RunId)>, StoreError> {
        self.inner.ended_before(cutoff_ms, limit).await
    }

    async fn delete(&self, id: &RunId, ended_ms: u64) -> Result<(), StoreError> {
        self.faults.check("delete a run", &Op::Delete(id))?;
        self.inner.delete(id, ended_ms).await
    }
}

#[async_trait]
impl EventStore for FaultyStore {
    async fn outbox_put(&self, entries: &[OutboxEntry]) -> Result<(), StoreError> {
        self.faults
            .check("write the outbox", &Op::OutboxPut(entries))?;
        self.inner.outbox_put(entries).await
    }

    async fn outbox_depth(&self) -> Result<usize, StoreError> {
        self.inner.outbox_depth().await
    }

    async fn outbox_pending(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.inner.outbox_pending(after, limit).await
    }

    async fn outbox_take(
        &self,
        after: Option<&str>,
        limit: usize,
        hold: Duration,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.inner.outbox_take(after, limit, hold).await
    }

    async fn outbox_remove(&self, event_id: &str) -> Result<(), StoreError> {
        self.faults
            .check("remove from the outbox", &Op::OutboxRemove(event_id))?;
        self.inner.outbox_remove(event_id).await
    }

    async fn gate_open(&self, gate: &Gate) -> Result<bool, StoreError> {
        self.inner.gate_open(gate).await
    }

    async fn enqueue(&self, delivery: &Delivery) -> Result<(), StoreError> {
        self.faults
            .check("queue a delivery", &Op::Enqueue(delivery))?;
        self.inner.enqueue(delivery).await
    }

    async fn due(
        &self,
        subscription: &str,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.inner.due(subscription, now_ms, limit).await
    }

    async fn queue_depth(&self, subscription: &str) -> Result<usize, StoreError> {
        self.inner.queue_depth(subscription).await
    }

    async fn next_due(&self, subscription: &str) -> Result<Option<u64>, StoreError> {
        self.inner.next_due(subscription).await
    }

    async fn dequeue(&self, delivery: &Delivery) -> Result<(), StoreError> {
        self.faults
            .check("dequeue a delivery", &Op::Dequeue(delivery))?;
        self.inner.dequeue(delivery).await
    }

    async fn bury(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        self.faults
            .check("store a dead letter", &Op::Bury(letter))?;
        self.inner.bury(letter).await
    }

    async fn dead_letters(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        self.inner.dead_letters(limit, cursor).await
    }

    async fn dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        self.inner.dead_letter(id).await
    }

    async fn exhume(&self, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        self.faults.check("remove a dead letter", &Op::Exhume(id))?;
        self.inner.exhume(id).await
    }

    async fn dead_letters_before(
        &self,
        cutoff_ms: u64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.inner.dead_letters_before(cutoff_ms, limit).await
    }
}

#[async_trait]
impl PluginStore for FaultyStore {
    async fn put_component(&self, digest: &str, wasm: &[u8]) -> Result<(), StoreError> {
        self.faults.check("store a component", &Op::Registry)?;
        self.inner.put_component(digest, wasm).await
    }

    async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.component(digest).await
    }

    async fn put_version(&self, version: &PluginVersion) -> Result<(), StoreError> {
        self.faults.check("store a plugin version", &Op::Registry)?;
        self.inner.put_version(version).await
    }

    async fn version(&self, name: &str, digest: &str) -> Result<Option<PluginVersion>, StoreError> {
        self.inner.version(name, digest).await
    }

    async fn versions(&self, name: &str) -> Result<Vec<PluginVersion>, StoreError> {
        self.inner.versions(name).await
    }

    async fn remove_version(&self, name: &str, digest: &str) -> Result<bool, StoreError> {
        self.faults
            .check("remove a plugin version", &Op::Registry)?;
        self.inner.remove_version(name, digest).await
    }

    async fn head(&self, name: &str) -> Result<Option<Head>, StoreError> {
        self.inner.head(name).await
    }

    async fn put_head(&self, name: &str, head: &Head) -> Result<(), StoreError> {
        self.faults.check("store a plugin head", &Op::Registry)?;
        self.inner.put_head(name, head).await
    }
}

#[async_trait]
impl WorkflowStore for FaultyStore {
    async fn put_workflow_version(&self, version: &WorkflowVersion) -> Result<(), StoreError> {
        self.faults
            .check("store a workflow version", &Op::Registry)?;
        self.inner.put_workflow_version(version).await
    }

    async fn workflow_version(
        &self,
        name: &str,
        digest: &str,
    ) -> Result<Option<WorkflowVersion>, StoreError> {
        self.inner.workflow_version(name, digest).await
    }

    async fn workflow_versions(&self, name: &str) -> Result<Vec<WorkflowVersion>, StoreError> {
        self.inner.workflow_versions(name).await
    }

    async fn remove_workflow_version(&self, name: &str, digest: &str) -> Result<(), StoreError> {
        self.faults
            .check("remove a workflow version", &Op::Registry)?;
        self.inner.remove_workflow_version(name, digest).await
    }

    async fn workflow_heads(&self) -> Result<Vec<(String, Head)>, StoreError> {
        self.inner.workflow_heads().await
    }

    async fn put_workflow_head(&self, name: &str, head: &Head) -> Result<(), StoreError> {
        self.faults.check("store a workflow head", &Op::Registry)?;
        self.inner.put_workflow_head(name, head).await
    }

    async fn schedule_mark(&self, name: &str) -> Result<Option<u64>, StoreError> {
        self.inner.schedule_mark(name).await
    }

    async fn put_schedule_mark(&self, name: &str, ms: u64) -> Result<(), StoreError> {
        self.faults.check("store a schedule mark", &Op::Registry)?;
        self.inner.put_schedule_mark(name, ms).await
    }
}

#[async_trait]
impl NodeStore for FaultyStore {
    async fn heartbeat(&self, node: &NodeInfo, lease: Duration) -> Result<bool, StoreError> {
        self.faults.check("renew a node's lease", &Op::Membership)?;
        self.inner.heartbeat(node, lease).await
    }

    async fn leave(&self, id: &str) -> Result<(), StoreError> {
        self.faults.check("end a node's lease", &Op::Membership)?;
        self.inner.leave(id).await
    }

    async fn nodes(&self, forgotten_after: Duration) -> Result<Vec<Node>, StoreError> {
        self.inner.nodes(forgotten_after).await
    }

    fn registry_changes(&self) -> Option<tokio::sync::watch::Receiver<()>> {
        self.inner.registry_changes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sled::testing::store;

    #[tokio::test]
    async fn a_plan_fails_what_it_matches_as_often_as_it_says() {
        let (inner, _dir) = store();
        let faults = Arc::new(Faults::default());
        let store = FaultyStore::new(Arc::new(inner), faults.clone());
        faults.fail(2, |op| matches!(op, Op::Flush));
        for _ in 0..2 {
            let error = store.flush().await.unwrap_err();
            assert!(error.is_retryable(), "{error}");
        }
        store.flush().await.unwrap();
        faults.panic(1, |op| matches!(op, Op::Exhume("x")));
        assert!(store.exhume("y").await.unwrap().is_none());
        let panicked =
            futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(store.exhume("x")))
                .await;
        assert!(panicked.is_err());
        assert!(store.exhume("x").await.unwrap().is_none(), "once");
    }
}
