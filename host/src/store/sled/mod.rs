//! The embedded store on sled: one database for runs, events and plugin versions, one tree
//! per keyspace.
//!
//! | tree | key | value |
//! | --- | --- | --- |
//! | `runs` | run id | the [`Run`](super::Run), JSON |
//! | `journal` | run id, `0`, sequence (u32 BE) | a [`JournalEntry`](super::JournalEntry), JSON |
//! | `by_created` | created ms (u64 BE), run id | empty |
//! | `by_status` | status index (u8), created ms, run id | empty |
//! | `by_workflow` | workflow, `0`, created ms, run id | empty |
//! | `idempotency` | workflow, `0`, client key | run id |
//! | `outbox` | event id (a ULID: time-ordered) | an [`OutboxEntry`](super::events::OutboxEntry), JSON |
//! | `queue` | subscription, `0`, due ms (u64 BE), event id | a [`Delivery`](super::events::Delivery), JSON |
//! | `dead_letters` | dead letter id (a ULID) | a [`DeadLetter`](super::events::DeadLetter), JSON |
//! | `components` | SHA-256, hex | a plugin component's bytes |
//! | `plugin_versions` | plugin name, `0`, digest | a [`PluginVersion`](super::plugins::PluginVersion), JSON |
//! | `plugin_heads` | plugin name | a [`PluginHead`](super::plugins::PluginHead), JSON |
//!
//! No sled transactions (see `runs.rs`): writes are ordered so that a crash can leave an
//! extra index entry but never lose one, and readers check the record. sled keeps one log
//! for all trees, so a crash keeps a prefix of the writes: an outbox entry written after a
//! journal entry is never durable without it. Durability comes from `flush`: one committer
//! thread flushes sled for every caller waiting at that moment (group commit).

mod events;
mod plugins;
mod runs;

use std::path::Path;

use tokio::sync::{mpsc, oneshot};

use super::{BoxFuture, StoreError};

type FlushWaiter = oneshot::Sender<Result<(), String>>;

/// The sled-backed store of runs and events.
pub struct SledStore {
    runs: sled::Tree,
    journal: sled::Tree,
    by_created: sled::Tree,
    by_status: sled::Tree,
    by_workflow: sled::Tree,
    idempotency: sled::Tree,
    outbox: sled::Tree,
    queue: sled::Tree,
    dead_letters: sled::Tree,
    components: sled::Tree,
    plugin_versions: sled::Tree,
    plugin_heads: sled::Tree,
    /// Requests to the group-commit thread.
    flushes: mpsc::UnboundedSender<FlushWaiter>,
}

impl SledStore {
    /// Opens (or creates) the store in `dir`, and starts its group-commit thread, which
    /// ends when the store is dropped.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new().path(dir).open().map_err(backend)?;
        let tree = |name: &str| db.open_tree(name).map_err(backend);
        let (flushes, requests) = mpsc::unbounded_channel();
        let store = Self {
            runs: tree("runs")?,
            journal: tree("journal")?,
            by_created: tree("by_created")?,
            by_status: tree("by_status")?,
            by_workflow: tree("by_workflow")?,
            idempotency: tree("idempotency")?,
            outbox: tree("outbox")?,
            queue: tree("queue")?,
            dead_letters: tree("dead_letters")?,
            components: tree("components")?,
            plugin_versions: tree("plugin_versions")?,
            plugin_heads: tree("plugin_heads")?,
            flushes,
        };
        std::thread::Builder::new()
            .name("flowhost-commit".into())
            .spawn(move || group_commit(db, requests))
            .map_err(backend)?;
        Ok(store)
    }

    /// Makes every write that happened before this call durable; concurrent calls share
    /// one flush.
    fn flush_shared(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            self.flushes
                .send(tx)
                .map_err(|_| backend("the committer stopped"))?;
            rx.await
                .map_err(|_| backend("the committer stopped"))?
                .map_err(StoreError::Backend)
        })
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
        let result = db.flush().map(drop).map_err(|e| e.to_string());
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
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

/// `value` decoded as JSON, or [`StoreError::Corrupt`] naming `key`.
fn decode<T: serde::de::DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}
