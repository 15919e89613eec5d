//! Plugin versions: components stored content-addressed, and which version each plugin
//! name runs ([`PluginStore`]).
//!
//! A version is the pair of a plugin name and the SHA-256 of its component: the bytes are
//! stored once per digest (two names may run the same component), the metadata once per
//! name and digest. Each name has a [`Head`]: its current version and the versions that
//! were current before it, for rollback.
//!
//! Writes are ordered so that a crash never leaves a head pointing at a missing version:
//! bytes first, then the version, then the head. A crash may leave bytes or a version that
//! no head names; they are harmless and collected with the name's old versions.

use async_trait::async_trait;

use super::{Flush, StoreError};
use crate::model::{Head, PluginVersion};

/// Storage of plugin components and versions.
///
/// Writes are visible at once and durable after a [`Flush::flush`] that started after
/// them, as with [`super::RunStore`].
#[async_trait]
pub trait PluginStore: Flush {
    /// Stores a component under its digest, unless it is there already.
    async fn put_component(&self, digest: &str, wasm: &[u8]) -> Result<(), StoreError>;

    /// The component with this digest.
    async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores (or replaces) a version's metadata.
    async fn put_version(&self, version: &PluginVersion) -> Result<(), StoreError>;

    /// One version of `name`.
    async fn version(&self, name: &str, digest: &str) -> Result<Option<PluginVersion>, StoreError>;

    /// Every version of `name`, oldest registration first.
    async fn versions(&self, name: &str) -> Result<Vec<PluginVersion>, StoreError>;

    /// Removes a version of `name`, and its component unless another version uses it;
    /// whether the component went too.
    async fn remove_version(&self, name: &str, digest: &str) -> Result<bool, StoreError>;

    /// The head of `name`, if it has ever been registered.
    async fn head(&self, name: &str) -> Result<Option<Head>, StoreError>;

    /// Replaces the head of `name`.
    async fn put_head(&self, name: &str, head: &Head) -> Result<(), StoreError>;
}
