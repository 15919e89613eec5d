//! [`RunStore`] on [`SledStore`]: run records, their journals, indexes and pins.
//!
//! A run's record in `runs` is the commit point of everything about it: index entries,
//! pins and the idempotency key are written before it and removed after it, so that a
//! crash in between leaves entries without a record, which readers ignore (every reader
//! checks the record), and never a record that an index misses.

use std::collections::BTreeMap;

use super::{SledStore, decode, encode, io, name_prefix, prefix_end};
use crate::model::run::OLDEST_RUN_FORMAT;
use crate::model::{JournalEntry, RUN_FORMAT, Run, RunId, RunStatus};
use crate::store::{Created, ListQuery, Page, PinKind, RunStore, StoreError};

/// Why a record was refused: a format this release does not read.
#[derive(Debug, thiserror::Error)]
#[error("format {found} (this release reads formats {OLDEST_RUN_FORMAT} to {RUN_FORMAT})")]
struct UnknownFormat {
    found: u32,
}

impl SledStore {
    /// Gives every run the entries a schema-2 database lacks (the workflow-and-status
    /// index, pins or the ended index); how many runs there were.
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
            } else {
                for key in pin_keys(&run) {
                    self.pins.insert(key, &[]).map_err(&write)?;
                }
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
        if !(OLDEST_RUN_FORMAT..=RUN_FORMAT).contains(&run.format) {
            return Err(StoreError::Corrupt {
                key: String::from_utf8_lossy(id).into_owned(),
                cause: UnknownFormat { found: run.format }.into(),
            });
        }
        run.format = RUN_FORMAT;
        Ok(Some((bytes, run)))
    }

    /// Every index entry of `run` in `status`, with the tree it goes in.
    fn index_entries(&self, run: &Run, status: RunStatus) -> [(&sled::Tree, Vec<u8>); 4] {
        [
            (&self.by_created, created_key(run)),
            (&self.by_workflow, workflow_key(run)),
            (&self.by_status, status_key(status, run)),
            (&self.by_workflow_status, workflow_status_key(status, run)),
        ]
    }
}

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

fn workflow_key(run: &Run) -> Vec<u8> {
    let mut key = name_prefix(&run.workflow);
    key.extend(created_key(run));
    key
}

