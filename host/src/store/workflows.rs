//! Workflow definitions, versioned as plugins are ([`WorkflowStore`]): each version stored
//! under its name and the digest of its canonical form, each name with a [`Head`].
//!
//! The version goes in before the head that names it, so a crash never leaves a head
//! pointing at a missing version.

use async_trait::async_trait;

use super::{Flush, StoreError};
use crate::model::{Head, WorkflowVersion};

/// Storage of workflow definition versions.
///
/// Writes are visible at once and durable after a [`Flush::flush`] that started after
/// them, as with [`super::RunStore`].
#[async_trait]
pub trait WorkflowStore: Flush {
    /// Stores a version, unless that name and digest is there already.
    async fn put_workflow_version(&self, version: &WorkflowVersion) -> Result<(), StoreError>;

    /// One version of `name`.
    async fn workflow_version(
        &self,
        name: &str,
        digest: &str,
    ) -> Result<Option<WorkflowVersion>, StoreError>;

    /// Every version of `name`, oldest registration first.
    async fn workflow_versions(&self, name: &str) -> Result<Vec<WorkflowVersion>, StoreError>;

    /// Removes a version of `name`.
    async fn remove_workflow_version(&self, name: &str, digest: &str) -> Result<(), StoreError>;

    /// Every workflow name that has a head, with it.
    async fn workflow_heads(&self) -> Result<Vec<(String, Head)>, StoreError>;

    /// Replaces the head of `name`.
    async fn put_workflow_head(&self, name: &str, head: &Head) -> Result<(), StoreError>;

    /// The time of the latest firing of `name`'s schedule that was started, ms since the
    /// Unix epoch; none before its first.
    async fn schedule_mark(&self, name: &str) -> Result<Option<u64>, StoreError>;

    /// Records that every firing of `name`'s schedule up to `ms` was started.
    async fn put_schedule_mark(&self, name: &str, ms: u64) -> Result<(), StoreError>;
}
