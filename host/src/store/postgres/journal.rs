//! Journal entries of many runs written in one statement.
//!
//! A durable saga writes a journal entry per attempt, so most of a busy node's statements
//! were journal entries, each a round trip, a transaction and a commit of its own for one
//! small row. They go through a queue instead. A writer takes the entries queued, up to
//! [`BATCH`], and writes them in one statement, each only under its own run's epoch and
//! holder, as it would be alone; what the statement returns says which were written, and
//! the others are fenced.
//!
//! An entry never waits for a batch to fill: when a writer is free it goes at once, alone
//! if it is alone. Entries gather while the [`WRITERS`] are busy, so the busier PostgreSQL
//! is, the fewer statements per entry; few writers make big batches. Two, so that a
//! statement waiting for a row lock (a claim of one of its runs, a few milliseconds) does
//! not stop every run. The writers' connections give up on a lock after [`LOCK_TIMEOUT`] (a
//! claimer paused while it held a row would hold a batch up for ever), and a batch that
//! gave up is written again entry by entry: the entries whose rows are free are written,
//! and one whose row is still held fails (unavailable: its run halts and is taken up again
//! later, where alone it would have waited). Entry by entry, a batch with rows held keeps
//! its writer a second more per such row. An entry for a row already in the batch being
//! gathered waits for the next one, which goes once the earlier is written: the later entry
//! is the one kept.

use std::collections::HashSet;
use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_postgres::error::SqlState;

use super::refused;
use crate::store::StoreError;

/// The most entries in one statement.
const BATCH: usize = 64;

/// The most statements in flight at once, each on a connection of its own.
pub(super) const WRITERS: usize = 2;

/// How long a writer's statement waits for a row lock.
pub(super) const LOCK_TIMEOUT: &str = "1s";

const OP: &str = "write a journal entry";

/// The entries of `$1` to `$4` (runs, sequences, epochs, entries as JSON text) whose runs
/// `$5`'s incarnation `$6` holds under their epoch, with the (run, sequence) of each
/// written. A run is looked up by its key for each entry (a lateral subquery): joined, it
/// was planned as a scan of `runs` on a new database, without statistics yet, a plan the
/// connection kept while the table grew.
const INSERT: &str = "INSERT INTO journal (run_id, seq, epoch, entry)
    SELECT r.id, e.seq, r.epoch, e.entry::jsonb
    FROM unnest($1::text[], $2::integer[], $3::bigint[], $4::text[])
         AS e (run_id, seq, epoch, entry),
    LATERAL (SELECT id, epoch FROM runs
             WHERE id = e.run_id AND epoch = e.epoch AND owner = $5 AND incarnation = $6
             FOR KEY SHARE) r
    ON CONFLICT (run_id, seq) DO UPDATE SET entry = excluded.entry, epoch = excluded.epoch
    RETURNING run_id, seq";

/// One entry to write, and who waits for it: written (`true`), or fenced (`false`).
pub(super) struct Append {
    pub run_id: String,
    pub seq: i32,
    pub epoch: i64,
    /// The entry as JSON text.
    pub entry: String,
    pub done: oneshot::Sender<Result<bool, StoreError>>,
}

/// Writes the entries `queue` brings, under holder `node` and `incarnation`, until every
/// sender is gone.
pub(super) async fn write_queued(
    pool: Pool,
    node: String,
    incarnation: String,
    mut queue: mpsc::UnboundedReceiver<Append>,
) {
    let holder = Arc::new((node, incarnation));
    let writers = Arc::new(Semaphore::new(WRITERS));
    // An entry left for the next batch: the same row twice is one statement's error.
    let mut next: Option<Append> = None;
    loop {
        if next.is_some() {
            // The same row again: only once the batch that holds it is written, so that
            // the later entry is the one kept.
            let idle = writers.acquire_many(WRITERS as u32).await;
            drop(idle.expect("the semaphore is never closed"));
        }
        let writer = writers
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let first = match next.take() {
            Some(append) => append,
            None => match queue.recv().await {
                Some(append) => append,
                None => return,
            },
        };
        let mut rows = HashSet::from([(first.run_id.clone(), first.seq)]);
        let mut batch = vec![first];
        while batch.len() < BATCH {
            let Ok(append) = queue.try_recv() else { break };
            if !rows.insert((append.run_id.clone(), append.seq)) {
                next = Some(append);
                break;
            }
            batch.push(append);
        }
        let (pool, holder) = (pool.clone(), holder.clone());
        tokio::spawn(async move {
            write(&pool, &holder, batch).await;
            drop(writer);
        });
    }
}

