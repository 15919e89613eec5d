//! [`RunStore`] on [`SledStore`]: run records, their journals and indexes.
//!
//! A run's record in `runs` is the commit point of everything about it: index entries and
//! the idempotency key are written before it and removed after it, so that a crash in
//! between leaves entries without a record, which readers ignore (every reader checks the
//! record), and never a record that an index misses.
//!
//! Pins need no index of their own: the runs that pin versions are the ones in a status a
//! run can still call a plugin from (pending, running, compensating, compensation_failed),
//! which the status index lists, and each record says what it pins. Counting them reads
//! those runs' records, never the others'.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{SledStore, decode, encode, io, name_prefix, prefix_end};
use crate::model::{JournalEntry, Message, OutboxEntry, RUN_FORMAT, Run, RunId, RunStatus};
use crate::store::runs::check_format;
use crate::store::{Claim, Created, EventStore, ListQuery, Page, PinKind, RunStore, StoreError};

/// What saves and gates need of a record, read without the rest of it (serde skips the
/// other fields without building them).
#[derive(serde::Deserialize)]
pub(super) struct RecordHead {
    format: u32,
    status: RunStatus,
    #[serde(default)]
    pub(super) revision: u32,
    #[serde(default)]
    closed: bool,
}

/// What a pin count needs of a record.
#[derive(serde::Deserialize)]
struct RecordPins {
    status: RunStatus,
    workflow: String,
    #[serde(default)]
    workflow_version: Option<String>,
    plugins: BTreeMap<String, String>,
    #[serde(default)]
    closed: bool,
}

/// The statuses from which a run may still call a plugin: the runs that pin versions.
const PINNING: [RunStatus; 4] = [
    RunStatus::Pending,
    RunStatus::Running,
    RunStatus::Compensating,
    RunStatus::CompensationFailed,
];

impl SledStore {
    /// The head of a record, with the record's bytes.
    pub(super) fn record_head(
        &self,
        id: &[u8],
    ) -> Result<Option<(sled::IVec, RecordHead)>, StoreError> {
        let Some(bytes) = self.runs.get(id).map_err(io("read a run"))? else {
            return Ok(None);
        };
        let head: RecordHead = decode(id, &bytes)?;
        check_format(id, head.format)?;
        Ok(Some((bytes, head)))
    }

    /// Gives every run the entries a schema-2 database lacks (the workflow-and-status
    /// index, and the ended index with the closed mark for the runs that are done); how
    /// many runs there were.
    pub(super) fn index_old_runs(&self) -> Result<usize, StoreError> {
        let write = io("index old runs");
        let mut count = 0;
        for item in self.runs.iter() {
            let (key, _) = item.map_err(&write)?;
            let Some((_, run)) = self.record(&key)? else {
                continue;
            };
            count += 1;
            self.by_workflow_status
                .insert(workflow_status_key(run.status, &run), &[])
                .map_err(&write)?;
            // A run that may still call a plugin keeps its versions; the others are done.
            if run.status.is_terminal() && run.status != RunStatus::CompensationFailed {
                self.by_ended
                    .insert(ended_key(ended_ms(&run), &run.id), &[])
                    .map_err(&write)?;
                let closed = Run {
                    closed: true,
                    ..run
                };
                self.runs
                    .insert(&closed.id, encode(&closed)?)
                    .map_err(&write)?;
            }
        }
        Ok(count)
    }

    /// The record alone, without the journal folded in.
    fn record(&self, id: &[u8]) -> Result<Option<(sled::IVec, Run)>, StoreError> {
        let Some(bytes) = self.runs.get(id).map_err(io("read a run"))? else {
            return Ok(None);
        };
        let mut run: Run = decode(id, &bytes)?;
        check_format(id, run.format)?;
        run.format = RUN_FORMAT;
        Ok(Some((bytes, run)))
    }

    /// [`RunStore::find`]: the run with `run`'s id, or with its idempotency key.
    fn find_run(&self, run: &Run) -> Result<Option<Run>, StoreError> {
        if let Some(existing) = self.read_run(&run.id)? {
            return Ok(Some(existing));
        }
        let Some(client_key) = &run.idempotency_key else {
            return Ok(None);
        };
        let key = idempotency_key(&run.workflow, client_key);
        match self.idempotency.get(key).map_err(io("read a key"))? {
            Some(owner) => self.read_run(&RunId::from_stored(
                String::from_utf8_lossy(&owner).into_owned(),
            )),
            None => Ok(None),
        }
    }

