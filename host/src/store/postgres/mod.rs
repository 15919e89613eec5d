//! The shared store on PostgreSQL, for several nodes: what one node writes, every node
//! reads: runs ([`RunStore`](super::RunStore)), events ([`EventStore`](super::EventStore))
//! and the registry ([`PluginStore`](super::PluginStore),
//! [`WorkflowStore`](super::WorkflowStore)), and the nodes ([`NodeStore`](super::NodeStore)).
//!
//! Each node connects with its own id: the runs it creates or claims are stored with it
//! as their owner, and with this connection's incarnation (a ULID, new with each process,
//! so that a process of the same node left paused is not taken for the new one), under an
//! epoch that grows with every new owner. Every write of a run (its record, a journal
//! entry, a gated outbox entry, what it awaits) names the epoch, is refused unless this
//! incarnation holds the run, and holds the run's row for it (`FOR KEY SHARE`), and a
//! claim locks the row (`FOR UPDATE`) before it moves the epoch: a write is either in before the claim, and seen by the new owner, or refused
//! ([`StoreError::Fenced`](super::StoreError::Fenced)). A claim then drops the outbox
//! entries of the run whose gates are closed: events its earlier owners staged for writes
//! that never happened.
//!
//! Connections come from a pool (deadpool-postgres over tokio-postgres) of `pool-size`;
//! two more write journal entries, many runs' in one statement ([`journal`]), and one
//! listens for registry changes. The statements a connection keeps prepared (deadpool's
//! statement cache) are planned once ([`SESSION`]). The schema is applied at connection
//! by [`migrations`], under an advisory lock.
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `components` | SHA-256, hex | a plugin component's bytes |
//! | `plugin_versions` | plugin name, digest | a [`PluginVersion`](crate::model::PluginVersion) |
//! | `plugin_heads` | plugin name | a [`Head`](crate::model::Head) |
//! | `workflow_versions` | workflow name, digest | a [`WorkflowVersion`](crate::model::WorkflowVersion) |
//! | `workflow_heads` | workflow name | a [`Head`](crate::model::Head) |
//! | `schedule_marks` | workflow name | the latest firing of its schedule that was started (ms) |
//! | `runs` | run id | the [`Run`](crate::model::Run), with the columns listings, pins, retention and saves need; its idempotency key (unique per workflow); its owner and lease epoch |
//! | `journal` | run id, sequence | a [`JournalEntry`](crate::model::JournalEntry), with the epoch it was written under |
//! | `inbox` | run id, message id (a ULID) | a [`Message`](crate::model::Message) |
//! | `outbox` | event id (a ULID) | an [`OutboxEntry`](crate::model::OutboxEntry), the run its gate waits on, and which relay took it until when |
//! | `queue` | subscription, due ms, event id | a [`Delivery`](crate::model::Delivery) of the embedded transport, and which node took it until when |
//! | `awaits` | run id, topic | what a waiting run awaits: the topic, and the event's path and value it correlates on |
//! | `dead_letters` | dead letter id (a ULID) | a [`DeadLetter`](crate::model::DeadLetter) |
//! | `nodes` | node id | its address, version, start, last heartbeat, lease end (ms, PostgreSQL's clock) |
//! | `flowhost_schema` | version | the migrations applied, when |
//!
//! Each write is one statement or one transaction, committed before it returns and visible
//! at once, to every node, but committed asynchronously (`synchronous_commit = off`): it is
//! durable after a [`Flush::flush`] that started after it, as on sled. A flush is one
//! transaction that writes this store's row of `flush_marks` and commits synchronously,
//! which makes PostgreSQL flush its WAL up to that commit, and so every write committed
//! before it; concurrent callers share one (group commit), from a task of its own.

mod events;
mod journal;
mod migrations;
mod nodes;
mod plugins;
mod runs;
mod scratch;
mod workflows;

use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

pub use self::migrations::SCHEMA;
pub use self::scratch::ScratchDatabase;
use super::{BoxFuture, Flush, StoreError};
use crate::telemetry::metrics::{STORE_FLUSH_BATCH, STORE_FLUSH_DURATION};

/// The PostgreSQL-backed store.
pub struct PgStore {
    pool: Pool,
    /// How to connect, for the connection that listens for registry changes.
    config: tokio_postgres::Config,
    /// This node's id: the owner of the runs it creates and claims.
    node: String,
    /// This process's incarnation of the node: a run is driven only by the incarnation
    /// that created or claimed it.
    incarnation: String,
    /// Requests to the group-commit task.
    flushes: mpsc::UnboundedSender<FlushWaiter>,
    /// Journal entries to the task that writes them in batches.
    journal: mpsc::UnboundedSender<journal::Append>,
}

