//! [`EventStore`] on [`PgStore`]: the outbox, the embedded transport's queues and the dead
//! letters, each a table keyed as the embedded store keys its trees.

use std::time::Duration;

use async_trait::async_trait;
use tokio_postgres::types::Json;

use super::{PgStore, decode, ms};
use crate::model::{DeadLetter, Delivery, Gate, OutboxEntry};
use crate::store::{EventStore, StoreError};

/// How long a node holds the deliveries of the embedded transport it handed out, against
/// the other nodes sharing the queue: what one that dies holding them leaves waits this long.
const DELIVERY_HOLD: Duration = Duration::from_secs(60);

/// A count from PostgreSQL's `bigint`.
fn count(value: i64) -> usize {
    usize::try_from(value).unwrap_or(0)
}

/// A page size as PostgreSQL's `bigint`.
fn bigint(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl PgStore {
    /// Writes `entries`, which share `gate`, in one statement.
    async fn put_gated(
        &self,
        gate: Option<&Gate>,
        entries: &[OutboxEntry],
    ) -> Result<(), StoreError> {
        let op = "write the outbox";
        let ids: Vec<&str> = entries.iter().map(|e| e.event.id.as_str()).collect();
        let values: Vec<Json<&OutboxEntry>> = entries.iter().map(Json).collect();
        let Some(gate) = gate else {
            // A repeat of an id keeps the first.
            self.execute(
                op,
                "INSERT INTO outbox (event_id, entry)
                 SELECT * FROM unnest($1::text[], $2::jsonb[])
                 ON CONFLICT DO NOTHING",
                &[&ids, &values],
            )
            .await?;
            return Ok(());
        };
        let (run_id, epoch) = gate.run();
        let held = self
            .query(
                op,
                "WITH fence AS (SELECT 1 FROM runs
                                 WHERE id = $3 AND epoch = $4 AND owner = $5
                                     AND incarnation = $6
                                 FOR KEY SHARE),
                      written AS (
                          INSERT INTO outbox (event_id, entry)
                          SELECT u.* FROM unnest($1::text[], $2::jsonb[]) u, fence
                          ON CONFLICT DO NOTHING RETURNING 1)
                 SELECT EXISTS (SELECT 1 FROM fence)",
                &[
                    &ids,
                    &values,
                    &run_id.as_str(),
                    &i64::try_from(epoch).unwrap_or(i64::MAX),
                    &self.node,
                    &self.incarnation,
                ],
            )
            .await?;
        if !held[0].get::<_, bool>(0) {
            return Err(StoreError::Fenced(run_id.clone()));
        }
        Ok(())
    }
}

/// A page's condition: `bound` on cursor `$1` when there is one. One statement with the
/// cursor and one without, rather than `$1 IS NULL OR column > $1`, which a plan made once
/// for any value cannot turn into a bound of the index scan: every page would scan from
/// the start.
fn cursor_condition<'a>(cursor: Option<&str>, bound: &'a str) -> &'a str {
    match cursor {
        Some(_) => bound,
        None => "$1::text IS NULL",
    }
}

/// A page of the outbox, after `$1` (if `after` is given), `$2` at most.
fn pending(after: Option<&str>) -> String {
    format!(
        "SELECT event_id, entry FROM outbox WHERE {}
         ORDER BY event_id LIMIT $2",
        cursor_condition(after, "event_id > $1")
    )
}

#[async_trait]
impl EventStore for PgStore {
    async fn outbox_put(&self, entries: &[OutboxEntry]) -> Result<(), StoreError> {
        // One statement per gate (a step's events share theirs): the entries of a run's
        // gate are written only under the run's epoch, holding its row against a claim.
        let mut start = 0;
        while start < entries.len() {
            let gate = entries[start].gate.as_ref();
            let end = start
                + entries[start..]
                    .iter()
                    .take_while(|e| e.gate.as_ref() == gate)
                    .count();
            self.put_gated(gate, &entries[start..end]).await?;
            start = end;
        }
        Ok(())
    }

    async fn outbox_pending(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let rows = self
            .query(
                "read the outbox",
                &pending(after),
                &[&after, &bigint(limit)],
            )
            .await?;
        rows.iter()
            .map(|row| decode(row.get(0), row.get(1)))
            .collect()
    }