fn workflow_status_key(status: RunStatus, run: &Run) -> Vec<u8> {
    let mut key = name_prefix(&run.workflow);
    key.push(status.index_byte());
    key.extend(created_key(run));
    key
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

fn pin_kind_byte(kind: PinKind) -> u8 {
    match kind {
        PinKind::Plugin => b'p',
        PinKind::Workflow => b'w',
    }
}

fn pin_prefix(kind: PinKind, name: &str) -> Vec<u8> {
    let mut key = vec![pin_kind_byte(kind)];
    key.extend(name_prefix(name));
    key
}

/// The pin entries of `run`: one per plugin version and one for its definition.
fn pin_keys(run: &Run) -> Vec<Vec<u8>> {
    let pinned = run
        .plugins
        .iter()
        .map(|(name, digest)| (PinKind::Plugin, name.as_str(), digest.as_str()))
        .chain(
            run.workflow_version
                .as_deref()
                .map(|digest| (PinKind::Workflow, run.workflow.as_str(), digest)),
        );
    pinned
        .map(|(kind, name, digest)| {
            let mut key = pin_prefix(kind, name);
            key.extend(name_prefix(digest));
            key.extend_from_slice(run.id.as_bytes());
            key
        })
        .collect()
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

impl RunStore for SledStore {
    fn create(&self, run: &Run) -> Result<Created, StoreError> {
        let _creating = self.creation.lock().expect("creation lock");
        if let Some(existing) = self.get(&run.id)? {
            return Ok(Created::Existing(Box::new(existing)));
        }
        let write = io("create a run");
        if let Some(client_key) = &run.idempotency_key {
            let key = idempotency_key(&run.workflow, client_key);
            if let Some(owner) = self.idempotency.get(&key).map_err(io("read a key"))? {
                let owner = RunId::from_stored(String::from_utf8_lossy(&owner).into_owned());
                if let Some(existing) = self.get(&owner)? {
                    return Ok(Created::Existing(Box::new(existing)));
                }
                // The key names a run that was never written (a crash between the two) or
                // was discarded: it is free. Creation holds the lock, so no one else is
                // writing that run now.
            }
            self.idempotency
                .insert(key, run.id.as_bytes())
                .map_err(&write)?;
        }
        for (tree, key) in self.index_entries(run, run.status) {
            tree.insert(key, &[]).map_err(&write)?;
        }
        if run.closed {
            self.by_ended
                .insert(ended_key(ended_ms(run), &run.id), &[])
                .map_err(&write)?;
        } else {
            for key in pin_keys(run) {
                self.pins.insert(key, &[]).map_err(&write)?;
            }
        }
        self.runs.insert(&run.id, encode(run)?).map_err(&write)?;
        Ok(Created::New)
    }

    fn discard(&self, run: &Run) -> Result<(), StoreError> {
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
        for key in pin_keys(run) {
            self.pins.remove(key).map_err(&remove)?;
        }
        Ok(())
    }

    fn save(&self, run: &Run) -> Result<(), StoreError> {
        let conflict = || StoreError::Conflict(run.id.clone());
        let Some((bytes, stored)) = self.record(run.id.as_bytes())? else {
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
            for (tree, key) in &self.index_entries(run, run.status)[2..] {
                tree.insert(key.as_slice(), &[]).map_err(&write)?;
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
            for (tree, key) in &self.index_entries(&stored, stored.status)[2..] {
                tree.remove(key.as_slice()).map_err(&write)?;
            }
        }
        if closing {
            for key in pin_keys(run) {
                self.pins.remove(key).map_err(&write)?;
            }
        }
        Ok(())
    }

    fn find(&self, run: &Run) -> Result<Option<Run>, StoreError> {
        if let Some(existing) = self.get(&run.id)? {
            return Ok(Some(existing));
        }
        let Some(client_key) = &run.idempotency_key else {
            return Ok(None);
        };
        let key = idempotency_key(&run.workflow, client_key);
        match self.idempotency.get(key).map_err(io("read a key"))? {
            Some(owner) => self.get(&RunId::from_stored(
                String::from_utf8_lossy(&owner).into_owned(),
            )),
            None => Ok(None),
        }
    }

    fn get(&self, id: &RunId) -> Result<Option<Run>, StoreError> {
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

    fn append_journal(
        &self,
        run_id: &RunId,
        seq: u32,
        entry: &JournalEntry,
    ) -> Result<(), StoreError> {
        self.journal
            .insert(journal_key(run_id, seq), encode(entry)?)
            .map_err(io("write a journal entry"))?;
        Ok(())
    }

    fn journal(&self, run_id: &RunId) -> Result<Vec<JournalEntry>, StoreError> {
        self.journal
            .scan_prefix(journal_prefix(run_id))
            .map(|item| {
                let (key, value) = item.map_err(io("read a journal"))?;
                decode::<JournalEntry>(&key, &value)
            })
            .collect()
    }

    fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        // The index that holds just the runs asked for. Its keys end with `created ms,
        // run id`, so walking it backwards is newest first.
        let (index, prefix) = match (&query.status, &query.workflow) {
            (Some(status), Some(workflow)) => {
                let mut prefix = name_prefix(workflow);
                prefix.push(status.index_byte());
                (&self.by_workflow_status, prefix)
            }
            (Some(status), None) => (&self.by_status, vec![status.index_byte()]),
            (None, Some(workflow)) => (&self.by_workflow, name_prefix(workflow)),
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
            let (key, _) = item.map_err(io("list runs"))?;
            let Some((created_ms, id)) = split_index_key(&key, prefix.len()) else {
                continue;
            };
            let Some(run) = self.get(&id)? else {
                continue;
            };
            // An entry a crash left behind may be stale: the record decides.
            let stale = run.created_ms != created_ms
                || query.status.is_some_and(|status| status != run.status)
                || query.workflow.as_ref().is_some_and(|w| *w != run.workflow);
            if stale {
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

    fn unfinished(&self) -> Result<Vec<RunId>, StoreError> {
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

    fn pins(&self, kind: PinKind, name: &str) -> Result<BTreeMap<String, usize>, StoreError> {
        let prefix = pin_prefix(kind, name);
        let mut counts = BTreeMap::new();
        for item in self.pins.scan_prefix(&prefix).keys() {
            let key = item.map_err(io("count pins"))?;
            let rest = &key[prefix.len()..];
            let Some(split) = rest.iter().position(|b| *b == 0) else {
                continue;
            };
            let (digest, id) = (&rest[..split], &rest[split + 1..]);
            // A pin a crashed creation left has no record, and one a crash left behind a
            // closing save has a closed one: neither counts.
            if self.record(id)?.is_some_and(|(_, run)| !run.closed) {
                *counts
                    .entry(String::from_utf8_lossy(digest).into_owned())
                    .or_default() += 1;
            }
        }
        Ok(counts)
    }

    fn ended_before(&self, cutoff_ms: u64, limit: usize) -> Result<Vec<(u64, RunId)>, StoreError> {
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

    fn delete(&self, id: &RunId, ended_ms: u64) -> Result<(), StoreError> {
        let remove = io("delete a run");
        if let Some((_, run)) = self.record(id.as_bytes())?
            && run.closed
        {
            for key in self.journal.scan_prefix(journal_prefix(id)).keys() {
                self.journal
                    .remove(key.map_err(&remove)?)
                    .map_err(&remove)?;
            }
            // Every status's entries: a crash may have left one of a status it had.
            for status in RunStatus::ALL {
                for (tree, key) in self.index_entries(&run, status) {
                    tree.remove(key).map_err(&remove)?;
                }
            }
            if let Some(client_key) = &run.idempotency_key {
                let key = idempotency_key(&run.workflow, client_key);
                let _ = self
                    .idempotency
                    .compare_and_swap(key, Some(id.as_bytes()), None as Option<&[u8]>)
                    .map_err(&remove)?;
            }
            for key in pin_keys(&run) {
                self.pins.remove(key).map_err(&remove)?;
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