type FlushWaiter = oneshot::Sender<Result<(), FlushFailure>>;

/// Why a flush failed, shared by every caller it served.
type FlushFailure = Arc<dyn std::error::Error + Send + Sync>;

impl PgStore {
    /// Connects node `node` to the database `url` names (`postgres://user@host:port/db`),
    /// with up to `pool_size` connections, and brings its schema up to date.
    pub async fn connect(url: &str, pool_size: usize, node: &str) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::unavailable("read the PostgreSQL url", e))?;
        let pool = pool_of(&config, pool_size.max(1), "")?;
        let mut client = pool
            .get()
            .await
            .map_err(|e| StoreError::unavailable("migrate the schema", e))?;
        migrations::apply(&mut client).await?;
        // This instance's row of `flush_marks`; rows of instances gone a day are dropped.
        let id = ulid::Ulid::new().to_string();
        client
            .batch_execute("DELETE FROM flush_marks WHERE at < now() - interval '1 day'")
            .await
            .map_err(pg("clear old flush marks"))?;
        drop(client);
        let (flushes, requests) = mpsc::unbounded_channel();
        tokio::spawn(group_commit(pool.clone(), id, requests));
        let incarnation = ulid::Ulid::new().to_string();
        let (journal, entries) = mpsc::unbounded_channel();
        let writers = pool_of(
            &config,
            journal::WRITERS,
            &format!("-c lock_timeout={}", journal::LOCK_TIMEOUT),
        )?;
        tokio::spawn(journal::write_queued(
            writers,
            node.to_owned(),
            incarnation.clone(),
            entries,
        ));
        Ok(Self {
            pool,
            config,
            node: node.to_owned(),
            incarnation,
            flushes,
            journal,
        })
    }

    /// One version of `name` in `table` (`plugin_versions`, `workflow_versions`).
    async fn version_in<T: serde::de::DeserializeOwned>(
        &self,
        table: &'static str,
        name: &str,
        digest: &str,
    ) -> Result<Option<T>, StoreError> {
        let op = "read a version";
        let row = self
            .query_opt(
                op,
                &format!("SELECT version FROM {table} WHERE name = $1 AND digest = $2"),
                &[&name, &digest],
            )
            .await?;
        row.map(|row| decode(&format!("{name}/{digest}"), row.get(0)))
            .transpose()
    }

    /// Every version of `name` in `table`, oldest registration first.
    async fn versions_in<T: serde::de::DeserializeOwned>(
        &self,
        table: &'static str,
        name: &str,
    ) -> Result<Vec<T>, StoreError> {
        let op = "read versions";
        let rows = self
            .query(
                op,
                &format!(
                    "SELECT digest, version FROM {table} WHERE name = $1
                     ORDER BY registered_ms, digest"
                ),
                &[&name],
            )
            .await?;
        rows.into_iter()
            .map(|row| decode(&format!("{name}/{}", row.get::<_, &str>(0)), row.get(1)))
            .collect()
    }

    /// Replaces the head of `name` in `table` (`plugin_heads`, `workflow_heads`).
    async fn put_head_in(
        &self,
        table: &'static str,
        name: &str,
        head: &crate::model::Head,
    ) -> Result<(), StoreError> {
        let op = "store a head";
        self.execute(
            op,
            &format!(
                "INSERT INTO {table} (name, head) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET head = excluded.head"
            ),
            &[&name, &tokio_postgres::types::Json(head)],
        )
        .await?;
        Ok(())
    }

    // Statements are prepared once per connection and kept (deadpool's statement cache):
    // a statement sent as text is parsed and planned every time, which cost PostgreSQL more
    // than running it.

    /// Runs one statement of `op`; how many rows it changed.
    async fn execute(
        &self,
        op: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let client = self.client(op).await?;
        let statement = client.prepare_cached(sql).await.map_err(pg(op))?;
        client.execute(&statement, params).await.map_err(pg(op))
    }

    /// The rows of one query of `op`.
    async fn query(
        &self,
        op: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client(op).await?;
        let statement = client.prepare_cached(sql).await.map_err(pg(op))?;
        client.query(&statement, params).await.map_err(pg(op))
    }

    /// The one row of one query of `op`.
    async fn query_one(
        &self,
        op: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, StoreError> {
        let client = self.client(op).await?;
        let statement = client.prepare_cached(sql).await.map_err(pg(op))?;
        client.query_one(&statement, params).await.map_err(pg(op))
    }

    /// The row of one query of `op`, if there is one.
    async fn query_opt(
        &self,
        op: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        let client = self.client(op).await?;
        let statement = client.prepare_cached(sql).await.map_err(pg(op))?;
        client.query_opt(&statement, params).await.map_err(pg(op))
    }

    /// A pooled connection, for `op`.
    async fn client(&self, op: &'static str) -> Result<Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::unavailable(op, e))
    }
}

