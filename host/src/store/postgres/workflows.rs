//! [`WorkflowStore`] on [`PgStore`]: definition versions, heads and schedule marks by name.

use async_trait::async_trait;
use tokio_postgres::types::Json;

use super::{PgStore, decode, ms};
use crate::model::{Head, WorkflowVersion};
use crate::store::{StoreError, WorkflowStore};

#[async_trait]
impl WorkflowStore for PgStore {
    async fn put_workflow_version(&self, version: &WorkflowVersion) -> Result<(), StoreError> {
        let op = "store a workflow version";
        // Insert if absent: the first registration's time and source stand.
        self.execute(
            op,
            "INSERT INTO workflow_versions (name, digest, registered_ms, version)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
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

    async fn workflow_version(
        &self,
        name: &str,
        digest: &str,
    ) -> Result<Option<WorkflowVersion>, StoreError> {
        self.version_in("workflow_versions", name, digest).await
    }

    async fn workflow_versions(&self, name: &str) -> Result<Vec<WorkflowVersion>, StoreError> {
        self.versions_in("workflow_versions", name).await
    }

    async fn remove_workflow_version(&self, name: &str, digest: &str) -> Result<(), StoreError> {
        let op = "remove a workflow version";
        self.execute(
            op,
            "DELETE FROM workflow_versions WHERE name = $1 AND digest = $2",
            &[&name, &digest],
        )
        .await?;
        Ok(())
    }

    async fn workflow_heads(&self) -> Result<Vec<(String, Head)>, StoreError> {
        let op = "read workflow heads";
        let rows = self
            .query(
                op,
                "SELECT name, head FROM workflow_heads ORDER BY name",
                &[],
            )
            .await?;
        rows.into_iter()
            .map(|row| {
                let name: String = row.get(0);
                let head = decode(&name, row.get(1))?;
                Ok((name, head))
            })
            .collect()
    }

    async fn put_workflow_head(&self, name: &str, head: &Head) -> Result<(), StoreError> {
        self.put_head_in("workflow_heads", name, head).await
    }

    async fn schedule_mark(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let op = "read a schedule mark";
        let row = self
            .query_opt(
                op,
                "SELECT fired_ms FROM schedule_marks WHERE workflow = $1",
                &[&name],
            )
            .await?;
        Ok(row.map(|row| row.get::<_, i64>(0).max(0) as u64))
    }

    async fn put_schedule_mark(&self, name: &str, fired_ms: u64) -> Result<(), StoreError> {
        let op = "store a schedule mark";
        self.execute(
            op,
            "INSERT INTO schedule_marks (workflow, fired_ms) VALUES ($1, $2)
                 ON CONFLICT (workflow) DO UPDATE SET fired_ms = excluded.fired_ms",
            &[&name, &ms(fired_ms)],
        )
        .await?;
        Ok(())
    }
}
