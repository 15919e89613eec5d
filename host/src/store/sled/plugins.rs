//! [`PluginStore`] on [`SledStore`]: components by digest, versions and heads by name.

use async_trait::async_trait;

use super::{SledStore, decode, encode, io, name_prefix, versions_of};
use crate::model::{Head, PluginVersion};
use crate::store::{PluginStore, StoreError};

fn version_key(name: &str, digest: &str) -> Vec<u8> {
    let mut key = name_prefix(name);
    key.extend_from_slice(digest.as_bytes());
    key
}

#[async_trait]
impl PluginStore for SledStore {
    async fn put_component(&self, digest: &str, wasm: &[u8]) -> Result<(), StoreError> {
        if !self
            .components
            .contains_key(digest)
            .map_err(io("plugin registry"))?
        {
            self.components
                .insert(digest, wasm)
                .map_err(io("plugin registry"))?;
        }
        Ok(())
    }

    async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .components
            .get(digest)
            .map_err(io("plugin registry"))?
            .map(|bytes| bytes.to_vec()))
    }

    async fn put_version(&self, version: &PluginVersion) -> Result<(), StoreError> {
        self.plugin_versions
            .insert(
                version_key(&version.name, &version.digest),
                encode(version)?,
            )
            .map_err(io("plugin registry"))?;
        Ok(())
    }

    async fn version(&self, name: &str, digest: &str) -> Result<Option<PluginVersion>, StoreError> {
        let key = version_key(name, digest);
        self.plugin_versions
            .get(&key)
            .map_err(io("plugin registry"))?
            .map(|value| decode(&key, &value))
            .transpose()
    }

    async fn versions(&self, name: &str) -> Result<Vec<PluginVersion>, StoreError> {
        versions_of(&self.plugin_versions, name, |v: &PluginVersion| {
            v.registered_ms
        })
    }

    async fn remove_version(&self, name: &str, digest: &str) -> Result<bool, StoreError> {
        self.plugin_versions
            .remove(version_key(name, digest))
            .map_err(io("plugin registry"))?;
        // Components are shared between names: keep it while any version uses it. The
        // versions tree holds a handful of entries per plugin, so a scan is cheap.
        for item in self.plugin_versions.iter() {
            let (key, _) = item.map_err(io("plugin registry"))?;
            if key.ends_with(digest.as_bytes()) {
                return Ok(false);
            }
        }
        self.components
            .remove(digest)
            .map_err(io("plugin registry"))?;
        Ok(true)
    }

    async fn head(&self, name: &str) -> Result<Option<Head>, StoreError> {
        self.plugin_heads
            .get(name)
            .map_err(io("plugin registry"))?
            .map(|value| decode(name.as_bytes(), &value))
            .transpose()
    }

    async fn put_head(&self, name: &str, head: &Head) -> Result<(), StoreError> {
        self.plugin_heads
            .insert(name, encode(head)?)
            .map_err(io("plugin registry"))?;
        Ok(())
    }
}
