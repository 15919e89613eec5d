//! The embedded store on sled: one database for runs, events, plugin and workflow versions,
//! one tree per keyspace.
//!
//! | tree | key | value |
//! | --- | --- | --- |
//! | `runs` | run id | the [`Run`](crate::model::Run), JSON |
//! | `journal` | run id, `0`, sequence (u32 BE) | a [`JournalEntry`](crate::model::JournalEntry), JSON |
//! | `inbox` | run id, `0`, message id (a ULID) | a [`Message`](crate::model::Message) for the run's await steps, JSON |
//! | `by_status` | status byte, created ms, run id | empty |
//! | `by_workflow_status` | workflow, `0`, status byte, created ms, run id | empty |
//! | `by_ended` | ended ms (u64 BE), run id: closed runs, for retention | empty |
//! | `by_field` | search field, `0`, value, `0`, created ms, run id: runs by their search fields | empty |
//! | `idempotency` | workflow, `0`, client key | run id |
//! | `outbox` | event id (a ULID: time-ordered) | an [`OutboxEntry`](crate::model::OutboxEntry), JSON |
//! | `queue` | subscription, `0`, due ms (u64 BE), event id | a [`Delivery`](crate::model::Delivery), JSON |
//! | `dead_letters` | dead letter id (a ULID) | a [`DeadLetter`](crate::model::DeadLetter), JSON |
//! | `components` | SHA-256, hex | a plugin component's bytes |
//! | `plugin_versions` | plugin name, `0`, digest | a [`PluginVersion`](crate::model::PluginVersion), JSON |
//! | `plugin_heads` | plugin name | a [`Head`](crate::model::Head), JSON |
//! | `workflow_versions` | workflow name, `0`, digest | a [`WorkflowVersion`](crate::model::WorkflowVersion), JSON |
//! | `workflow_heads` | workflow name | a [`Head`](crate::model::Head), JSON |
//! | `schedules` | workflow name | the latest firing of its schedule that was started (ms, u64 BE) |
//! | `meta` | `schema` | the layout's version (u32 BE): 3 since the indexes above |
//! | `meta` | `node` | the one node: what it said of itself, its last heartbeat and lease end (ms) |
//!
//! A database from before schema 3 (runs in format 2) gains the indexes it lacks when it
//! is opened: the workflow-and-status index for every run, and the ended index (with the
//! closed mark) for the runs that are done, so that retention finds them.
//!
//! No sled transactions (see `runs.rs`): sled's first transaction puts every later
//! operation behind one process-wide lock, which a flush holds for its whole write and
//! sync. Instead writes are ordered so that a crash can leave an extra entry but never lose
//! one, and readers check the record. sled keeps one log for all trees, so a crash keeps a
//! prefix of the writes: a record written after its index entries is never durable without
//! them. Durability comes from `flush`: one committer thread flushes sled for every caller
//! waiting at that moment (group commit).

mod events;
mod nodes;
mod plugins;
mod runs;
mod workflows;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use super::{BoxFuture, Flush, StoreError};
use crate::telemetry::metrics::{STORE_FLUSH_BATCH, STORE_FLUSH_DURATION};

type FlushWaiter = oneshot::Sender<Result<(), Arc<sled::Error>>>;

/// The sled-backed store of runs, events, plugins and workflows.
pub struct SledStore {
    runs: sled::Tree,
    journal: sled::Tree,
    inbox: sled::Tree,
    by_status: sled::Tree,
    by_workflow_status: sled::Tree,
    by_ended: sled::Tree,
    by_field: sled::Tree,
    idempotency: sled::Tree,
    outbox: sled::Tree,
    queue: sled::Tree,
    dead_letters: sled::Tree,
    components: sled::Tree,
    plugin_versions: sled::Tree,
    plugin_heads: sled::Tree,
    workflow_versions: sled::Tree,
    workflow_heads: sled::Tree,
    schedules: sled::Tree,
    meta: sled::Tree,
    /// Held while a run is created or discarded, so that the look-ups and writes of one
    /// creation are not interleaved with another's (one id or key, one run). A std `Mutex`:
    /// the section is a few in-memory sled operations, never an `.await`.
    creation: Mutex<()>,
    /// Requests to the group-commit thread; `None` once the store is dropped.
    flushes: Option<mpsc::UnboundedSender<FlushWaiter>>,
    /// The group-commit thread, joined on drop so that the database is closed when the
    /// store is gone.
    committer: Option<JoinHandle<()>>,
}

