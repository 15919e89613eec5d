//! [`RunStore`] on [`PgStore`]: a row per run (its record and the columns listings need),
//! its journal and inbox in tables of their own. A run's row holds its idempotency key and
//! its index entries, so creating, saving and deleting it are each one statement: there is
//! no order of writes to get right.

use std::collections::BTreeMap;

use async_trait::async_trait;
use tokio_postgres::Row;
use tokio_postgres::types::{Json, ToSql};

use super::{PgStore, decode, ms, pg};
use crate::model::{JournalEntry, Message, OutboxEntry, RUN_FORMAT, Run, RunId, RunStatus};
use crate::store::runs::check_format;
use crate::store::{Awaiting, Claim, Created, ListQuery, Page, PinKind, RunStore, StoreError};

/// The statuses from which a run may still call a plugin: the runs that pin versions.
/// Written in the statements, not passed, so that their one plan uses the status index.
const PINNING: &str = "('pending', 'running', 'compensating', 'compensation_failed')";

/// The statuses of the runs a node drives: those it claims, and whose owner's lease
/// matters. (The same list as the index `runs_unfinished_by_owner`'s.)
const UNFINISHED: &str = "('pending', 'running', 'compensating')";

/// A run's record with the journal entries written since it, its epoch and owner: what
/// [`read`] folds.
const SELECT_RUN: &str = "SELECT r.id, r.record,
        coalesce((SELECT json_agg(j.entry ORDER BY j.seq) FROM journal j
                  WHERE j.run_id = r.id AND j.seq >= r.journaled), '[]'::json),
        r.epoch, r.owner, r.incarnation
    FROM runs r";

/// Removes the outbox entries of runs `$1` whose gates are closed: the journal entry the
/// events wait for was not written under the epoch that staged them, or the record never
/// reached the revision.
const DROP_ORPHANS: &str = "DELETE FROM outbox o WHERE o.run_id = ANY($1) AND NOT CASE
        WHEN o.entry -> 'gate' ? 'seq' THEN EXISTS (
            SELECT 1 FROM journal j WHERE j.run_id = o.run_id
                AND j.seq = (o.entry -> 'gate' ->> 'seq')::integer
                AND j.epoch = coalesce((o.entry -> 'gate' ->> 'epoch')::bigint, 0))
        ELSE EXISTS (
            SELECT 1 FROM runs r WHERE r.id = o.run_id
                AND r.revision >= (o.entry -> 'gate' ->> 'revision')::bigint)
    END";

/// A correlation's path as the `awaits` table stores it: a JSON array.
fn key_path(path: &[String]) -> String {
    serde_json::to_string(path).expect("strings are JSON")
}

/// A run's lease epoch as PostgreSQL's `bigint`.
pub(super) fn epoch(run: &Run) -> i64 {
    i64::try_from(run.epoch).unwrap_or(i64::MAX)
}

/// The run a [`SELECT_RUN`] row holds, its journal applied.
fn read(row: &Row) -> Result<Run, StoreError> {
    let id: &str = row.get(0);
    let mut run: Run = decode(id, row.get(1))?;
    check_format(id.as_bytes(), run.format)?;
    run.format = RUN_FORMAT;
    run.epoch = row.get::<_, i64>(3) as u64;
    let entries: Vec<JournalEntry> = decode(id, row.get(2))?;
    for entry in &entries {
        run.apply(entry);
    }
    Ok(run)
}

/// When a closed run ended, for retention; none while it is open.
fn ended(run: &Run) -> Option<i64> {
    run.closed
        .then(|| ms(run.ended_ms.unwrap_or(run.updated_ms)))
}

/// A page's cursor: the creation time and id of the last run given, as the embedded store
/// writes it (hex of the time's 8 bytes, big-endian, and the id).
fn cursor_of(run: &Run) -> String {
    let mut key = run.created_ms.to_be_bytes().to_vec();
    key.extend_from_slice(run.id.as_bytes());
    hex::encode(key)
}

