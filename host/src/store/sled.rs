//! The embedded [`RunStore`] on sled: one tree per keyspace.
//!
//! | tree | key | value |
//! | --- | --- | --- |
//! | `runs` | run id | the [`Run`], JSON |
//! | `journal` | run id, `0`, sequence (u64 BE) | a [`JournalEntry`], JSON |
//! | `by_created` | created ms (u64 BE), run id | empty |
//! | `by_status` | status index (u8), created ms, run id | empty |
//! | `by_workflow` | workflow, `0`, created ms, run id | empty |
//! | `idempotency` | workflow, `0`, client key | run id |
//!
//! A run's record and its index entries change in one transaction. Durability comes from
//! [`RunStore::flush`]: one committer task flushes sled for every caller waiting at that
//! moment (group commit).

use std::path::Path;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use tokio::sync::{mpsc, oneshot};

use super::{
    BoxFuture, Created, JournalEntry, ListQuery, Page, Run, RunStatus, RunStore, StoreError,
};

type FlushWaiter = oneshot::Sender<Result<(), String>>;

/// The sled-backed run store.
pub struct SledStore {
    db: sled::Db,
    runs: sled::Tree,
    journal: sled::Tree,
    by_created: sled::Tree,
    by_status: sled::Tree,
    by_workflow: sled::Tree,
    idempotency: sled::Tree,
    /// Requests to the group-commit task.
    flushes: mpsc::UnboundedSender<FlushWaiter>,
}

impl SledStore {
    /// Opens (or creates) the store in `dir`. Must be called within a tokio runtime: it
    /// starts the group-commit task.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new().path(dir).open().map_err(backend)?;
        let tree = |name: &str| db.open_tree(name).map_err(backend);
        let (flushes, requests) = mpsc::unbounded_channel();
        tokio::spawn(group_commit(db.clone(), requests));
        Ok(Self {
            runs: tree("runs")?,
            journal: tree("journal")?,
            by_created: tree("by_created")?,
            by_status: tree("by_status")?,
            by_workflow: tree("by_workflow")?,
            idempotency: tree("idempotency")?,
            db,
            flushes,
        })
    }

    fn decode(&self, key: &[u8], bytes: &[u8]) -> Result<Run, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: e.to_string(),
        })
    }
}

