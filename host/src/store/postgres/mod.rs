//! The shared store on PostgreSQL, for several nodes: what one node writes, every node
//! reads: runs ([`RunStore`](super::RunStore)), events ([`EventStore`](super::EventStore))
//! and the registry ([`PluginStore`](super::PluginStore),
//! [`WorkflowStore`](super::WorkflowStore)). Leases and fencing follow.
//!
//! Connections come from a pool (deadpool-postgres over tokio-postgres). The schema is
//! applied at connection by [`migrations`], under an advisory lock.
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `components` | SHA-256, hex | a plugin component's bytes |
//! | `plugin_versions` | plugin name, digest | a [`PluginVersion`](crate::model::PluginVersion) |
//! | `plugin_heads` | plugin name | a [`Head`](crate::model::Head) |
//! | `workflow_versions` | workflow name, digest | a [`WorkflowVersion`](crate::model::WorkflowVersion) |
//! | `workflow_heads` | workflow name | a [`Head`](crate::model::Head) |
//! | `schedule_marks` | workflow name | the latest firing of its schedule that was started (ms) |
//! | `runs` | run id | the [`Run`](crate::model::Run), with the columns listings, pins, retention and saves need; its idempotency key (unique per workflow) |
//! | `journal` | run id, sequence | a [`JournalEntry`](crate::model::JournalEntry) |
//! | `inbox` | run id, message id (a ULID) | a [`Message`](crate::model::Message) |
//! | `outbox` | event id (a ULID) | an [`OutboxEntry`](crate::model::OutboxEntry) |
//! | `queue` | subscription, due ms, event id | a [`Delivery`](crate::model::Delivery) of the embedded transport |
//! | `dead_letters` | dead letter id (a ULID) | a [`DeadLetter`](crate::model::DeadLetter) |
//! | `flowhost_schema` | version | the migrations applied, when |
//!
//! Each write is one statement or one transaction, committed before it returns: durable
//! once it returns, so [`Flush::flush`] has nothing left to do.

mod events;
mod migrations;
mod plugins;
mod runs;
mod scratch;
mod workflows;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

pub use self::migrations::SCHEMA;
pub use self::scratch::ScratchDatabase;
use super::{BoxFuture, Flush, StoreError};

/// The PostgreSQL-backed store.
pub struct PgStore {
    pool: Pool,
}

impl PgStore {
    /// Connects to the database `url` names (`postgres://user@host:port/db`), with up to
    /// `pool_size` connections, and brings its schema up to date.
    pub async fn connect(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::unavailable("read the PostgreSQL url", e))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .build()
            .map_err(|e| StoreError::unavailable("build the connection pool", e))?;
        let store = Self { pool };
        let mut client = store.client("migrate the schema").await?;
        migrations::apply(&mut client).await?;
        Ok(store)
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

    /// Runs one statement of `op`; how many rows it changed.
    async fn execute(
        &self,
        op: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        self.client(op)
            .await?
            .execute(sql, params)
            .await
            .map_err(pg(op))
    }

    /// The rows of one query of `op`.
    async fn query(
        &self,
        op: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        self.client(op)
            .await?
            .query(sql, params)
            .await
            .map_err(pg(op))
    }

    /// The row of one query of `op`, if there is one.
    async fn query_opt(
        &self,
        op: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        self.client(op)
            .await?
            .query_opt(sql, params)
            .await
            .map_err(pg(op))
    }

    /// A pooled connection, for `op`.
    async fn client(&self, op: &'static str) -> Result<Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::unavailable(op, e))
    }
}

impl Flush for PgStore {
    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        // Every write committed before it returned.
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Maps a PostgreSQL error of `op` to a [`StoreError`].
fn pg(op: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| StoreError::unavailable(op, e)
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
