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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Grants, VersionSource};
    use crate::store::Flush;

    fn version(name: &str, digest: &str, registered_ms: u64) -> PluginVersion {
        PluginVersion {
            name: name.into(),
            digest: digest.into(),
            label: None,
            worlds: vec!["step-plugin".into()],
            size: 3,
            registered_ms,
            source: VersionSource::Api,
            grants: Grants::default(),
        }
    }

    #[tokio::test]
    async fn a_component_shared_by_two_names_lives_until_its_last_version_goes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store.put_component("d1", b"abc").await.unwrap();
        store.put_version(&version("a", "d1", 2)).await.unwrap();
        store.put_version(&version("b", "d1", 1)).await.unwrap();
        store.put_version(&version("a", "d0", 1)).await.unwrap();
        let digests: Vec<_> = store
            .versions("a")
            .await
            .unwrap()
            .into_iter()
            .map(|v| v.digest)
            .collect();
        assert_eq!(digests, ["d0", "d1"], "oldest registration first");
        assert!(!store.remove_version("a", "d1").await.unwrap());
        assert_eq!(
            store.component("d1").await.unwrap().as_deref(),
            Some(&b"abc"[..])
        );
        assert!(store.remove_version("b", "d1").await.unwrap());
        assert_eq!(store.component("d1").await.unwrap(), None);
        assert!(store.version("b", "d1").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn heads_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            let mut head = Head::default();
            head.make_current("d1");
            head.make_current("d2");
            head.make_current("d1");
            store.put_head("a", &head).await.unwrap();
            store.flush().await.unwrap();
        }
        let store = SledStore::open(dir.path()).expect("dropping the store closed it");
        let head = store.head("a").await.unwrap().unwrap();
        assert_eq!(head.history, ["d2", "d1"]);
        assert_eq!(head.current(), Some("d1"));
        assert!(store.head("b").await.unwrap().is_none());
    }
}
