//! Plugin versions: components stored content-addressed, and which version each plugin
//! name runs.
//!
//! A version is the pair of a plugin name and the SHA-256 of its component: the bytes are
//! stored once per digest (two names may run the same component), the metadata once per
//! name and digest. Each name has a [`PluginHead`]: its current version and the versions
//! that were current before it, for rollback.
//!
//! Writes are ordered so that a crash never leaves a head pointing at a missing version:
//! bytes first, then the version, then the head. A crash may leave bytes or a version that
//! no head names; they are harmless and collected with the name's old versions.

use serde::{Deserialize, Serialize};

use super::{BoxFuture, StoreError};

/// Where a version came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionSource {
    /// The file the configuration names, read at start.
    Config,
    /// `PUT /v1/plugins/{name}`.
    Api,
    /// The configuration's file, rebuilt while the host ran (the directory watch).
    Watch,
}

/// What a version was granted when it was registered: the grants of its name in the
/// configuration. Calls always run with the configuration's current grants; this is the
/// record of what they were.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// Services it may call.
    pub services: Vec<String>,
    /// Topic patterns it may publish on.
    pub publish: Vec<String>,
    /// Its cache namespace.
    pub cache_namespace: String,
}

/// One version of a plugin, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginVersion {
    /// The plugin's name.
    pub name: String,
    /// SHA-256 of the component, hex: the version's identity.
    pub digest: String,
    /// A label the uploader chose (`1.4.2`, a commit), if any.
    pub label: Option<String>,
    /// The worlds the component implements: `step-plugin`, `handler-plugin`.
    pub worlds: Vec<String>,
    /// Size of the component in bytes.
    pub size: u64,
    /// When it was registered, ms since the Unix epoch.
    pub registered_ms: u64,
    /// How it was registered.
    pub source: VersionSource,
    /// Its grants then.
    pub grants: Grants,
}

/// Which version of a plugin is current, and which were before it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginHead {
    /// Digests that were made current, oldest first, each once; the last one is current.
    /// Rollback drops the last.
    pub history: Vec<String>,
    /// The digest of the configuration's file when it was last registered: at start, a
    /// file with this digest is not registered again, so that a version pushed since
    /// stays current across restarts.
    pub file_digest: Option<String>,
}

impl PluginHead {
    /// The current version's digest.
    pub fn current(&self) -> Option<&str> {
        self.history.last().map(String::as_str)
    }

    /// Makes `digest` current, moving it to the end of the history if it was there.
    pub fn make_current(&mut self, digest: &str) {
        self.history.retain(|d| d != digest);
        self.history.push(digest.to_owned());
    }
}

/// Storage of plugin components and versions.
///
/// Writes are visible at once and durable after a [`flush`](Self::flush) that started
/// after them, as with [`super::RunStore`].
pub trait PluginStore: Send + Sync {
    /// Stores a component under its digest, unless it is there already.
    fn put_component(&self, digest: &str, wasm: &[u8]) -> Result<(), StoreError>;

    /// The component with this digest.
    fn component(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores (or replaces) a version's metadata.
    fn put_version(&self, version: &PluginVersion) -> Result<(), StoreError>;

    /// One version of `name`.
    fn version(&self, name: &str, digest: &str) -> Result<Option<PluginVersion>, StoreError>;

    /// Every version of `name`, oldest registration first.
    fn versions(&self, name: &str) -> Result<Vec<PluginVersion>, StoreError>;

    /// Removes a version of `name`, and its component unless another version uses it;
    /// whether the component went too.
    fn remove_version(&self, name: &str, digest: &str) -> Result<bool, StoreError>;

    /// The head of `name`, if it has ever been registered.
    fn head(&self, name: &str) -> Result<Option<PluginHead>, StoreError>;

    /// Replaces the head of `name`.
    fn put_head(&self, name: &str, head: &PluginHead) -> Result<(), StoreError>;

    /// Makes every write that happened before this call durable (shared with the runs).
    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>>;
}