    /// [`RunStore::get`]: the record with the journal entries written since it applied.
    /// The ids of the runs pending, running or compensating.
    pub(super) fn unfinished(&self) -> Result<Vec<RunId>, StoreError> {
        let mut ids = Vec::new();
        for status in [
            RunStatus::Pending,
            RunStatus::Running,
            RunStatus::Compensating,
        ] {
            for item in self.by_status.scan_prefix([status.index_byte()]).keys() {
                let key = item.map_err(io("list unfinished runs"))?;
                if let Some((_, id)) = split_index_key(&key, 1) {
                    ids.push(id);
                }
            }
        }
        Ok(ids)
    }

    fn read_run(&self, id: &RunId) -> Result<Option<Run>, StoreError> {
        let Some((_, mut run)) = self.record(id.as_bytes())? else {
            return Ok(None);
        };
        // The entries written since the record: usually none once a run has finished.
        let since = journal_key(id, run.journaled);
        for item in self.journal.range(since..prefix_end(&journal_prefix(id))) {
            let (key, value) = item.map_err(io("read a journal"))?;
            run.apply(&decode::<JournalEntry>(&key, &value)?);
        }
        Ok(Some(run))
    }

    /// Every index entry of `run` in `status`, with the tree it goes in.
    fn index_entries(&self, run: &Run, status: RunStatus) -> [(&sled::Tree, Vec<u8>); 2] {
        [
            (&self.by_status, status_key(status, run)),
            (&self.by_workflow_status, workflow_status_key(status, run)),
        ]
    }
}

/// A record of a format this release reads, or [`StoreError::Corrupt`].
fn created_key(run: &Run) -> Vec<u8> {
    let mut key = run.created_ms.to_be_bytes().to_vec();
    key.extend_from_slice(run.id.as_bytes());
    key
}

fn status_key(status: RunStatus, run: &Run) -> Vec<u8> {
    let mut key = vec![status.index_byte()];
    key.extend(created_key(run));
    key
}

fn workflow_status_key(status: RunStatus, run: &Run) -> Vec<u8> {
    let mut key = name_prefix(&run.workflow);
    key.push(status.index_byte());
    key.extend(created_key(run));
    key
}

/// The prefix of the `by_field` entries of `field` = `value`.
fn field_prefix(field: &str, value: &str) -> Vec<u8> {
    let mut key = name_prefix(field);
    key.extend(name_prefix(value));
    key
}

/// `run`'s `by_field` entries: one per search field it has a value for.
fn field_keys(run: &Run) -> impl Iterator<Item = Vec<u8>> + '_ {
    run.search.iter().map(|(field, value)| {
        let mut key = field_prefix(field, value);
        key.extend(created_key(run));
        key
    })
}

fn idempotency_key(workflow: &str, client_key: &str) -> Vec<u8> {
    let mut key = name_prefix(workflow);
    key.extend_from_slice(client_key.as_bytes());
    key
}

/// When a closed run ended, for the ended index.
fn ended_ms(run: &Run) -> u64 {
    run.ended_ms.unwrap_or(run.updated_ms)
}

fn ended_key(ended_ms: u64, id: &RunId) -> Vec<u8> {
    let mut key = ended_ms.to_be_bytes().to_vec();
    key.extend_from_slice(id.as_bytes());
    key
}

fn journal_prefix(run_id: &RunId) -> Vec<u8> {
    name_prefix(run_id)
}

pub(super) fn journal_key(run_id: &RunId, seq: u32) -> Vec<u8> {
    let mut key = journal_prefix(run_id);
    key.extend(seq.to_be_bytes());
    key
}

/// The run id at the end of an index key whose prefix is `prefix_len` bytes long, after
/// the 8-byte creation time, and that time.
fn split_index_key(key: &[u8], prefix_len: usize) -> Option<(u64, RunId)> {
    let created = key.get(prefix_len..prefix_len + 8)?.try_into().ok()?;
    let id = key.get(prefix_len + 8..)?;
    Some((
        u64::from_be_bytes(created),
        RunId::from_stored(String::from_utf8_lossy(id).into_owned()),
    ))
}