/// Writes `batch` and answers each entry's waiter. Data PostgreSQL refuses, or a row lock
/// held too long, fails the whole statement: then each entry is written alone, so that
/// only the one at fault fails.
async fn write(pool: &Pool, (node, incarnation): &(String, String), batch: Vec<Append>) {
    match insert(pool, node, incarnation, &batch).await {
        Ok(written) => {
            for append in batch {
                let ok = written.contains(&(append.run_id, append.seq));
                let _ = append.done.send(Ok(ok));
            }
        }
        Err(failure) if failure.one_at_fault && batch.len() > 1 => {
            for append in batch {
                let alone = insert(pool, node, incarnation, std::slice::from_ref(&append)).await;
                let _ = append.done.send(
                    alone
                        .map(|written| !written.is_empty())
                        .map_err(StoreError::from),
                );
            }
        }
        Err(failure) => {
            for append in batch {
                let _ = append.done.send(Err(StoreError::from(failure.clone())));
            }
        }
    }
}

/// Why a statement failed, for every entry it held.
#[derive(Clone)]
struct Failure {
    /// PostgreSQL refused the data (class 22 or 54).
    refused: bool,
    /// The fault may be one entry's: its data, or its run's row held by another.
    one_at_fault: bool,
    cause: Arc<dyn std::error::Error + Send + Sync>,
}

impl From<Failure> for StoreError {
    fn from(failure: Failure) -> Self {
        if failure.refused {
            StoreError::Rejected {
                op: OP,
                cause: Box::new(failure.cause),
            }
        } else {
            StoreError::unavailable(OP, failure.cause)
        }
    }
}

/// Inserts the entries of `batch` whose runs `node`'s `incarnation` holds under their epoch,
/// holding those runs' rows against a claim meanwhile; the (run, sequence) of each written.
async fn insert(
    pool: &Pool,
    node: &str,
    incarnation: &str,
    batch: &[Append],
) -> Result<HashSet<(String, i32)>, Failure> {
    let failed = |e: tokio_postgres::Error| {
        let lock_held = e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE);
        Failure {
            refused: refused(&e),
            one_at_fault: refused(&e) || lock_held,
            cause: Arc::new(e),
        }
    };
    let client = pool.get().await.map_err(|e| Failure {
        refused: false,
        one_at_fault: false,
        cause: Arc::new(e),
    })?;
    let statement = client.prepare_cached(INSERT).await.map_err(failed)?;
    let runs: Vec<&str> = batch.iter().map(|a| a.run_id.as_str()).collect();
    let seqs: Vec<i32> = batch.iter().map(|a| a.seq).collect();
    let epochs: Vec<i64> = batch.iter().map(|a| a.epoch).collect();
    let entries: Vec<&str> = batch.iter().map(|a| a.entry.as_str()).collect();
    let rows = client
        .query(
            &statement,
            &[&runs, &seqs, &epochs, &entries, &node, &incarnation],
        )
        .await
        .map_err(failed)?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

#[cfg(test)]
mod tests {
    use super::INSERT;
    use crate::store::postgres::ScratchDatabase;

    /// On a new database, whose tables PostgreSQL has no statistics of yet, the plan the
    /// writers' connections make once and keep looks each run up by its key.
    #[tokio::test]
    async fn the_plan_looks_each_run_up_by_key_on_a_new_database() {
        let plan = ScratchDatabase::create()
            .await
            .generic_plan(
                INSERT,
                "text[], integer[], bigint[], text[], text, text",
                "'{r1}', '{0}', '{0}', '{\"{}\"}', 'n', 'i'",
            )
            .await;
        assert!(
            plan.contains("Index Scan using runs_pkey on runs"),
            "{plan}"
        );
        assert!(!plan.contains("Seq Scan on runs"), "{plan}");
    }
}
