//! [`PluginStore`] on [`PgStore`]: components by digest, versions and heads by name.

use async_trait::async_trait;
use tokio_postgres::types::Json;

use super::{PgStore, decode, ms, pg};
use crate::model::{Head, PluginVersion};
use crate::store::{PluginStore, StoreError};

#[async_trait]
impl PluginStore for PgStore {
    async fn put_component(&self, digest: &str, wasm: &[u8]) -> Result<(), StoreError> {
        let op = "store a component";
        self.execute(
            op,
            "INSERT INTO components (digest, wasm) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&digest, &wasm],
        )
        .await?;
        Ok(())
    }

    async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let op = "read a component";
        let row = self
            .query_opt(
                op,
                "SELECT wasm FROM components WHERE digest = $1",
                &[&digest],
            )
            .await?;
        Ok(row.map(|row| row.get(0)))
    }

    async fn put_version(&self, version: &PluginVersion) -> Result<(), StoreError> {
        let op = "store a plugin version";
        self.execute(
            op,
            "INSERT INTO plugin_versions (name, digest, registered_ms, version)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name, digest)
                 DO UPDATE SET registered_ms = excluded.registered_ms, version = excluded.version",
            &[
                &version.name,
                &version.digest,
                &ms(version.registered_ms),
                &Json(version),
            ],
        )
        .await?;
        Ok(())
    }

    async fn version(&self, name: &str, digest: &str) -> Result<Option<PluginVersion>, StoreError> {
        self.version_in("plugin_versions", name, digest).await
    }

    async fn versions(&self, name: &str) -> Result<Vec<PluginVersion>, StoreError> {
        self.versions_in("plugin_versions", name).await
    }

    async fn remove_version(&self, name: &str, digest: &str) -> Result<bool, StoreError> {
        let op = "remove a plugin version";
        let mut client = self.client(op).await?;
        let tx = client.transaction().await.map_err(pg(op))?;
        // The component's row is locked first, so that a version of it registered meanwhile
        // (another name, another node) either is seen below or waits for this to commit
        // and then stores the component again.
        tx.execute(
            "SELECT 1 FROM components WHERE digest = $1 FOR UPDATE",
            &[&digest],
        )
        .await
        .map_err(pg(op))?;
        tx.execute(
            "DELETE FROM plugin_versions WHERE name = $1 AND digest = $2",
            &[&name, &digest],
        )
        .await
        .map_err(pg(op))?;
        let removed = tx
            .execute(
                "DELETE FROM components WHERE digest = $1
                 AND NOT EXISTS (SELECT 1 FROM plugin_versions WHERE digest = $1)",
                &[&digest],
            )
            .await
            .map_err(pg(op))?;
        tx.commit().await.map_err(pg(op))?;
        Ok(removed > 0)
    }

    async fn head(&self, name: &str) -> Result<Option<Head>, StoreError> {
        let op = "read a plugin head";
        let row = self
            .query_opt(
                op,
                "SELECT head FROM plugin_heads WHERE name = $1",
                &[&name],
            )
            .await?;
        row.map(|row| decode(name, row.get(0))).transpose()
    }

    async fn put_head(&self, name: &str, head: &Head) -> Result<(), StoreError> {
        self.put_head_in("plugin_heads", name, head).await
    }
}