fn parse_cursor(cursor: &str) -> Result<(i64, String), StoreError> {
    let key = hex::decode(cursor).map_err(|_| StoreError::InvalidCursor)?;
    if key.len() <= 8 {
        return Err(StoreError::InvalidCursor);
    }
    let created = u64::from_be_bytes(key[..8].try_into().expect("8 bytes"));
    let id = String::from_utf8(key[8..].to_vec()).map_err(|_| StoreError::InvalidCursor)?;
    Ok((ms(created), id))
}

/// The conditions of a listing, with their parameters, numbered as they are added.
#[derive(Default)]
struct Filters<'a> {
    conditions: Vec<String>,
    params: Vec<&'a (dyn ToSql + Sync)>,
}

impl<'a> Filters<'a> {
    /// Adds `condition`, each `?` in it standing for the next of `values`.
    fn add(&mut self, condition: &str, values: &[&'a (dyn ToSql + Sync)]) {
        let mut parts = condition.split('?');
        let mut sql = parts.next().unwrap_or_default().to_owned();
        for (part, value) in parts.zip(values) {
            self.params.push(*value);
            sql.push_str(&format!("${}{part}", self.params.len()));
        }
        self.conditions.push(sql);
    }

    /// All the conditions, as one.
    fn condition(&self) -> String {
        if self.conditions.is_empty() {
            return "true".to_owned();
        }
        self.conditions.join(" AND ")
    }
}

impl PgStore {
    async fn select_one(
        &self,
        op: &'static str,
        filter: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Run>, StoreError> {
        let row = self
            .query_opt(op, &format!("{SELECT_RUN} WHERE {filter}"), params)
            .await?;
        row.as_ref().map(read).transpose()
    }
}

#[async_trait]
impl RunStore for PgStore {
    async fn create(&self, run: &Run) -> Result<Created, StoreError> {
        let op = "create a run";
        loop {
            let inserted = self
                .execute(
                    op,
                    "INSERT INTO runs (id, workflow, status, created_ms, revision, journaled,
                         closed, ended_ms, idempotency_key, search, record, owner, epoch,
                         incarnation)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                     ON CONFLICT DO NOTHING",
                    &[
                        &run.id.as_str(),
                        &run.workflow,
                        &run.status.as_str(),
                        &ms(run.created_ms),
                        &i64::from(run.revision),
                        &(run.journaled as i32),
                        &run.closed,
                        &ended(run),
                        &run.idempotency_key,
                        &Json(&run.search),
                        &Json(run),
                        &self.node,
                        &epoch(run),
                        &self.incarnation,
                    ],
                )
                .await?;
            if inserted == 1 {
                return Ok(Created::New);
            }
            // Its id or key is taken: by the run we answer with, unless that one was
            // discarded meanwhile, and then the id or key is free again.
            if let Some(existing) = self.find(run).await? {
                return Ok(Created::Existing(Box::new(existing)));
            }
        }
    }

    async fn discard(&self, run: &Run) -> Result<(), StoreError> {
        let op = "discard a run";
        let mut client = self.client(op).await?;
        let tx = client.transaction().await.map_err(pg(op))?;
        // Only by its holder: another node may have taken it over (a request there) and
        // drive it now.
        let held = tx
            .query_opt(
                "SELECT 1 FROM runs WHERE id = $1 AND owner = $2 AND incarnation = $3
                 FOR UPDATE",
                &[&run.id.as_str(), &self.node, &self.incarnation],
            )
            .await
            .map_err(pg(op))?;
        if held.is_none() {
            return Err(StoreError::Fenced(run.id.clone()));
        }
        for table in ["journal", "inbox"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE run_id = $1"),
                &[&run.id.as_str()],
            )
            .await
            .map_err(pg(op))?;
        }
        tx.execute("DELETE FROM runs WHERE id = $1", &[&run.id.as_str()])
            .await
            .map_err(pg(op))?;
        tx.commit().await.map_err(pg(op))
    }

    async fn save(&self, run: &Run) -> Result<(), StoreError> {
        self.save_and_stage(run, &[]).await
    }