impl SledStore {
    /// Opens (or creates) the store in `dir`, and starts its group-commit thread, which
    /// ends when the store is dropped.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .open()
            .map_err(io("open the database"))?;
        let tree = |name: &str| db.open_tree(name).map_err(io("open a tree"));
        let (flushes, requests) = mpsc::unbounded_channel();
        let mut store = Self {
            runs: tree("runs")?,
            journal: tree("journal")?,
            inbox: tree("inbox")?,
            by_status: tree("by_status")?,
            by_workflow_status: tree("by_workflow_status")?,
            by_ended: tree("by_ended")?,
            by_field: tree("by_field")?,
            idempotency: tree("idempotency")?,
            outbox: tree("outbox")?,
            queue: tree("queue")?,
            dead_letters: tree("dead_letters")?,
            components: tree("components")?,
            plugin_versions: tree("plugin_versions")?,
            plugin_heads: tree("plugin_heads")?,
            workflow_versions: tree("workflow_versions")?,
            workflow_heads: tree("workflow_heads")?,
            schedules: tree("schedules")?,
            meta: tree("meta")?,
            creation: Mutex::new(()),
            flushes: Some(flushes),
            committer: None,
        };
        store.migrate(&db)?;
        store.committer = Some(
            std::thread::Builder::new()
                .name("flowhost-commit".into())
                .spawn(move || group_commit(db, requests))
                .map_err(|e| StoreError::unavailable("start the commit thread", e))?,
        );
        Ok(store)
    }
}

/// The layout this release writes: see the table above.
const SCHEMA: u32 = 3;

impl SledStore {
    /// Brings a database written by an older release up to [`SCHEMA`]; durable with the
    /// next flush, and repeated after a crash before it (every step is idempotent).
    fn migrate(&self, db: &sled::Db) -> Result<(), StoreError> {
        let schema = self
            .meta
            .get("schema")
            .map_err(io("read the schema"))?
            .and_then(|v| v.as_ref().try_into().ok().map(u32::from_be_bytes));
        if schema.is_some_and(|s| s >= SCHEMA) {
            return Ok(());
        }
        let migrated = self.index_old_runs()?;
        if migrated > 0 {
            tracing::info!(runs = migrated, "indexed the runs of an older release");
        }
        // Listings merge the status indexes now: the older ones go.
        for old in ["by_created", "by_workflow"] {
            db.drop_tree(old).map_err(io("drop an old index"))?;
        }
        self.meta
            .insert("schema", &SCHEMA.to_be_bytes())
            .map_err(io("write the schema"))?;
        Ok(())
    }
}

impl Flush for SledStore {
    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let stopped = || StoreError::unavailable("flush", "the commit thread stopped");
            let (tx, rx) = oneshot::channel();
            self.flushes
                .as_ref()
                .ok_or_else(stopped)?
                .send(tx)
                .map_err(|_| stopped())?;
            rx.await
                .map_err(|_| stopped())?
                .map_err(|e| StoreError::unavailable("flush", e))
        })
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        self.flushes = None;
        if let Some(committer) = self.committer.take() {
            let _ = committer.join();
        }
    }
}

/// Flushes sled once for every waiter queued when the previous flush ended. A thread of its
/// own, calling sled's blocking flush: `flush_async` would hand each flush to sled's thread
/// pool and back, two more thread wake-ups per flush on the hot path.
fn group_commit(db: sled::Db, mut requests: mpsc::UnboundedReceiver<FlushWaiter>) {
    while let Some(first) = requests.blocking_recv() {
        let mut waiters = vec![first];
        while let Ok(more) = requests.try_recv() {
            waiters.push(more);
        }
        let started = std::time::Instant::now();
        let result = db.flush().map(drop).map_err(Arc::new);
        metrics::histogram!(STORE_FLUSH_DURATION).record(started.elapsed());
        metrics::histogram!(STORE_FLUSH_BATCH).record(waiters.len() as f64);
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
    }
}

/// Maps a sled error to [`StoreError::Unavailable`] for `op`.
fn io(op: &'static str) -> impl Fn(sled::Error) -> StoreError {
    move |e| StoreError::unavailable(op, e)
}

/// The smallest key above every key starting with `prefix`; empty means "no bound".
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    Vec::new()
}

/// `prefix` followed by a `0` separator.
fn name_prefix(name: &str) -> Vec<u8> {
    let mut key = name.as_bytes().to_vec();
    key.push(0);
    key
}

/// Every version stored in `tree` under `name` (keys `name, 0, digest`), oldest
/// registration first: the plugin and workflow registries' listing.
fn versions_of<T: serde::de::DeserializeOwned>(
    tree: &sled::Tree,
    name: &str,
    registered_ms: impl Fn(&T) -> u64,
) -> Result<Vec<T>, StoreError> {
    let prefix = name_prefix(name);
    let mut versions = tree
        .range(prefix.clone()..prefix_end(&prefix))
        .map(|item| {
            let (key, value) = item.map_err(io("read versions"))?;
            decode::<T>(&key, &value)
        })
        .collect::<Result<Vec<_>, _>>()?;
    versions.sort_by_key(|v| registered_ms(v));
    Ok(versions)
}

/// `value` as JSON.
fn encode(value: &impl serde::Serialize) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::unavailable("encode a record", e))
}

/// `value` decoded as JSON, or [`StoreError::Corrupt`] naming `key`.
fn decode<T: serde::de::DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        cause: e.into(),
    })
}

#[cfg(test)]
pub(crate) mod testing {
    use super::SledStore;

    /// A store in a fresh directory, and the directory (kept alive with it).
    pub fn store() -> (SledStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (SledStore::open(dir.path()).unwrap(), dir)
    }
}
