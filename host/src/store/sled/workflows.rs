//! [`WorkflowStore`] on [`SledStore`]: definition versions and heads by name.

use async_trait::async_trait;

use super::{SledStore, decode, encode, io, name_prefix, versions_of};
use crate::model::{Head, WorkflowVersion};
use crate::store::{StoreError, WorkflowStore};

fn version_key(name: &str, digest: &str) -> Vec<u8> {
    let mut key = name_prefix(name);
    key.extend_from_slice(digest.as_bytes());
    key
}

#[async_trait]
impl WorkflowStore for SledStore {
    async fn put_workflow_version(&self, version: &WorkflowVersion) -> Result<(), StoreError> {
        let key = version_key(&version.name, &version.digest);
        // Insert if absent: the first registration's time and source stand.
        let _ = self
            .workflow_versions
            .compare_and_swap(key, None as Option<&[u8]>, Some(encode(version)?))
            .map_err(io("store a workflow version"))?;
        Ok(())
    }

    async fn workflow_version(
        &self,
        name: &str,
        digest: &str,
    ) -> Result<Option<WorkflowVersion>, StoreError> {
        let key = version_key(name, digest);
        self.workflow_versions
            .get(&key)
            .map_err(io("read a workflow version"))?
            .map(|value| decode(&key, &value))
            .transpose()
    }

    async fn workflow_versions(&self, name: &str) -> Result<Vec<WorkflowVersion>, StoreError> {
        versions_of(&self.workflow_versions, name, |v: &WorkflowVersion| {
            v.registered_ms
        })
    }

    async fn remove_workflow_version(&self, name: &str, digest: &str) -> Result<(), StoreError> {
        self.workflow_versions
            .remove(version_key(name, digest))
            .map_err(io("remove a workflow version"))?;
        Ok(())
    }

    async fn workflow_heads(&self) -> Result<Vec<(String, Head)>, StoreError> {
        self.workflow_heads
            .iter()
            .map(|item| {
                let (key, value) = item.map_err(io("read workflow heads"))?;
                Ok((
                    String::from_utf8_lossy(&key).into_owned(),
                    decode(&key, &value)?,
                ))
            })
            .collect()
    }

    async fn put_workflow_head(&self, name: &str, head: &Head) -> Result<(), StoreError> {
        self.workflow_heads
            .insert(name, encode(head)?)
            .map_err(io("store a workflow head"))?;
        Ok(())
    }

    async fn schedule_mark(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let mark = self
            .schedules
            .get(name)
            .map_err(io("read a schedule mark"))?;
        Ok(mark.and_then(|bytes| Some(u64::from_be_bytes(bytes.as_ref().try_into().ok()?))))
    }

    async fn put_schedule_mark(&self, name: &str, ms: u64) -> Result<(), StoreError> {
        self.schedules
            .insert(name, &ms.to_be_bytes())
            .map_err(io("store a schedule mark"))?;
        Ok(())
    }
}