    async fn save_and_stage(&self, run: &Run, outbox: &[OutboxEntry]) -> Result<(), StoreError> {
        let op = "save a run";
        // One statement: the entries are written only if the record is, so their gate is
        // open as soon as they are there.
        let ids: Vec<&str> = outbox.iter().map(|e| e.event.id.as_str()).collect();
        let entries: Vec<Json<&OutboxEntry>> = outbox.iter().map(Json).collect();
        let saved = self
            .query_one(
                op,
                "WITH saved AS (
                     UPDATE runs SET status = $2, revision = $3::bigint, journaled = $4,
                         closed = $5, ended_ms = $6, record = $7
                     WHERE id = $1 AND revision = $3::bigint - 1
                         AND epoch = $8 AND owner = $9 AND incarnation = $10
                     RETURNING 1),
                 staged AS (
                     INSERT INTO outbox (event_id, entry)
                     SELECT u.* FROM unnest($11::text[], $12::jsonb[]) u, saved
                     ON CONFLICT DO NOTHING)
                 SELECT count(*) FROM saved",
                &[
                    &run.id.as_str(),
                    &run.status.as_str(),
                    &i64::from(run.revision),
                    &(run.journaled as i32),
                    &run.closed,
                    &ended(run),
                    &Json(run),
                    &epoch(run),
                    &self.node,
                    &self.incarnation,
                    &ids,
                    &entries,
                ],
            )
            .await?;
        if saved.get::<_, i64>(0) == 1 {
            return Ok(());
        }
        // Lost: to another owner, or to another writer under the same one.
        let now = self
            .query_opt(
                op,
                "SELECT epoch = $2 AND owner = $3 AND incarnation = $4 FROM runs WHERE id = $1",
                &[&run.id.as_str(), &epoch(run), &self.node, &self.incarnation],
            )
            .await?;
        match now.map(|row| row.get::<_, Option<bool>>(0)) {
            Some(Some(true)) | None => Err(StoreError::Conflict(run.id.clone())),
            Some(_) => Err(StoreError::Fenced(run.id.clone())),
        }
    }

    async fn find(&self, run: &Run) -> Result<Option<Run>, StoreError> {
        let op = "find a run";
        match &run.idempotency_key {
            None => self.select_one(op, "r.id = $1", &[&run.id.as_str()]).await,
            Some(key) => {
                // The run with this id, else the one with this key.
                self.select_one(
                    op,
                    "r.id = $1 OR (r.workflow = $2 AND r.idempotency_key = $3)
                     ORDER BY r.id = $1 DESC LIMIT 1",
                    &[&run.id.as_str(), &run.workflow, key],
                )
                .await
            }
        }
    }

    async fn get(&self, id: &RunId) -> Result<Option<Run>, StoreError> {
        self.select_one("read a run", "r.id = $1", &[&id.as_str()])
            .await
    }

    async fn owned(&self, id: &RunId) -> Result<Option<Run>, StoreError> {
        let row = self
            .query_opt(
                "read a run",
                &format!("{SELECT_RUN} WHERE r.id = $1"),
                &[&id.as_str()],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let holder = (row.get::<_, Option<&str>>(4), row.get::<_, Option<&str>>(5));
        if holder != (Some(self.node.as_str()), Some(self.incarnation.as_str())) {
            return Err(StoreError::Fenced(id.clone()));
        }
        read(&row).map(Some)
    }

    async fn append_journal(&self, run: &Run, entry: &JournalEntry) -> Result<(), StoreError> {
        // Written with the entries other runs write meanwhile ([`super::journal`]), only
        // under this run's epoch, holding its row against a claim meanwhile.
        let stopped = || StoreError::unavailable("write a journal entry", "the writer stopped");
        let (done, written) = tokio::sync::oneshot::channel();
        let append = super::journal::Append {
            run_id: run.id.as_str().to_owned(),
            seq: run.journaled as i32,
            epoch: epoch(run),
            entry: serde_json::to_string(entry).expect("a journal entry is JSON"),
            done,
        };
        self.journal.send(append).map_err(|_| stopped())?;
        if !written.await.map_err(|_| stopped())?? {
            return Err(StoreError::Fenced(run.id.clone()));
        }
        Ok(())
    }

    async fn journal(&self, run_id: &RunId) -> Result<Vec<JournalEntry>, StoreError> {
        let op = "read a journal";
        let rows = self
            .query(
                op,
                "SELECT entry FROM journal WHERE run_id = $1 ORDER BY seq",
                &[&run_id.as_str()],
            )
            .await?;
        rows.iter()
            .map(|row| decode(run_id.as_str(), row.get(0)))
            .collect()
    }

    async fn put_message(&self, run_id: &RunId, message: &Message) -> Result<(), StoreError> {
        let op = "write a message";
        self.execute(
            op,
            "INSERT INTO inbox (run_id, message_id, message) VALUES ($1, $2, $3)
                 ON CONFLICT (run_id, message_id) DO UPDATE SET message = excluded.message",
            &[&run_id.as_str(), &message.id, &Json(message)],
        )
        .await?;
        Ok(())
    }

    async fn inbox(&self, run_id: &RunId) -> Result<Vec<Message>, StoreError> {
        let op = "read an inbox";
        let rows = self
            .query(
                op,
                "SELECT message FROM inbox WHERE run_id = $1 ORDER BY message_id",
                &[&run_id.as_str()],
            )
            .await?;
        rows.iter()
            .map(|row| decode(run_id.as_str(), row.get(0)))
            .collect()
    }

    async fn remove_message(&self, run_id: &RunId, id: &str) -> Result<(), StoreError> {
        let op = "remove a message";
        self.execute(
            op,
            "DELETE FROM inbox WHERE run_id = $1 AND message_id = $2",
            &[&run_id.as_str(), &id],
        )
        .await?;
        Ok(())
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let op = "list runs";
        let cursor = query.cursor.as_deref().map(parse_cursor).transpose()?;
        let status = query.status.map(RunStatus::as_str);
        let after = query.created_after.map(ms);
        let before = query.created_before.map(ms);
        let search = (!query.search.is_empty()).then(|| {
            Json(
                query
                    .search
                    .iter()
                    .map(|(field, value)| (field.as_str(), value.as_str()))
                    .collect::<BTreeMap<_, _>>(),
            )
        });
        let limit = i64::try_from(query.limit)
            .unwrap_or(i64::MAX)
            .saturating_add(1);
        // Every filter in one statement; the planner picks the index that holds just the
        // runs asked for (by status, workflow and status, search field, creation time).
        let mut filters = Filters::default();
        if let Some(workflow) = &query.workflow {
            filters.add("r.workflow = ?", &[workflow]);
        }
        if let Some(status) = &status {
            filters.add("r.status = ?", &[status]);
        }
        if let Some(after) = &after {
            filters.add("r.created_ms >= ?", &[after]);
        }
        if let Some(before) = &before {
            filters.add("r.created_ms < ?", &[before]);
        }
        if let Some(search) = &search {
            filters.add("r.search @> ?", &[search]);
        }
        if let Some((created, id)) = &cursor {
            filters.add("(r.created_ms, r.id) < (?, ?)", &[created, id]);
        }
        filters.params.push(&limit);
        let sql = format!(
            "{SELECT_RUN} WHERE {} ORDER BY r.created_ms DESC, r.id DESC LIMIT ${}",
            filters.condition(),
            filters.params.len()
        );
        let rows = self.query(op, &sql, &filters.params).await?;
        let mut runs = rows.iter().map(read).collect::<Result<Vec<_>, _>>()?;
        let more = runs.len() > query.limit;
        runs.truncate(query.limit);
        let next_cursor = more.then(|| runs.last().map(cursor_of)).flatten();
        Ok(Page { runs, next_cursor })
    }

    async fn claim(&self, claim: Claim<'_>) -> Result<Vec<RunId>, StoreError> {
        let op = "claim runs";
        // The rows are locked before their epochs move: a write of an earlier owner is in
        // before, or refused after.
        let (sql, params): (String, Vec<&(dyn ToSql + Sync)>);
        let (limit, run_id): (i64, &str);
        match claim {
            Claim::Own => {
                sql = format!(
                    "UPDATE runs r SET incarnation = $2, epoch = r.epoch + 1
                     FROM (SELECT id FROM runs WHERE owner = $1 AND status IN {UNFINISHED}
                           FOR UPDATE) c
                     WHERE r.id = c.id RETURNING r.id"
                );
                params = vec![&self.node, &self.incarnation];
            }
            Claim::Expired { limit: most } => {
                limit = i64::try_from(most).unwrap_or(i64::MAX);
                // Another node's (or none's), whose lease is not live; any a claimer or a
                // writer holds now are skipped, for the next pass.
                sql = format!(
                    "UPDATE runs r SET owner = $1, incarnation = $3, epoch = r.epoch + 1
                     FROM (SELECT id FROM runs
                           WHERE status IN {UNFINISHED} AND owner IS DISTINCT FROM $1
                               AND (owner IS NULL OR owner NOT IN
                                    (SELECT id FROM nodes WHERE expires_ms >= flowhost_now_ms()))
                           ORDER BY created_ms LIMIT $2
                           FOR UPDATE SKIP LOCKED) c
                     WHERE r.id = c.id RETURNING r.id"
                );
                params = vec![&self.node, &limit, &self.incarnation];
            }
            Claim::Run(id) => {
                sql = "UPDATE runs r SET owner = $1, incarnation = $3, epoch = r.epoch + 1
                       FROM (SELECT id FROM runs WHERE id = $2 FOR UPDATE) c
                       WHERE r.id = c.id RETURNING r.id"
                    .to_owned();
                run_id = id.as_str();
                params = vec![&self.node, &run_id, &self.incarnation];
            }
            Claim::Again(id) => {
                sql = "UPDATE runs r SET epoch = r.epoch + 1
                       FROM (SELECT id FROM runs
                             WHERE id = $2 AND owner = $1 AND incarnation = $3
                             FOR UPDATE) c
                       WHERE r.id = c.id RETURNING r.id"
                    .to_owned();
                run_id = id.as_str();
                params = vec![&self.node, &run_id, &self.incarnation];
            }
        }
        let mut client = self.client(op).await?;
        let tx = client.transaction().await.map_err(pg(op))?;
        // A row held longer than this (a writer stuck mid-statement) fails the claim, which
        // the next pass or request tries again, rather than holding up this one for ever.
        tx.batch_execute("SET LOCAL lock_timeout = '10s'")
            .await
            .map_err(pg(op))?;
        let statement = tx.prepare_cached(&sql).await.map_err(pg(op))?;
        let ids: Vec<String> = tx
            .query(&statement, &params)
            .await
            .map_err(pg(op))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        if !ids.is_empty() {
            // A statement of its own, so that it sees every write that got in before the
            // rows were locked.
            let dropped = tx.execute(DROP_ORPHANS, &[&ids]).await.map_err(pg(op))?;
            if dropped > 0 {
                tracing::info!(
                    dropped,
                    "dropped events of step attempts whose result was lost"
                );
            }
        }
        tx.commit().await.map_err(pg(op))?;
        Ok(ids.into_iter().map(RunId::from_stored).collect())
    }

    async fn note_awaits(&self, id: &RunId, awaits: &[Awaiting]) -> Result<(), StoreError> {
        let topics: Vec<&str> = awaits.iter().map(|a| a.topic.as_str()).collect();
        let paths: Vec<Option<String>> = awaits
            .iter()
            .map(|a| a.key.as_ref().map(|(path, _)| key_path(path)))
            .collect();
        let values: Vec<Option<&str>> = awaits
            .iter()
            .map(|a| a.key.as_ref().map(|(_, value)| value.as_str()))
            .collect();
        // Only by the run's holder; the topics it no longer awaits go, the rest are set.
        let held = self
            .query(
                "note what a run awaits",
                "WITH held AS (SELECT id FROM runs
                               WHERE id = $1 AND owner = $2 AND incarnation = $3
                               FOR KEY SHARE),
                      gone AS (DELETE FROM awaits a USING held
                               WHERE a.run_id = held.id AND NOT (a.topic = ANY($4))),
                      noted AS (INSERT INTO awaits (run_id, topic, key_path, key_value)
                                SELECT held.id, u.* FROM held,
                                    unnest($4::text[], $5::text[], $6::text[]) u
                                ON CONFLICT (run_id, topic) DO UPDATE
                                SET key_path = excluded.key_path,
                                    key_value = excluded.key_value)
                 SELECT EXISTS (SELECT 1 FROM held)",
                &[
                    &id.as_str(),
                    &self.node,
                    &self.incarnation,
                    &topics,
                    &paths,
                    &values,
                ],
            )
            .await?;
        if !held[0].get::<_, bool>(0) {
            return Err(StoreError::Fenced(id.clone()));
        }
        Ok(())
    }

    async fn awaited(&self, topic: &str) -> Result<bool, StoreError> {
        let rows = self
            .query(
                "look for runs awaiting a topic",
                "SELECT EXISTS (SELECT 1 FROM awaits WHERE topic = $1)",
                &[&topic],
            )
            .await?;
        Ok(rows[0].get(0))
    }

    async fn awaiting(
        &self,
        topic: &str,
        key_of: &(dyn for<'p> Fn(&'p [String]) -> Option<String> + Sync),
    ) -> Result<Vec<RunId>, StoreError> {
        let op = "find the runs awaiting an event";
        // The event's value at each path runs correlate by, then the runs it may be for.
        let (mut paths, mut values) = (Vec::new(), Vec::new());
        for row in self
            .query(
                op,
                "SELECT DISTINCT key_path FROM awaits WHERE topic = $1 AND key_path IS NOT NULL",
                &[&topic],
            )
            .await?
        {
            let stored: String = row.get(0);
            let path: Vec<String> = serde_json::from_str(&stored).unwrap_or_default();
            if let Some(value) = key_of(&path) {
                paths.push(stored);
                values.push(value);
            }
        }
        let rows = self
            .query(
                op,
                "SELECT a.run_id FROM awaits a JOIN runs r ON r.id = a.run_id
                 WHERE a.topic = $1
                     AND (r.owner IS DISTINCT FROM $2 OR r.incarnation IS DISTINCT FROM $3)
                     AND (a.key_path IS NULL OR (a.key_path, a.key_value) IN
                          (SELECT * FROM unnest($4::text[], $5::text[])))",
                &[&topic, &self.node, &self.incarnation, &paths, &values],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| RunId::from_stored(row.get(0)))
            .collect())
    }

    async fn pins(&self, kind: PinKind, name: &str) -> Result<BTreeMap<String, usize>, StoreError> {
        let op = "count pins";
        let sql = match kind {
            PinKind::Plugin => format!(
                "SELECT record->'plugins'->>$1, count(*) FROM runs
                 WHERE status IN {PINNING} AND NOT closed AND record->'plugins' ? $1
                 GROUP BY 1"
            ),
            PinKind::Workflow => format!(
                "SELECT record->>'workflow_version', count(*) FROM runs
                 WHERE workflow = $1 AND status IN {PINNING} AND NOT closed
                     AND record->>'workflow_version' IS NOT NULL
                 GROUP BY 1"
            ),
        };
        let rows = self.query(op, &sql, &[&name]).await?;
        Ok(rows
            .iter()
            .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1) as usize))
            .collect())
    }

    async fn ended_before(
        &self,
        cutoff_ms: u64,
        limit: usize,
    ) -> Result<Vec<(u64, RunId)>, StoreError> {
        let op = "list ended runs";
        let rows = self
            .query(
                op,
                "SELECT ended_ms, id FROM runs WHERE closed AND ended_ms < $1
                 ORDER BY ended_ms, id LIMIT $2",
                &[&ms(cutoff_ms), &i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                (
                    row.get::<_, i64>(0).max(0) as u64,
                    RunId::from_stored(row.get::<_, String>(1)),
                )
            })
            .collect())
    }

    async fn delete(&self, id: &RunId, _ended_ms: u64) -> Result<(), StoreError> {
        let op = "delete a run";
        let mut client = self.client(op).await?;
        let tx = client.transaction().await.map_err(pg(op))?;
        // Only a closed run goes; its row is locked until its journal and inbox went too.
        let deleted = tx
            .execute("DELETE FROM runs WHERE id = $1 AND closed", &[&id.as_str()])
            .await
            .map_err(pg(op))?;
        if deleted == 1 {
            for table in ["journal", "inbox"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE run_id = $1"),
                    &[&id.as_str()],
                )
                .await
                .map_err(pg(op))?;
            }
        }
        tx.commit().await.map_err(pg(op))
    }
}
