//! The shared store on PostgreSQL, for several nodes: what one node writes, every node
//! reads. Built up trait by trait; the registry ([`PluginStore`](super::PluginStore),
//! [`WorkflowStore`](super::WorkflowStore)) is here so far, runs and events follow.
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
//! | `flowhost_schema` | version | the migrations applied, when |
//!
//! Each write is one statement or one transaction, committed before it returns: durable
//! once it returns, so [`Flush::flush`] has nothing left to do.

mod migrations;
mod plugins;
mod workflows;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

pub use self::migrations::SCHEMA;
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