#[async_trait]
impl RunStore for SledStore {
    async fn create(&self, run: &Run) -> Result<Created, StoreError> {
        let _creating = self.creation.lock().expect("creation lock");
        if let Some(existing) = self.find_run(run)? {
            return Ok(Created::Existing(Box::new(existing)));
        }
        let write = io("create a run");
        if let Some(client_key) = &run.idempotency_key {
            // Free, or naming a run that was never written (a crash between the two) or was
            // discarded: `find` found none. Creation holds the lock, so no one else is
            // writing that run now.
            self.idempotency
                .insert(
                    idempotency_key(&run.workflow, client_key),
                    run.id.as_bytes(),
                )
                .map_err(&write)?;
        }
        for (tree, key) in self.index_entries(run, run.status) {
            tree.insert(key, &[]).map_err(&write)?;
        }
        for key in field_keys(run) {
            self.by_field.insert(key, &[]).map_err(&write)?;
        }
        if run.closed {
            self.by_ended
                .insert(ended_key(ended_ms(run), &run.id), &[])
                .map_err(&write)?;
        }
        self.runs.insert(&run.id, encode(run)?).map_err(&write)?;
        Ok(Created::New)
    }

    async fn discard(&self, run: &Run) -> Result<(), StoreError> {
        let _creating = self.creation.lock().expect("creation lock");
        let remove = io("discard a run");
        self.runs.remove(&run.id).map_err(&remove)?;
        if let Some(client_key) = &run.idempotency_key {
            let key = idempotency_key(&run.workflow, client_key);
            // Only if it still names this run.
            let _ = self
                .idempotency
                .compare_and_swap(key, Some(run.id.as_bytes()), None as Option<&[u8]>)
                .map_err(&remove)?;
        }
        for (tree, key) in self.index_entries(run, run.status) {
            tree.remove(key).map_err(&remove)?;
        }
        for key in field_keys(run) {
            self.by_field.remove(key).map_err(&remove)?;
        }
        Ok(())
    }

    async fn save(&self, run: &Run) -> Result<(), StoreError> {
        let conflict = || StoreError::Conflict(run.id.clone());
        let Some((bytes, stored)) = self.record_head(run.id.as_bytes())? else {
            return Err(conflict());
        };
        if stored.revision.wrapping_add(1) != run.revision {
            return Err(conflict());
        }
        // New entries before the record, old ones out after it: a crash in between leaves
        // an extra entry, never a missing one; readers check the record.
        let write = io("save a run");
        let moved = stored.status != run.status;
        let closing = run.closed && !stored.closed;
        if moved {
            for (tree, key) in self.index_entries(run, run.status) {
                tree.insert(key, &[]).map_err(&write)?;
            }
        }
        if closing {
            self.by_ended
                .insert(ended_key(ended_ms(run), &run.id), &[])
                .map_err(&write)?;
        }
        self.runs
            .compare_and_swap(&run.id, Some(bytes), Some(encode(run)?))
            .map_err(&write)?
            .map_err(|_| conflict())?;
        if moved {
            // A record's id, workflow and creation time never change: only its status.
            for (tree, key) in self.index_entries(run, stored.status) {
                tree.remove(key).map_err(&write)?;
            }
        }
        Ok(())
    }

    async fn save_and_stage(&self, run: &Run, outbox: &[OutboxEntry]) -> Result<(), StoreError> {
        // Two trees: the entries first, gated on the record, so that a crash between the
        // two leaves entries that are never released.
        self.outbox_put(outbox).await?;
        if let Err(error) = self.save(run).await {
            for entry in outbox {
                let _ = self.outbox_remove(&entry.event.id).await;
            }
            return Err(error);
        }
        Ok(())
    }

    async fn find(&self, run: &Run) -> Result<Option<Run>, StoreError> {
        self.find_run(run)
    }

    async fn get(&self, id: &RunId) -> Result<Option<Run>, StoreError> {
        self.read_run(id)
    }

    async fn owned(&self, id: &RunId) -> Result<Option<Run>, StoreError> {
        // One node: it owns every run.
        self.read_run(id)
    }

    async fn append_journal(&self, run: &Run, entry: &JournalEntry) -> Result<(), StoreError> {
        self.journal
            .insert(journal_key(&run.id, run.journaled), encode(entry)?)
            .map_err(io("write a journal entry"))?;
        Ok(())
    }