    async fn outbox_take(
        &self,
        after: Option<&str>,
        limit: usize,
        hold: Duration,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        // Rows another relay is taking now are skipped, like those it took a while ago;
        // this relay's own are taken again only once half their hold is gone, so that an
        // entry waiting for its gate is not rewritten at every look.
        let sql = format!(
            "WITH now AS (SELECT flowhost_now_ms() AS ms),
                      taken AS (
                          SELECT o.event_id, o.entry,
                                 coalesce(o.relay_by = $4 AND o.relay_until > now.ms + $3::bigint / 2,
                                          false) AS fresh
                          FROM outbox o, now
                          WHERE {}
                              AND (o.relay_until < now.ms OR o.relay_by = $4)
                          ORDER BY o.event_id LIMIT $2
                          FOR UPDATE OF o SKIP LOCKED),
                      held AS (
                          UPDATE outbox o SET relay_until = now.ms + $3::bigint, relay_by = $4
                          FROM taken, now
                          WHERE o.event_id = taken.event_id AND NOT taken.fresh)
                 SELECT event_id, entry FROM taken",
            cursor_condition(after, "o.event_id > $1")
        );
        let rows = self
            .query(
                "take from the outbox",
                &sql,
                &[
                    &after,
                    &bigint(limit),
                    &i64::try_from(hold.as_millis()).unwrap_or(i64::MAX),
                    &self.incarnation,
                ],
            )
            .await?;
        let mut entries = rows
            .iter()
            .map(|row| decode(row.get(0), row.get(1)))
            .collect::<Result<Vec<OutboxEntry>, _>>()?;
        entries.sort_by(|a, b| a.event.id.cmp(&b.event.id));
        Ok(entries)
    }

    async fn outbox_depth(&self) -> Result<usize, StoreError> {
        let rows = self
            .query("count the outbox", "SELECT count(*) FROM outbox", &[])
            .await?;
        Ok(count(rows[0].get(0)))
    }

    async fn outbox_remove(&self, event_id: &str) -> Result<(), StoreError> {
        self.execute(
            "remove from the outbox",
            "DELETE FROM outbox WHERE event_id = $1",
            &[&event_id],
        )
        .await?;
        Ok(())
    }

    async fn outbox_remove_all(&self, event_ids: &[&str]) -> Result<(), StoreError> {
        if event_ids.is_empty() {
            return Ok(());
        }
        self.execute(
            "remove from the outbox",
            "DELETE FROM outbox WHERE event_id = ANY($1)",
            &[&event_ids],
        )
        .await?;
        Ok(())
    }