/// Flushes sled once for every waiter queued when the previous flush ended.
async fn group_commit(db: sled::Db, mut requests: mpsc::UnboundedReceiver<FlushWaiter>) {
    while let Some(first) = requests.recv().await {
        let mut waiters = vec![first];
        while let Ok(more) = requests.try_recv() {
            waiters.push(more);
        }
        let result = db.flush_async().await.map(drop).map_err(|e| e.to_string());
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn status_byte(status: RunStatus) -> u8 {
    RunStatus::ALL
        .iter()
        .position(|s| *s == status)
        .unwrap_or(0) as u8
}

fn created_key(run: &Run) -> Vec<u8> {
    let mut key = run.created_ms.to_be_bytes().to_vec();
    key.extend_from_slice(run.id.as_bytes());
    key
}

fn status_key(status: RunStatus, run: &Run) -> Vec<u8> {
    let mut key = vec![status_byte(status)];
    key.extend(created_key(run));
    key
}

fn workflow_prefix(workflow: &str) -> Vec<u8> {
    let mut key = workflow.as_bytes().to_vec();
    key.push(0);
    key
}

fn workflow_key(run: &Run) -> Vec<u8> {
    let mut key = workflow_prefix(&run.workflow);
    key.extend(created_key(run));
    key
}

fn idempotency_key(workflow: &str, client_key: &str) -> Vec<u8> {
    let mut key = workflow_prefix(workflow);
    key.extend_from_slice(client_key.as_bytes());
    key
}

fn journal_prefix(run_id: &str) -> Vec<u8> {
    let mut key = run_id.as_bytes().to_vec();
    key.push(0);
    key
}

/// Turns a transaction error carrying our error back into it.
fn untx(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => backend(e),
    }
}

impl RunStore for SledStore {
    fn create(&self, run: &Run) -> Result<Created, StoreError> {
        let record = serde_json::to_vec(run).map_err(backend)?;
        let idem = run
            .idempotency_key
            .as_deref()
            .map(|k| idempotency_key(&run.workflow, k));
        (
            &self.runs,
            &self.by_created,
            &self.by_status,
            &self.by_workflow,
            &self.idempotency,
        )
            .transaction(|(runs, by_created, by_status, by_workflow, idempotency)| {
                let existing_id = match &idem {
                    Some(key) if runs.get(run.id.as_bytes())?.is_none() => {
                        idempotency.get(key)?.map(|id| id.to_vec())
                    }
                    _ => Some(run.id.as_bytes().to_vec()),
                };
                if let Some(id) = existing_id
                    && let Some(bytes) = runs.get(&id)?
                {
                    let existing = self
                        .decode(&id, &bytes)
                        .map_err(ConflictableTransactionError::Abort)?;
                    return Ok(Created::Existing(Box::new(existing)));
                }
                runs.insert(run.id.as_bytes(), record.as_slice())?;
                by_created.insert(created_key(run), &[])?;
                by_status.insert(status_key(run.status, run), &[])?;
                by_workflow.insert(workflow_key(run), &[])?;
                if let Some(key) = &idem {
                    idempotency.insert(key.as_slice(), run.id.as_bytes())?;
                }
                Ok(Created::New)
            })
            .map_err(untx)
    }

    fn save(&self, run: &Run) -> Result<(), StoreError> {
        let record = serde_json::to_vec(run).map_err(backend)?;
        (&self.runs, &self.by_status)
            .transaction(|(runs, by_status)| {
                if let Some(old) = runs.insert(run.id.as_bytes(), record.as_slice())? {
                    let old = self
                        .decode(run.id.as_bytes(), &old)
                        .map_err(ConflictableTransactionError::Abort)?;
                    if old.status != run.status {
                        by_status.remove(status_key(old.status, run))?;
                    }
                }
                by_status.insert(status_key(run.status, run), &[])?;
                Ok(())
            })
            .map_err(untx)
    }

    fn get(&self, id: &str) -> Result<Option<Run>, StoreError> {
        match self.runs.get(id.as_bytes()).map_err(backend)? {
            Some(bytes) => self.decode(id.as_bytes(), &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn append_journal(&self, run_id: &str, entry: &JournalEntry) -> Result<(), StoreError> {
        let mut key = journal_prefix(run_id);
        key.extend(self.db.generate_id().map_err(backend)?.to_be_bytes());
        let value = serde_json::to_vec(entry).map_err(backend)?;
        self.journal.insert(key, value).map_err(backend)?;
        Ok(())
    }

    fn journal(&self, run_id: &str) -> Result<Vec<JournalEntry>, StoreError> {
        self.journal
            .scan_prefix(journal_prefix(run_id))
            .map(|item| {
                let (key, value) = item.map_err(backend)?;
                serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        // The most selective index: status, else workflow, else creation time. Its keys end
        // with `created ms, run id`, so walking it backwards is newest first.
        let (index, prefix) = match (&query.status, &query.workflow) {
            (Some(status), _) => (&self.by_status, vec![status_byte(*status)]),
            (None, Some(workflow)) => (&self.by_workflow, workflow_prefix(workflow)),
            (None, None) => (&self.by_created, Vec::new()),
        };
        let upper = match &query.cursor {
            Some(cursor) => {
                let key = hex::decode(cursor).map_err(|_| StoreError::InvalidCursor)?;
                if !key.starts_with(&prefix) {
                    return Err(StoreError::InvalidCursor);
                }
                key
            }
            None => prefix_end(&prefix),
        };
        let range = if upper.is_empty() {
            index.range(prefix.clone()..)
        } else {
            index.range(prefix.clone()..upper)
        };
        let mut page = Page::default();
        let mut more = false;
        for item in range.rev() {
            let (key, _) = item.map_err(backend)?;
            let Some(id) = run_id_of(&key, prefix.len()) else {
                continue;
            };
            let Some(run) = self.get(&String::from_utf8_lossy(id))? else {
                continue;
            };
            if query.workflow.as_ref().is_some_and(|w| *w != run.workflow) {
                continue;
            }
            if page.runs.len() == query.limit {
                more = true;
                break;
            }
            page.runs.push(run);
            page.next_cursor = Some(hex::encode(&key));
        }
        if !more {
            page.next_cursor = None;
        }
        Ok(page)
    }

    fn unfinished(&self) -> Result<Vec<Run>, StoreError> {
        let mut runs = Vec::new();
        for status in [
            RunStatus::Pending,
            RunStatus::Running,
            RunStatus::Compensating,
        ] {
            for item in self.by_status.scan_prefix([status_byte(status)]) {
                let (key, _) = item.map_err(backend)?;
                let id = run_id_of(&key, 1).unwrap_or_default();
                if let Some(run) = self.get(&String::from_utf8_lossy(id))? {
                    runs.push(run);
                }
            }
        }
        Ok(runs)
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
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

/// The run id at the end of an index key whose prefix is `prefix_len` bytes long, after
/// the 8-byte creation time.
fn run_id_of(key: &[u8], prefix_len: usize) -> Option<&[u8]> {
    key.get(prefix_len + 8..)
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