    async fn journal(&self, run_id: &RunId) -> Result<Vec<JournalEntry>, StoreError> {
        self.journal
            .scan_prefix(journal_prefix(run_id))
            .map(|item| {
                let (key, value) = item.map_err(io("read a journal"))?;
                decode::<JournalEntry>(&key, &value)
            })
            .collect()
    }

    async fn put_message(&self, run_id: &RunId, message: &Message) -> Result<(), StoreError> {
        let mut key = name_prefix(run_id);
        key.extend_from_slice(message.id.as_bytes());
        self.inbox
            .insert(key, encode(message)?)
            .map_err(io("write a message"))?;
        Ok(())
    }

    async fn inbox(&self, run_id: &RunId) -> Result<Vec<Message>, StoreError> {
        self.inbox
            .scan_prefix(name_prefix(run_id))
            .map(|item| {
                let (key, value) = item.map_err(io("read an inbox"))?;
                decode::<Message>(&key, &value)
            })
            .collect()
    }

    async fn remove_message(&self, run_id: &RunId, id: &str) -> Result<(), StoreError> {
        let mut key = name_prefix(run_id);
        key.extend_from_slice(id.as_bytes());
        self.inbox.remove(key).map_err(io("remove a message"))?;
        Ok(())
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        // Every index ends its keys with `created ms, run id`: walking a range of one
        // backwards is newest first, and a listing that needs several ranges (every status)
        // merges them newest first. The cursor is the `created ms, run id` of the last run
        // given; the creation times bound each range.
        let cursor = query
            .cursor
            .as_ref()
            .map(|cursor| match hex::decode(cursor) {
                Ok(key) if key.len() > 8 => Ok(key),
                _ => Err(StoreError::InvalidCursor),
            })
            .transpose()?;
        let lower = query
            .created_after
            .map_or_else(Vec::new, |ms| ms.to_be_bytes().to_vec());
        let before = query.created_before.map(|ms| ms.to_be_bytes().to_vec());
        let upper = match (before, cursor) {
            (Some(before), Some(cursor)) => Some(before.min(cursor)),
            (before, cursor) => before.or(cursor),
        };
        // The ranges. A search field narrows the most: its index alone is walked, and the
        // record says the rest.
        let sources: Vec<(&sled::Tree, Vec<u8>)> = match query.search.first() {
            Some((field, value)) => vec![(&self.by_field, field_prefix(field, value))],
            None => {
                let (index, base) = match &query.workflow {
                    Some(workflow) => (&self.by_workflow_status, name_prefix(workflow)),
                    None => (&self.by_status, Vec::new()),
                };
                let statuses = query.status.map_or(RunStatus::ALL.to_vec(), |s| vec![s]);
                statuses
                    .into_iter()
                    .map(|status| {
                        let mut prefix = base.clone();
                        prefix.push(status.index_byte());
                        (index, prefix)
                    })
                    .collect()
            }
        };
        let mut ranges: Vec<_> = sources
            .into_iter()
            .filter_map(|(index, prefix)| {
                let start = [prefix.as_slice(), &lower].concat();
                let end = match &upper {
                    Some(upper) => [prefix.as_slice(), upper].concat(),
                    None => prefix_end(&prefix),
                };
                (start < end).then(|| {
                    let len = prefix.len();
                    (index.range(start..end).rev().peekable(), len)
                })
            })
            .collect();
        let mut page = Page::default();
        loop {
            // The newest head among the ranges.
            let mut newest: Option<(usize, Vec<u8>)> = None;
            for (i, (range, len)) in ranges.iter_mut().enumerate() {
                let Some(item) = range.peek() else { continue };
                let key = match item {
                    Ok((key, _)) => key[*len..].to_vec(),
                    Err(_) => {
                        let error = range.next().expect("peeked").expect_err("an error");
                        return Err(io("list runs")(error));
                    }
                };
                if newest.as_ref().is_none_or(|(_, best)| key > *best) {
                    newest = Some((i, key));
                }
            }
            let Some((i, created)) = newest else {
                page.next_cursor = None;
                return Ok(page);
            };
            ranges[i].0.next();
            // A run whose status changed while it was listed may have an entry in both
            // statuses' ranges: they meet here one after the other.
            if page.next_cursor.as_deref() == Some(hex::encode(&created).as_str()) {
                continue;
            }
            let Some((created_ms, id)) = split_index_key(&created, 0) else {
                continue;
            };
            let Some(run) = self.read_run(&id)? else {
                continue;
            };
            // An entry a crash left behind may be stale, and a search field's index knows
            // nothing but the field: the record decides. The record's status, not the
            // entry's: a run that moved to a status whose range was already walked past is
            // listed from its old entry, once.
            let wanted = run.created_ms == created_ms
                && query.status.is_none_or(|s| s == run.status)
                && query.workflow.as_ref().is_none_or(|w| *w == run.workflow)
                && query
                    .search
                    .iter()
                    .all(|(field, value)| run.search.get(field) == Some(value));
            if !wanted {
                continue;
            }
            if page.runs.len() == query.limit {
                return Ok(page);
            }
            page.runs.push(run);
            page.next_cursor = Some(hex::encode(&created));
        }
    }

