//! [`RunStore`] on [`SledStore`]: run records, their journals and indexes.

use super::{SledStore, backend, decode, prefix_end};
use crate::store::{
    BoxFuture, Created, JournalEntry, ListQuery, Page, RUN_FORMAT, Run, RunStatus, RunStore,
    StoreError,
};

impl SledStore {
    fn decode_run(&self, key: &[u8], bytes: &[u8]) -> Result<Run, StoreError> {
        let run: Run = decode(key, bytes)?;
        if run.format != RUN_FORMAT {
            return Err(StoreError::Corrupt {
                key: String::from_utf8_lossy(key).into_owned(),
                reason: format!(
                    "format {} (this release reads format {RUN_FORMAT})",
                    run.format
                ),
            });
        }
        Ok(run)
    }
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

pub(super) fn journal_key(run_id: &str, seq: u32) -> Vec<u8> {
    let mut key = journal_prefix(run_id);
    key.extend(seq.to_be_bytes());
    key
}

impl RunStore for SledStore {
    fn create(&self, run: &Run) -> Result<Created, StoreError> {
        // Claim the idempotency key first, then the id, each with a compare-and-swap. A key
        // left pointing at no run (a crash between the two) is taken over.
        if let Some(client_key) = &run.idempotency_key {
            let key = idempotency_key(&run.workflow, client_key);
            let mut expected: Option<sled::IVec> = None;
            loop {
                match self
                    .idempotency
                    .compare_and_swap(&key, expected.clone(), Some(run.id.as_bytes()))
                    .map_err(backend)?
                {
                    Ok(()) => break,
                    Err(conflict) => {
                        let owner = conflict
                            .current
                            .expect("a failed swap from a value has one");
                        if let Some(existing) = self.get(&String::from_utf8_lossy(&owner))? {
                            return Ok(Created::Existing(Box::new(existing)));
                        }
                        expected = Some(owner);
                    }
                }
            }
        }
        let record = serde_json::to_vec(run).map_err(backend)?;
        if let Err(conflict) = self
            .runs
            .compare_and_swap(run.id.as_bytes(), None as Option<&[u8]>, Some(record))
            .map_err(backend)?
        {
            let current = conflict
                .current
                .expect("a failed swap from nothing has a value");
            return Ok(Created::Existing(Box::new(
                self.decode_run(run.id.as_bytes(), &current)?,
            )));
        }
        self.by_created
            .insert(created_key(run), &[])
            .map_err(backend)?;
        self.by_workflow
            .insert(workflow_key(run), &[])
            .map_err(backend)?;
        self.by_status
            .insert(status_key(run.status, run), &[])
            .map_err(backend)?;
        Ok(Created::New)
    }

    fn save(&self, run: &Run, previous: RunStatus) -> Result<(), StoreError> {
        // No transaction: sled's first transaction puts every later operation behind one
        // process-wide lock, which a flush holds for its whole write and sync. Instead the
        // new index entry goes in before the record and the old one out after it, so a crash
        // between leaves an extra entry, never a missing one; readers check the record.
        if previous != run.status {
            self.by_status
                .insert(status_key(run.status, run), &[])
                .map_err(backend)?;
        }
        let record = serde_json::to_vec(run).map_err(backend)?;
        self.runs
            .insert(run.id.as_bytes(), record)
            .map_err(backend)?;
        if previous != run.status {
            self.by_status
                .remove(status_key(previous, run))
                .map_err(backend)?;
        }
        Ok(())
    }

    fn get(&self, id: &str) -> Result<Option<Run>, StoreError> {
        let Some(bytes) = self.runs.get(id.as_bytes()).map_err(backend)? else {
            return Ok(None);
        };
        let mut run = self.decode_run(id.as_bytes(), &bytes)?;
        // The entries written since the record: usually none once a run has finished.
        let since = journal_key(id, run.journaled);
        for item in self.journal.range(since..prefix_end(&journal_prefix(id))) {
            let (key, value) = item.map_err(backend)?;
            run.apply(&decode::<JournalEntry>(&key, &value)?);
        }
        Ok(Some(run))
    }

    fn append_journal(
        &self,
        run_id: &str,
        seq: u32,
        entry: &JournalEntry,
    ) -> Result<(), StoreError> {
        let value = serde_json::to_vec(entry).map_err(backend)?;
        self.journal
            .insert(journal_key(run_id, seq), value)
            .map_err(backend)?;
        Ok(())
    }

    fn journal(&self, run_id: &str) -> Result<Vec<JournalEntry>, StoreError> {
        self.journal
            .scan_prefix(journal_prefix(run_id))
            .map(|item| {
                let (key, value) = item.map_err(backend)?;
                decode::<JournalEntry>(&key, &value)
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
            let stale = query.status.is_some_and(|status| status != run.status);
            if stale || query.workflow.as_ref().is_some_and(|w| *w != run.workflow) {
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
                // An index entry a crash left behind may be stale: the record decides.
                if let Some(run) = self.get(&String::from_utf8_lossy(id))?
                    && run.status == status
                {
                    runs.push(run);
                }
            }
        }
        Ok(runs)
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.flush_shared()
    }
}

/// The run id at the end of an index key whose prefix is `prefix_len` bytes long, after
/// the 8-byte creation time.
fn run_id_of(key: &[u8], prefix_len: usize) -> Option<&[u8]> {
    key.get(prefix_len + 8..)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Direction, Outcome, StepState, StepStatus};

