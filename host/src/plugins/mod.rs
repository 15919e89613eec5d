//! The plugin registry: every configured plugin, loaded once at start.
//!
//! Loading is all or nothing: a missing file, a corrupt component or one that implements
//! neither world fails the whole load with an error naming the plugin and file, so the host
//! never starts half-configured. Versions and hot swap build on this registry.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Config;
use crate::runtime::{LoadError, Plugin, PluginSettings, Runtime};

/// Why the configured plugins could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The component file could not be read.
    #[error("plugins.{plugin}: cannot read `{}`: {source}", path.display())]
    Read {
        /// The plugin.
        plugin: String,
        /// Its file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a usable plugin.
    #[error("plugins.{plugin}: `{}`: {source}", path.display())]
    Load {
        /// The plugin.
        plugin: String,
        /// Its file.
        path: PathBuf,
        /// Why.
        source: LoadError,
    },
    /// The plugin's grants do not parse.
    #[error("plugins.{plugin}: {reason}")]
    Settings {
        /// The plugin.
        plugin: String,
        /// Why.
        reason: String,
    },
}

/// Loaded plugins by name.
#[derive(Default)]
pub struct PluginRegistry {
    plugins: BTreeMap<String, Arc<Plugin>>,
}

impl PluginRegistry {
    /// Loads every plugin in `config` into `runtime`.
    pub fn load(runtime: &Runtime, config: &Config) -> Result<Self, RegistryError> {
        let mut plugins = BTreeMap::new();
        for (name, plugin_config) in &config.plugins {
            let path = plugin_config.path.relative();
            let settings = PluginSettings::new(name, plugin_config, config).map_err(|reason| {
                RegistryError::Settings {
                    plugin: name.clone(),
                    reason,
                }
            })?;
            let wasm = std::fs::read(&path).map_err(|source| RegistryError::Read {
                plugin: name.clone(),
                path: path.clone(),
                source,
            })?;
            let plugin = runtime
                .load(settings, &wasm)
                .map_err(|source| RegistryError::Load {
                    plugin: name.clone(),
                    path,
                    source,
                })?;
            plugins.insert(name.clone(), Arc::new(plugin));
        }
        Ok(Self { plugins })
    }

    /// The plugin named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Plugin>> {
        self.plugins.get(name)
    }

    /// All plugins, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arc<Plugin>)> {
        self.plugins
            .iter()
            .map(|(name, plugin)| (name.as_str(), plugin))
    }
}
