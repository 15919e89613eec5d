//! The registry's configuration: `[registry]` and the `[plugins.<name>]` entries.

use std::collections::BTreeMap;
use std::time::Duration;

use figment::value::magic::RelativePathBuf;
use serde::{Deserialize, Serialize};

use crate::capabilities::events::{InvalidTopic, TopicPattern};
use crate::runtime::{PluginSettings, RuntimeConfig};

/// `[registry]`: versions and uploads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Watch the configured plugin files, and register a rebuilt one as the current
    /// version (the local development loop). Default true.
    pub watch: bool,
    /// Largest component `PUT /v1/plugins/{name}` accepts, in MiB. Default 128 (an
    /// interpreter-based component, Python's or JS's, weighs tens of MiB).
    pub max_upload_mib: usize,
    /// Versions kept per plugin; older ones that no run pins are collected. Default 10.
    pub keep_versions: usize,
    /// Public keys (`ed25519:<base64>`, from `flowhost keys generate`) by name. When any
    /// is set, every version the registry takes (an upload, a watched or configured file)
    /// must be signed by one of them (`flowhost plugins sign`), and a rollback only goes
    /// to a version one of them signed. Default none: signatures optional.
    pub trusted_keys: BTreeMap<String, String>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            watch: true,
            max_upload_mib: 128,
            keep_versions: 10,
            trusted_keys: BTreeMap::new(),
        }
    }
}

/// `[plugins.<name>]`: one plugin, its component and what it is granted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PluginConfig {
    /// The component file, relative to the configuration file.
    pub path: RelativePathBuf,
    /// Services it may call (names from `[services]`).
    #[serde(default)]
    pub services: Vec<String>,
    /// Topic patterns it may publish on: `*` matches one segment, `#` any number.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Cache namespace; plugins naming the same namespace share entries. Default: the
    /// plugin's own name.
    #[serde(default)]
    pub cache_namespace: Option<String>,
    /// Memory cap in MiB; default `runtime.memory-limit-mib`.
    #[serde(default)]
    pub memory_limit_mib: Option<u32>,
    /// Call deadline; default `runtime.call-timeout`.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// The plugin's own settings, read through the `config` interface.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

impl PluginConfig {
    /// The settings of plugin `name` configured so, with defaults from `runtime`; an error
    /// for a publish pattern that does not parse.
    pub fn settings(
        &self,
        name: &str,
        runtime: &RuntimeConfig,
    ) -> Result<PluginSettings, InvalidTopic> {
        let publish = self
            .publish
            .iter()
            .map(|p| TopicPattern::parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        let mib = self.memory_limit_mib.unwrap_or(runtime.memory_limit_mib);
        Ok(PluginSettings {
            name: name.into(),
            services: self.services.clone().into(),
            publish: publish.into(),
            cache_namespace: self.cache_namespace.as_deref().unwrap_or(name).into(),
            config: std::sync::Arc::new(self.config.clone()),
            memory_limit_bytes: mib as usize * 1024 * 1024,
            timeout: self.timeout.unwrap_or(runtime.call_timeout),
        })
    }
}