    async fn claim(&self, claim: Claim<'_>) -> Result<Vec<RunId>, StoreError> {
        // One node: nothing to fence, and no lease but its own.
        let ids = match claim {
            Claim::Own => self.unfinished()?,
            Claim::Expired { .. } => return Ok(Vec::new()),
            Claim::Run(id) | Claim::Again(id) => vec![id.clone()],
        };
        // A crash (or a halt) between a step's events and its journal entry left orphans.
        self.drop_orphans(match claim {
            Claim::Run(id) | Claim::Again(id) => Some(id),
            _ => None,
        })?;
        Ok(ids)
    }

    async fn pins(&self, kind: PinKind, name: &str) -> Result<BTreeMap<String, usize>, StoreError> {
        let mut counts = BTreeMap::new();
        for status in PINNING {
            for item in self.by_status.scan_prefix([status.index_byte()]).keys() {
                let key = item.map_err(io("count pins"))?;
                let Some((_, id)) = split_index_key(&key, 1) else {
                    continue;
                };
                let Some(bytes) = self.runs.get(&id).map_err(io("count pins"))? else {
                    continue;
                };
                let pins: RecordPins = decode(id.as_bytes(), &bytes)?;
                // An entry a crash left behind names a run of another status: it is
                // counted under that one, or not at all.
                if pins.status != status || pins.closed {
                    continue;
                }
                let digest = match kind {
                    PinKind::Plugin => pins.plugins.get(name),
                    PinKind::Workflow => pins
                        .workflow_version
                        .as_ref()
                        .filter(|_| pins.workflow == name),
                };
                if let Some(digest) = digest {
                    *counts.entry(digest.clone()).or_default() += 1;
                }
            }
        }
        Ok(counts)
    }

    async fn ended_before(
        &self,
        cutoff_ms: u64,
        limit: usize,
    ) -> Result<Vec<(u64, RunId)>, StoreError> {
        self.by_ended
            .range(..cutoff_ms.to_be_bytes())
            .keys()
            .take(limit)
            .filter_map(|item| match item {
                Ok(key) => split_index_key(&key, 0).map(Ok),
                Err(e) => Some(Err(io("list ended runs")(e))),
            })
            .collect()
    }

    async fn delete(&self, id: &RunId, ended_ms: u64) -> Result<(), StoreError> {
        let remove = io("delete a run");
        if let Some((_, run)) = self.record(id.as_bytes())?
            && run.closed
        {
            for key in self.journal.scan_prefix(journal_prefix(id)).keys() {
                self.journal
                    .remove(key.map_err(&remove)?)
                    .map_err(&remove)?;
            }
            for key in self.inbox.scan_prefix(name_prefix(id)).keys() {
                self.inbox.remove(key.map_err(&remove)?).map_err(&remove)?;
            }
            // Every status's entries: a crash may have left one of a status it had.
            for status in RunStatus::ALL {
                for (tree, key) in self.index_entries(&run, status) {
                    tree.remove(key).map_err(&remove)?;
                }
            }
            for key in field_keys(&run) {
                self.by_field.remove(key).map_err(&remove)?;
            }
            if let Some(client_key) = &run.idempotency_key {
                let key = idempotency_key(&run.workflow, client_key);
                let _ = self
                    .idempotency
                    .compare_and_swap(key, Some(id.as_bytes()), None as Option<&[u8]>)
                    .map_err(&remove)?;
            }
            self.runs.remove(id).map_err(&remove)?;
        }
        // Last, so that a crash before it leaves the run listed for the next pass.
        self.by_ended
            .remove(ended_key(ended_ms, id))
            .map_err(&remove)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