/// The settings of every connection of the store's:
/// - writes commit without waiting for the disk (`synchronous_commit = off`); a flush
///   waits, for all of them at once;
/// - each statement is planned once per connection (`plan_cache_mode =
///   force_generic_plan`): PostgreSQL planned most of them anew at every execution (its
///   custom plans, which it keeps when they look cheaper), a fifth of its backends' CPU
///   under load. A plan made once cannot use what a value is, so the statements do not
///   ask it to: no `$1 IS NULL OR column > $1` (one statement with a cursor, one
///   without), constant lists written in, and keys looked up in a lateral subquery where
///   a join would be planned as a scan of a table without statistics yet. A plan is made
///   again when the statistics of its tables change (autovacuum's `ANALYZE`).
const SESSION: &str = "-c synchronous_commit=off -c plan_cache_mode=force_generic_plan";

/// A pool of up to `size` connections to `config`'s database, with [`SESSION`]'s settings,
/// `more`, and whatever options `config` had.
fn pool_of(config: &tokio_postgres::Config, size: usize, more: &str) -> Result<Pool, StoreError> {
    let mut config = config.clone();
    let given = config.get_options().unwrap_or_default();
    config.options(format!("{given} {SESSION} {more}").trim());
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .build()
        .map_err(|e| StoreError::unavailable("build the connection pool", e))
}

impl Flush for PgStore {
    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let stopped = || StoreError::unavailable("flush", "the commit task stopped");
            let (tx, rx) = oneshot::channel();
            self.flushes.send(tx).map_err(|_| stopped())?;
            rx.await
                .map_err(|_| stopped())?
                .map_err(|e| StoreError::unavailable("flush", e))
        })
    }
}

/// Makes every write committed so far durable, once for every waiter queued when the
/// previous flush ended; ends when the store is dropped.
async fn group_commit(pool: Pool, id: String, mut requests: mpsc::UnboundedReceiver<FlushWaiter>) {
    while let Some(first) = requests.recv().await {
        let mut waiters = vec![first];
        while let Ok(more) = requests.try_recv() {
            waiters.push(more);
        }
        let started = std::time::Instant::now();
        let result = flush_once(&pool, &id).await;
        metrics::histogram!(STORE_FLUSH_DURATION).record(started.elapsed());
        metrics::histogram!(STORE_FLUSH_BATCH).record(waiters.len() as f64);
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
    }
}

/// One synchronous commit of store `id`'s flush mark. A transaction of tokio-postgres's, so
/// that one that fails half-way is rolled back, never handed back to the pool open.
async fn flush_once(pool: &Pool, id: &str) -> Result<(), FlushFailure> {
    let shared = |e: tokio_postgres::Error| Arc::new(e) as FlushFailure;
    let mut client = pool.get().await.map_err(|e| Arc::new(e) as FlushFailure)?;
    let tx = client.transaction().await.map_err(shared)?;
    tx.batch_execute("SET LOCAL synchronous_commit = on")
        .await
        .map_err(shared)?;
    tx.execute(
        "INSERT INTO flush_marks (store, flushes) VALUES ($1, 1)
         ON CONFLICT (store) DO UPDATE SET flushes = flush_marks.flushes + 1, at = now()",
        &[&id],
    )
    .await
    .map_err(shared)?;
    tx.commit().await.map_err(shared)
}

/// Maps a PostgreSQL error of `op` to a [`StoreError`]: data PostgreSQL refuses (class 22,
/// a data exception such as a NUL in JSON; class 54, over a limit such as an index row's
/// size) is [`StoreError::Rejected`], for a retry would be refused again; the rest (the
/// connection, the server going away) may pass.
fn pg(op: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| {
        if refused(&e) {
            StoreError::Rejected {
                op,
                cause: Box::new(e),
            }
        } else {
            StoreError::unavailable(op, e)
        }
    }
}

/// Whether PostgreSQL refused the data itself: a data exception (class 22) or a limit
/// (class 54).
fn refused(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|code| matches!(&code.code()[..2], "22" | "54"))
}

/// A record read back from a `jsonb` column, or [`StoreError::Corrupt`] naming `key`.
fn decode<T: serde::de::DeserializeOwned>(
    key: &str,
    value: serde_json::Value,
) -> Result<T, StoreError> {
    serde_json::from_value(value).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        cause: Box::new(e),
    })
}

/// A time in ms as PostgreSQL's `bigint`.
fn ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