    async fn gates_open(&self, gates: &[Gate]) -> Result<Vec<bool>, StoreError> {
        if gates.is_empty() {
            return Ok(Vec::new());
        }
        // Each gate a row: the kind (`j`ournal entry or `r`ecord), the run, the entry's
        // sequence or the record's revision, and the epoch a journal entry must have.
        let (mut kinds, mut runs, mut numbers, mut epochs) = (vec![], vec![], vec![], vec![]);
        for gate in gates {
            match gate {
                Gate::Journal { run_id, seq, epoch } => {
                    kinds.push("j");
                    runs.push(run_id.as_str());
                    numbers.push(i64::from(*seq));
                    epochs.push(i64::try_from(*epoch).unwrap_or(i64::MAX));
                }
                Gate::Record {
                    run_id, revision, ..
                } => {
                    kinds.push("r");
                    runs.push(run_id.as_str());
                    numbers.push(i64::from(*revision));
                    epochs.push(0);
                }
            }
        }
        let rows = self
            .query(
                "check gates",
                "SELECT CASE WHEN g.kind = 'j'
                     THEN EXISTS (SELECT 1 FROM journal
                                  WHERE run_id = g.run AND seq = g.n AND epoch = g.epoch)
                     ELSE EXISTS (SELECT 1 FROM runs WHERE id = g.run AND revision >= g.n) END
                 FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])
                     WITH ORDINALITY AS g(kind, run, n, epoch, i)
                 ORDER BY g.i",
                &[&kinds, &runs, &numbers, &epochs],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    async fn gate_open(&self, gate: &Gate) -> Result<bool, StoreError> {
        let rows = match gate {
            Gate::Journal { run_id, seq, epoch } => {
                // The entry written under the epoch that staged the events: not a later
                // owner's, made after the first one's was lost.
                self.query(
                    "check a gate",
                    "SELECT EXISTS (SELECT 1 FROM journal
                                    WHERE run_id = $1 AND seq = $2 AND epoch = $3)",
                    &[
                        &run_id.as_str(),
                        &(*seq as i32),
                        &i64::try_from(*epoch).unwrap_or(i64::MAX),
                    ],
                )
                .await?
            }
            Gate::Record {
                run_id, revision, ..
            } => {
                self.query(
                    "check a gate",
                    "SELECT EXISTS (SELECT 1 FROM runs WHERE id = $1 AND revision >= $2)",
                    &[&run_id.as_str(), &i64::from(*revision)],
                )
                .await?
            }
        };
        Ok(rows[0].get(0))
    }

    async fn enqueue(&self, delivery: &Delivery) -> Result<(), StoreError> {
        self.execute(
            "queue a delivery",
            "INSERT INTO queue (subscription, due_ms, event_id, delivery) VALUES ($1, $2, $3, $4)
             ON CONFLICT (subscription, due_ms, event_id) DO UPDATE SET delivery = excluded.delivery",
            &[
                &delivery.subscription,
                &ms(delivery.due_ms),
                &delivery.event.id,
                &Json(delivery),
            ],
        )
        .await?;
        Ok(())
    }

    async fn due(
        &self,
        subscription: &str,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        // Rows another node is taking now are skipped, like those it took a while ago.
        let rows = self
            .query(
                "read a queue",
                "UPDATE queue q SET taken_until = flowhost_now_ms() + $4, taken_by = $5
                 FROM (SELECT subscription, due_ms, event_id FROM queue
                       WHERE subscription = $1 AND due_ms <= $2
                           AND (taken_until < flowhost_now_ms() OR taken_by = $5)
                       ORDER BY due_ms, event_id LIMIT $3
                       FOR UPDATE SKIP LOCKED) t
                 WHERE (q.subscription, q.due_ms, q.event_id)
                     = (t.subscription, t.due_ms, t.event_id)
                 RETURNING q.due_ms, q.event_id, q.delivery",
                &[
                    &subscription,
                    &ms(now_ms),
                    &bigint(limit),
                    &i64::try_from(DELIVERY_HOLD.as_millis()).unwrap_or(i64::MAX),
                    &self.incarnation,
                ],
            )
            .await?;
        let mut due: Vec<(i64, Delivery)> = rows
            .iter()
            .map(|row| Ok((row.get(0), decode(row.get(1), row.get(2))?)))
            .collect::<Result<_, StoreError>>()?;
        due.sort_by(|(a, x), (b, y)| (a, &x.event.id).cmp(&(b, &y.event.id)));
        Ok(due.into_iter().map(|(_, delivery)| delivery).collect())
    }

    async fn next_due(&self, subscription: &str) -> Result<Option<u64>, StoreError> {
        let rows = self
            .query(
                "read a queue",
                // Another node's, while it holds them: not before its hold ends (by
                // PostgreSQL's clock, near enough to the nodes').
                "SELECT min(CASE WHEN taken_by IS DISTINCT FROM $2
                                     AND taken_until >= flowhost_now_ms()
                                 THEN greatest(due_ms, taken_until) ELSE due_ms END)
                 FROM queue WHERE subscription = $1",
                &[&subscription, &self.incarnation],
            )
            .await?;
        Ok(rows[0]
            .get::<_, Option<i64>>(0)
            .map(|due| due.max(0) as u64))
    }

    async fn queue_depth(&self, subscription: &str) -> Result<usize, StoreError> {
        let rows = self
            .query(
                "count a queue",
                "SELECT count(*) FROM queue WHERE subscription = $1",
                &[&subscription],
            )
            .await?;
        Ok(count(rows[0].get(0)))
    }

    async fn dequeue(&self, delivery: &Delivery) -> Result<(), StoreError> {
        self.execute(
            "dequeue a delivery",
            "DELETE FROM queue WHERE subscription = $1 AND due_ms = $2 AND event_id = $3",
            &[
                &delivery.subscription,
                &ms(delivery.due_ms),
                &delivery.event.id,
            ],
        )
        .await?;
        Ok(())
    }

    async fn bury(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        self.execute(
            "store a dead letter",
            "INSERT INTO dead_letters (id, letter) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET letter = excluded.letter",
            &[&letter.id, &Json(letter)],
        )
        .await?;
        Ok(())
    }

    async fn dead_letters(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let sql = format!(
            "SELECT id, letter FROM dead_letters WHERE {}
             ORDER BY id DESC LIMIT $2",
            cursor_condition(cursor, "id < $1")
        );
        let rows = self
            .query("read dead letters", &sql, &[&cursor, &bigint(limit)])
            .await?;
        rows.iter()
            .map(|row| decode(row.get(0), row.get(1)))
            .collect()
    }

    async fn dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        let row = self
            .query_opt(
                "read a dead letter",
                "SELECT letter FROM dead_letters WHERE id = $1",
                &[&id],
            )
            .await?;
        row.map(|row| decode(id, row.get(0))).transpose()
    }

    async fn exhume(&self, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        let row = self
            .query_opt(
                "remove a dead letter",
                "DELETE FROM dead_letters WHERE id = $1 RETURNING letter",
                &[&id],
            )
            .await?;
        row.map(|row| decode(id, row.get(0))).transpose()
    }

    async fn dead_letters_before(
        &self,
        cutoff_ms: u64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        // Ids are ULIDs: their text sorts as the time they were given up on. The bound is
        // the smallest id of the cutoff's ms.
        let bound = ulid::Ulid::from_parts(cutoff_ms, 0).to_string();
        let rows = self
            .query(
                "read dead letters",
                "SELECT id FROM dead_letters WHERE id < $1 ORDER BY id LIMIT $2",
                &[&bound, &bigint(limit)],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::postgres::ScratchDatabase;

    /// A page after a cursor starts its index scan at the cursor, in the plan made once.
    #[tokio::test]
    async fn a_page_of_the_outbox_starts_at_its_cursor_in_the_plan_made_once() {
        let plan = ScratchDatabase::create()
            .await
            .generic_plan(&super::pending(Some("x")), "text, bigint", "'x', 10")
            .await;
        assert!(plan.contains("Index Cond: (event_id > $1)"), "{plan}");
    }
}