    fn run(id: &str, created_ms: u64, key: Option<&str>) -> Run {
        Run {
            format: RUN_FORMAT,
            id: id.into(),
            workflow: "w".into(),
            status: RunStatus::Pending,
            input: serde_json::Map::new(),
            steps: vec![StepState::pending("s")],
            error: None,
            plugins: Default::default(),
            idempotency_key: key.map(Into::into),
            created_ms,
            updated_ms: created_ms,
            ended_ms: None,
            journaled: 0,
        }
    }

    fn ids(page: &Page) -> Vec<&str> {
        page.runs.iter().map(|r| r.id.as_str()).collect()
    }

    #[tokio::test]
    async fn creates_once_per_id_and_per_idempotency_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        assert!(matches!(
            store.create(&run("a", 1, Some("k"))).unwrap(),
            Created::New
        ));
        let Created::Existing(same_key) = store.create(&run("b", 2, Some("k"))).unwrap() else {
            panic!()
        };
        assert_eq!(same_key.id, "a");
        let Created::Existing(same_id) = store.create(&run("a", 3, None)).unwrap() else {
            panic!()
        };
        assert_eq!(same_id.created_ms, 1);
        assert!(
            store.get("b").unwrap().is_none(),
            "nothing of the repeat was stored"
        );
    }

    #[tokio::test]
    async fn status_index_follows_saves_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            for (id, at) in [("a", 1), ("b", 2), ("c", 3)] {
                store.create(&run(id, at, None)).unwrap();
            }
            let mut b = store.get("b").unwrap().unwrap();
            b.status = RunStatus::Completed;
            store.save(&b, RunStatus::Pending).unwrap();
            store.flush().await.unwrap();
        }
        // The committer task holds the database until it sees the store gone.
        let mut reopened = None;
        for _ in 0..100 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            reopened = SledStore::open(dir.path()).ok();
            if reopened.is_some() {
                break;
            }
        }
        let store = reopened.expect("the store reopens once the committer has let go");
        let all = store
            .list(&ListQuery {
                limit: 2,
                ..ListQuery::default()
            })
            .unwrap();
        assert_eq!(ids(&all), ["c", "b"]);
        let rest = store
            .list(&ListQuery {
                limit: 2,
                cursor: all.next_cursor.clone(),
                ..ListQuery::default()
            })
            .unwrap();
        assert_eq!(ids(&rest), ["a"]);
        assert_eq!(rest.next_cursor, None);
        let done = store
            .list(&ListQuery {
                status: Some(RunStatus::Completed),
                limit: 10,
                ..ListQuery::default()
            })
            .unwrap();
        assert_eq!(ids(&done), ["b"]);
        let mut unfinished: Vec<String> = store
            .unfinished()
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        unfinished.sort();
        assert_eq!(unfinished, ["a", "c"]);
    }

    fn entry(direction: Direction, attempt: u32, outcome: Outcome) -> JournalEntry {
        JournalEntry {
            step: "s".into(),
            direction,
            attempt,
            started_ms: 10,
            ended_ms: 20,
            outcome,
            error: (outcome != Outcome::Ok).then(|| "busy".into()),
            output: (outcome == Outcome::Ok && direction == Direction::Execute)
                .then(|| serde_json::json!({"x": 1}).as_object().unwrap().clone()),
        }
    }

    #[tokio::test]
    async fn get_applies_the_journal_written_since_the_record_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store.create(&run("a", 1, None)).unwrap();
        store
            .append_journal("a", 0, &entry(Direction::Execute, 1, Outcome::Retryable))
            .unwrap();
        let after_retry = store.get("a").unwrap().unwrap();
        assert_eq!(after_retry.steps[0].status, StepStatus::Running);
        assert_eq!(after_retry.steps[0].error.as_deref(), Some("busy"));
        store
            .append_journal("a", 1, &entry(Direction::Execute, 2, Outcome::Ok))
            .unwrap();
        let mut run = store.get("a").unwrap().unwrap();
        assert_eq!(run.journaled, 2);
        assert_eq!(run.steps[0].status, StepStatus::Completed);
        assert_eq!(run.steps[0].attempts, 2);
        assert_eq!(run.steps[0].error, None);
        assert_eq!(run.context()["x"], 1);

        // A record saved with its entries applied is not folded again.
        run.status = RunStatus::Compensating;
        store.save(&run, RunStatus::Pending).unwrap();
        store
            .append_journal("a", 2, &entry(Direction::Compensate, 1, Outcome::Ok))
            .unwrap();
        let run = store.get("a").unwrap().unwrap();
        assert_eq!(run.journaled, 3);
        assert_eq!(run.steps[0].status, StepStatus::Compensated);
        assert_eq!(
            (run.steps[0].attempts, run.steps[0].compensation_attempts),
            (2, 1)
        );
        assert_eq!(store.journal("a").unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_record_of_another_format_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let mut old = run("a", 1, None);
        old.format = 1;
        store
            .runs
            .insert("a", serde_json::to_vec(&old).unwrap())
            .unwrap();
        let error = store.get("a").unwrap_err().to_string();
        assert!(
            error.contains("`a`") && error.contains("format 1"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_stale_index_entry_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let mut a = run("a", 1, None);
        store.create(&a).unwrap();
        // As if a crash hit between writing the record and removing the old entry.
        a.status = RunStatus::Completed;
        store
            .by_status
            .insert(status_key(RunStatus::Completed, &a), &[])
            .unwrap();
        store
            .runs
            .insert("a", serde_json::to_vec(&a).unwrap())
            .unwrap();
        assert!(
            store.unfinished().unwrap().is_empty(),
            "the pending entry is stale"
        );
        let pending = store
            .list(&ListQuery {
                status: Some(RunStatus::Pending),
                limit: 10,
                ..ListQuery::default()
            })
            .unwrap();
        assert!(pending.runs.is_empty());
    }
}
