//! The plugin registry: every version of every configured plugin, which one is current,
//! and the loaded code of the versions in use.
//!
//! Versions live in the [`PluginStore`], content-addressed by SHA-256. A plugin's name, its
//! grants and the worlds it is used as (a workflow step needs `step-plugin`, a subscription
//! `handler-plugin`) come from the configuration; its code comes from the registry:
//!
//! - at start, each configured file is registered unless it is the file registered last
//!   time, so that a version pushed since stays current across restarts;
//! - [`PluginRegistry::register`] (the API's `PUT`, and [`watch`] when a file is rebuilt)
//!   validates a component — a component, linkable, implementing every world its name is
//!   used as — before anything changes, stores it durably, then makes it current in one
//!   swap: a run or delivery that starts after that uses it, and nothing in flight is
//!   dropped;
//! - with `registry.trusted-keys` set, every one of those ways in takes only a version one
//!   of the keys signed ([`signing`]): an upload's signature comes in a header, a file's in
//!   `FILE.sig` beside it;
//! - [`PluginRegistry::rollback`] makes an earlier version current again (with trusted
//!   keys, only one they signed);
//! - [`PluginRegistry::delete`] and the collection of old versions (beyond
//!   `registry.keep-versions`) remove only versions no run pins.
//!
//! A run pins the versions that were current when it started (the saga engine records
//! them in the run) and runs every step and compensation on those, across swaps and
//! restarts: [`PluginRegistry::pinned`] loads an old version back from the store, and keeps
//! it in memory while any run holds it.

mod config;
pub mod signing;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, Weak};

use serde::Serialize;

pub use self::config::{PluginConfig, RegistryConfig};
use self::signing::{SigningError, TrustedKeys, read_signature, signature_path};
use crate::capabilities::events::InvalidTopic;
use crate::model::{Grants, Head, PluginVersion, SignedBy, VersionSource, now_ms};
use crate::runtime::compile::digest;
use crate::runtime::{LoadError, Plugin, PluginSettings, Runtime, RuntimeConfig, World};
use crate::store::{PinKind, PluginStore, RunStore, StoreError};

/// Why the registry refused or failed. Each message names the plugin.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A configured file could not be read.
    #[error("plugins.{plugin}: cannot read `{}`: {source}", path.display())]
    Read {
        /// The plugin.
        plugin: String,
        /// Its file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A configured file is not a usable plugin.
    #[error("plugins.{plugin}: `{}`: {source}", path.display())]
    Load {
        /// The plugin.
        plugin: String,
        /// Its file.
        path: PathBuf,
        /// Why.
        source: LoadError,
    },
    /// A configured plugin's publish grants do not parse.
    #[error("plugins.{plugin}.publish: {source}")]
    Settings {
        /// The plugin.
        plugin: String,
        /// Why.
        source: InvalidTopic,
    },
    /// No plugin of that name is configured.
    #[error(
        "no plugin `{0}` is configured: a plugin's grants come from the configuration, so add [plugins.{0}] first"
    )]
    UnknownPlugin(String),
    /// The component is larger than `registry.max-upload-mib`.
    #[error("plugin `{plugin}`: the component is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// The plugin.
        plugin: String,
        /// The component's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The component is not a usable plugin.
    #[error("plugin `{plugin}`: {source}")]
    Invalid {
        /// The plugin.
        plugin: String,
        /// Why.
        source: LoadError,
    },
    /// The component does not implement a world its name is used as.
    #[error("{key}: plugin `{plugin}` does not implement {world}; it implements [{}]", .has.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    WrongWorld {
        /// The plugin.
        plugin: String,
        /// The world it lacks.
        world: World,
        /// A configuration key that uses it as that world.
        key: String,
        /// The worlds it implements.
        has: Vec<World>,
    },
    /// The plugin has no version with that digest.
    #[error("plugin `{plugin}` has no version {digest}")]
    UnknownVersion {
        /// The plugin.
        plugin: String,
        /// The digest asked for.
        digest: String,
    },
    /// A rollback with nothing to roll back to.
    #[error("plugin `{0}` has no earlier version to roll back to")]
    NoEarlierVersion(String),
    /// The current version cannot be deleted.
    #[error(
        "version {digest} is the current version of plugin `{plugin}`: push or roll back to another first"
    )]
    IsCurrent {
        /// The plugin.
        plugin: String,
        /// The version.
        digest: String,
    },
    /// Runs still need the version.
    #[error(
        "version {digest} of plugin `{plugin}` is pinned by {runs} run(s) that may still call it"
    )]
    Pinned {
        /// The plugin.
        plugin: String,
        /// The version.
        digest: String,
        /// How many runs pin it.
        runs: usize,
    },
    /// A version a run or head names has no component in the store.
    #[error("plugin `{plugin}`: version {digest} is not in the registry's store")]
    Missing {
        /// The plugin.
        plugin: String,
        /// The version.
        digest: String,
    },
    /// The compiler failed in a way that says nothing about the component (it panicked).
    #[error("compiling plugin `{plugin}` failed in the host")]
    Compiler {
        /// The plugin.
        plugin: String,
        /// The compile task's failure.
        source: tokio::task::JoinError,
    },
    /// A signature is missing, wrong or by an untrusted key, or a trusted key does not
    /// parse (the message names the plugin or the key).
    #[error(transparent)]
    Signature(#[from] SigningError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A use of a plugin by the configuration: a workflow step needs a `step-plugin`, a
/// subscription a `handler-plugin`. A version must implement every world its name is used
/// as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    /// The plugin's name.
    pub plugin: String,
    /// The world the use needs.
    pub world: World,
    /// The configuration key that uses it, for errors
    /// (`workflows.checkout.steps.charge.plugin`).
    pub key: String,
}

/// A configured plugin: what the configuration says about its name.
struct Entry {
    settings: PluginSettings,
    grants: Grants,
    file: PathBuf,
    /// The worlds its name is used as, each with a configuration key that uses it so.
    uses: Vec<Use>,
}

/// The outcome of a registration.
#[derive(Debug, Clone)]
pub struct Registered {
    /// The version, now current.
    pub version: PluginVersion,
    /// Whether it was new to the registry (false when it was registered before, and was
    /// only made current again).
    pub new: bool,
    /// Whether the current version changed.
    pub changed: bool,
}

/// One plugin as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PluginView {
    /// The name.
    pub name: String,
    /// The current version's digest.
    pub current: String,
    /// The worlds its name is used as.
    pub used_as: Vec<String>,
    /// Its versions, newest registration first.
    pub versions: Vec<VersionView>,
}

/// One version as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct VersionView {
    /// The stored metadata.
    #[serde(flatten)]
    pub version: PluginVersion,
    /// Whether it is current.
    pub current: bool,
    /// Runs that pin it and may still call it.
    pub pinned_runs: usize,
}

/// The registry. Shared by the engine, the dispatcher, the API and the watch.
pub struct PluginRegistry {
    runtime: Arc<Runtime>,
    store: Arc<dyn PluginStore>,
    runs: Arc<dyn RunStore>,
    entries: BTreeMap<String, Entry>,
    /// The current version of each plugin. A std lock: read for a moment per run start,
    /// written for a moment per swap, never held across an `.await`.
    current: RwLock<HashMap<String, Arc<Plugin>>>,
    /// Earlier versions that runs still hold, by name and digest.
    loaded: Mutex<HashMap<(String, String), Weak<Plugin>>>,
    /// Held for reading from reading a new run's versions until the run is stored, and for
    /// writing by a swap ([`Self::current_versions`]). An async lock: the run is stored
    /// across an `.await`.
    pinning: tokio::sync::RwLock<()>,
    /// Serialises changes of heads: registrations, rollbacks, deletions.
    changes: tokio::sync::Mutex<()>,
    /// Versions another node made current that this one could not load (code it cannot
    /// compile, say), by name and digest: [`Self::refresh`] tries each once, not every pass.
    unloadable: Mutex<std::collections::HashSet<(String, String)>>,
    max_upload_bytes: usize,
    keep_versions: usize,
    /// `registry.trusted-keys`: when set, only versions they signed become current.
    trusted: TrustedKeys,
}

/// The current versions, with swaps held off: swaps wait until it is dropped.
pub struct CurrentVersions<'a> {
    versions: HashMap<String, Arc<Plugin>>,
    _pinning: tokio::sync::RwLockReadGuard<'a, ()>,
}

impl CurrentVersions<'_> {
    /// The current version of `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Plugin>> {
        self.versions.get(name)
    }
}

impl PluginRegistry {
    /// Opens the registry over `store`, registering each of `plugins`' files that changed
    /// since it was last registered, and loads every plugin's current version. Each must
    /// implement every world `uses` needs. Fails naming the plugin if a file is unreadable
    /// or not a usable plugin, or a current version does not implement a world its name is
    /// used as: the host never starts half-configured. Compiles on the calling thread
    /// (start-up has nothing else to do).
    pub async fn open(
        runtime: Arc<Runtime>,
        store: Arc<dyn PluginStore>,
        runs: Arc<dyn RunStore>,
        config: &RegistryConfig,
        plugins: &BTreeMap<String, PluginConfig>,
        uses: &[Use],
    ) -> Result<Self, RegistryError> {
        let registry = Self {
            entries: entries(plugins, uses, runtime.config())?,
            runtime,
            store,
            runs,
            current: RwLock::default(),
            loaded: Mutex::default(),
            unloadable: Mutex::default(),
            pinning: tokio::sync::RwLock::new(()),
            changes: tokio::sync::Mutex::new(()),
            max_upload_bytes: config.max_upload_mib.saturating_mul(1024 * 1024),
            keep_versions: config.keep_versions.max(1),
            trusted: TrustedKeys::parse(&config.trusted_keys)?,
        };
        for (name, entry) in &registry.entries {
            let wasm = read(name, entry)?;
            let file_digest = digest(&wasm);
            let head = registry.store.head(name).await?.unwrap_or_default();
            // The version current last time stays current, unless keys trusted now did
            // not sign it: then the file must be signed.
            let kept = match head.current() {
                Some(current) if head.config_digest.as_deref() == Some(file_digest.as_str()) => {
                    registry.trusted_version(name, current).await?
                }
                _ => false,
            };
            match head.current() {
                Some(current) if kept => {
                    let from_file = current == file_digest;
                    let bytes = if from_file {
                        wasm
                    } else {
                        registry.store.component(current).await?.ok_or_else(|| {
                            RegistryError::Missing {
                                plugin: name.clone(),
                                digest: current.to_owned(),
                            }
                        })?
                    };
                    let plugin = load_checked(&registry.runtime, name, entry, &bytes)
                        .map_err(|e| if from_file { in_file(e, entry) } else { e })?;
                    registry.swap(name, plugin).await;
                }
                _ => {
                    let signed_by = registry.check_file(name, entry, &file_digest)?;
                    let plugin = load_checked(&registry.runtime, name, entry, &wasm)
                        .map_err(|e| in_file(e, entry))?;
                    let version = Signed {
                        label: None,
                        source: VersionSource::Config,
                        signed_by,
                    };
                    registry.commit(name, entry, plugin, &wasm, version).await?;
                }
            }
        }
        Ok(registry)
    }

    /// The current version of `name`.
    pub fn current(&self, name: &str) -> Option<Arc<Plugin>> {
        self.current
            .read()
            .expect("registry lock")
            .get(name)
            .cloned()
    }

    /// The current versions, read-locked. The saga engine holds this from reading a new
    /// run's versions until the run is stored. A swap waits for it, so once a version has
    /// stopped being current every run that pins it is in the run store; deletion and
    /// collection (which hold `changes`, so that the version cannot become current again)
    /// then see every pin.
    pub async fn current_versions(&self) -> CurrentVersions<'_> {
        let pinning = self.pinning.read().await;
        CurrentVersions {
            versions: self.current.read().expect("registry lock").clone(),
            _pinning: pinning,
        }
    }

    /// Names of the configured plugins, with their files.
    pub fn files(&self) -> impl Iterator<Item = (&str, &PathBuf)> {
        self.entries
            .iter()
            .map(|(name, entry)| (name.as_str(), &entry.file))
    }

    /// Version `digest` of `name`: the current one, one in memory, or one loaded back from
    /// the store (compiled code comes from the compiled cache, so this takes milliseconds
    /// after the first time).
    pub async fn pinned(&self, name: &str, digest: &str) -> Result<Arc<Plugin>, RegistryError> {
        if let Some(plugin) = self.in_memory(name, digest) {
            return Ok(plugin);
        }
        let entry = self.entry(name)?;
        let wasm = self
            .store
            .component(digest)
            .await?
            .ok_or_else(|| RegistryError::Missing {
                plugin: name.to_owned(),
                digest: digest.to_owned(),
            })?;
        let plugin = self.compile(name, entry, wasm).await?;
        self.loaded.lock().expect("registry lock").insert(
            (name.to_owned(), digest.to_owned()),
            Arc::downgrade(&plugin),
        );
        Ok(plugin)
    }

    /// Makes current here what the store says is current (a push or rollback on another
    /// node sharing the store), loading each new current version from the store. Returns
    /// how many plugins changed. A version that cannot be loaded here (a store error, or
    /// code this node cannot compile) leaves its plugin as it is and the others change;
    /// the first such error is returned once all were looked at.
    pub async fn refresh(&self) -> Result<usize, RegistryError> {
        let _change = self.changes.lock().await;
        let (mut changed, mut failed) = (0, None);
        for name in self.entries.keys() {
            let Some(head) = self.store.head(name).await? else {
                continue;
            };
            let Some(digest) = head.current() else {
                continue;
            };
            if self.current(name).is_some_and(|p| p.digest() == digest) {
                continue;
            }
            let version = (name.clone(), digest.to_owned());
            if self
                .unloadable
                .lock()
                .expect("unloadable lock")
                .contains(&version)
            {
                continue;
            }
            let plugin = match self.pinned(name, digest).await {
                Ok(plugin) => plugin,
                // The store may come back: tried again next pass.
                Err(error @ RegistryError::Store(_)) => {
                    failed.get_or_insert(error);
                    continue;
                }
                Err(error) => {
                    self.unloadable
                        .lock()
                        .expect("unloadable lock")
                        .insert(version);
                    failed.get_or_insert(error);
                    continue;
                }
            };
            self.swap(name, plugin).await;
            tracing::info!(
                plugin = name.as_str(),
                digest = &digest[..12.min(digest.len())],
                "current version changed on another node"
            );
            changed += 1;
        }
        failed.map_or(Ok(changed), Err)
    }

    /// Validates `wasm` as a version of `name`, with its `signature` (see [`signing`]),
    /// and makes it current, durably, then in memory. Nothing changes if it is refused.
    /// Compiles on a blocking thread.
    pub async fn register(
        &self,
        name: &str,
        wasm: Vec<u8>,
        label: Option<String>,
        source: VersionSource,
        signature: Option<&str>,
    ) -> Result<Registered, RegistryError> {
        let prepared = self.prepare(name, wasm, label, source, signature).await?;
        self.commit_prepared(prepared).await
    }

    /// The first half of [`Self::register`]: `wasm` validated, its signature checked and
    /// its code compiled as a version of `name`, nothing stored or changed yet; what a
    /// canary gate replays before [`Self::commit_prepared`] makes it current.
    pub async fn prepare(
        &self,
        name: &str,
        wasm: Vec<u8>,
        label: Option<String>,
        source: VersionSource,
        signature: Option<&str>,
    ) -> Result<Prepared, RegistryError> {
        let entry = self.entry(name)?;
        if wasm.len() > self.max_upload_bytes {
            return Err(RegistryError::TooLarge {
                plugin: name.to_owned(),
                size: wasm.len(),
                limit: self.max_upload_bytes,
            });
        }
        let version_digest = digest(&wasm);
        // Before compiling: a refused signature costs nothing.
        let signed_by = self.trusted.check(name, &version_digest, signature)?;
        let plugin = match self.in_memory(name, &version_digest) {
            Some(plugin) => plugin,
            None => self.compile(name, entry, wasm.clone()).await?,
        };
        check_uses(name, entry, &plugin)?;
        Ok(Prepared {
            name: name.to_owned(),
            plugin,
            wasm,
            signed: Signed {
                label,
                source,
                signed_by,
            },
        })
    }

    /// The second half of [`Self::register`]: the prepared version stored durably and made
    /// current.
    pub async fn commit_prepared(&self, prepared: Prepared) -> Result<Registered, RegistryError> {
        let Prepared {
            name,
            plugin,
            wasm,
            signed,
        } = prepared;
        let entry = self.entry(&name)?;
        self.commit(&name, entry, plugin, &wasm, signed).await
    }

    /// The runtime its plugins run on.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Registers `name`'s configured file, with its signature file (`FILE.sig`) if there
    /// is one, if it changed since it was last registered: what the directory watch does.
    /// `None` when it had not changed.
    pub async fn register_file(&self, name: &str) -> Result<Option<Registered>, RegistryError> {
        let entry = self.entry(name)?;
        let wasm = read(name, entry)?;
        let head = self.store.head(name).await?.unwrap_or_default();
        if head.config_digest.as_deref() == Some(digest(&wasm).as_str()) {
            return Ok(None);
        }
        let signature = signature_of(name, entry)?;
        self.register(name, wasm, None, VersionSource::Watch, signature.as_deref())
            .await
            .map(Some)
    }

    /// Who signed the configured file of `name`, whose digest is `digest`, by its
    /// signature file; refused as an upload would be.
    fn check_file(
        &self,
        name: &str,
        entry: &Entry,
        digest: &str,
    ) -> Result<Option<SignedBy>, RegistryError> {
        let signature = signature_of(name, entry)?;
        Ok(self.trusted.check(name, digest, signature.as_deref())?)
    }

    /// Whether version `digest` of `name` may be current under the keys trusted now: any
    /// version without trusted keys, else one a trusted key signed.
    async fn trusted_version(&self, name: &str, digest: &str) -> Result<bool, RegistryError> {
        if !self.trusted.required() {
            return Ok(true);
        }
        let version = self.store.version(name, digest).await?;
        Ok(version.is_some_and(|v| {
            self.trusted
                .check_signed(name, v.signed_by.as_ref())
                .is_ok()
        }))
    }

    /// Makes `to`, or without it the version that was current before the current one,
    /// current again.
    pub async fn rollback(
        &self,
        name: &str,
        to: Option<&str>,
    ) -> Result<Registered, RegistryError> {
        let entry = self.entry(name)?;
        let _change = self.changes.lock().await;
        let mut head = self.store.head(name).await?.unwrap_or_default();
        let target = match to {
            Some(digest) => digest.to_owned(),
            None => {
                if head.history.len() < 2 {
                    return Err(RegistryError::NoEarlierVersion(name.to_owned()));
                }
                head.history.pop();
                head.current().expect("two entries").to_owned()
            }
        };
        let version = self.store.version(name, &target).await?.ok_or_else(|| {
            RegistryError::UnknownVersion {
                plugin: name.to_owned(),
                digest: target.clone(),
            }
        })?;
        self.trusted
            .check_signed(name, version.signed_by.as_ref())?;
        let plugin = self.pinned(name, &target).await?;
        check_uses(name, entry, &plugin)?;
        let changed = self.current(name).is_none_or(|p| p.digest() != target);
        head.make_current(&target);
        self.store.put_head(name, &head).await?;
        self.store.flush().await?;
        self.swap(name, plugin).await;
        tracing::info!(plugin = name, digest = &target[..12], "rolled back");
        Ok(Registered {
            version,
            new: false,
            changed,
        })
    }

    /// Removes version `digest` of `name`: refused for the current version and for one a
    /// run pins.
    pub async fn delete(&self, name: &str, digest: &str) -> Result<(), RegistryError> {
        self.entry(name)?;
        let _change = self.changes.lock().await;
        let mut head = self.store.head(name).await?.unwrap_or_default();
        if self.store.version(name, digest).await?.is_none() {
            return Err(RegistryError::UnknownVersion {
                plugin: name.to_owned(),
                digest: digest.to_owned(),
            });
        }
        if head.current() == Some(digest) {
            return Err(RegistryError::IsCurrent {
                plugin: name.to_owned(),
                digest: digest.to_owned(),
            });
        }
        // Not current, and it cannot become current while `changes` is held: every run
        // that pins it is in the run store already (see `current_versions`).
        let runs = pins_of(&self.runs.pins(PinKind::Plugin, name).await?, digest);
        if runs > 0 {
            return Err(RegistryError::Pinned {
                plugin: name.to_owned(),
                digest: digest.to_owned(),
                runs,
            });
        }
        if self.store.remove_version(name, digest).await? {
            self.runtime.forget(digest);
        }
        head.history.retain(|d| d != digest);
        self.store.put_head(name, &head).await?;
        self.store.flush().await?;
        tracing::info!(
            plugin = name,
            digest = &digest[..digest.len().min(12)],
            "version deleted"
        );
        Ok(())
    }

    /// The component of version `digest` of `name`: what a replay elsewhere loads.
    pub async fn component(&self, name: &str, digest: &str) -> Result<Vec<u8>, RegistryError> {
        self.entry(name)?;
        let unknown = || RegistryError::UnknownVersion {
            plugin: name.to_owned(),
            digest: digest.to_owned(),
        };
        if self.store.version(name, digest).await?.is_none() {
            return Err(unknown());
        }
        self.store.component(digest).await?.ok_or_else(unknown)
    }

    /// Every configured plugin, by name.
    pub async fn list(&self) -> Result<Vec<PluginView>, RegistryError> {
        let mut views = Vec::with_capacity(self.entries.len());
        for name in self.entries.keys() {
            views.push(self.view(name).await?);
        }
        Ok(views)
    }

    /// One plugin with its versions.
    pub async fn describe(&self, name: &str) -> Result<PluginView, RegistryError> {
        self.view(name).await
    }

    async fn view(&self, name: &str) -> Result<PluginView, RegistryError> {
        let entry = self.entry(name)?;
        let pins = self.runs.pins(PinKind::Plugin, name).await?;
        let current = self
            .current(name)
            .map(|p| p.digest().to_owned())
            .unwrap_or_default();
        let mut versions: Vec<VersionView> = self
            .store
            .versions(name)
            .await?
            .into_iter()
            .map(|version| VersionView {
                current: version.digest == current,
                pinned_runs: pins_of(&pins, &version.digest),
                version,
            })
            .collect();
        versions.reverse();
        let mut used_as: Vec<String> = entry.uses.iter().map(|u| u.world.to_string()).collect();
        used_as.dedup();
        Ok(PluginView {
            name: name.to_owned(),
            current,
            used_as,
            versions,
        })
    }

    fn entry(&self, name: &str) -> Result<&Entry, RegistryError> {
        self.entries
            .get(name)
            .ok_or_else(|| RegistryError::UnknownPlugin(name.to_owned()))
    }

    /// Version `digest` of `name` if it is loaded.
    fn in_memory(&self, name: &str, digest: &str) -> Option<Arc<Plugin>> {
        if let Some(current) = self.current(name)
            && current.digest() == digest
        {
            return Some(current);
        }
        let mut loaded = self.loaded.lock().expect("registry lock");
        let key = (name.to_owned(), digest.to_owned());
        let plugin = loaded.get(&key).and_then(Weak::upgrade);
        if plugin.is_none() {
            loaded.remove(&key);
        }
        plugin
    }

    /// Compiles `wasm` as a version of `name` on a blocking thread: a large component takes
    /// seconds, which must not stall the executor.
    async fn compile(
        &self,
        name: &str,
        entry: &Entry,
        wasm: Vec<u8>,
    ) -> Result<Arc<Plugin>, RegistryError> {
        let runtime = self.runtime.clone();
        let settings = entry.settings.clone();
        let loaded = tokio::task::spawn_blocking(move || runtime.load(settings, &wasm))
            .await
            .map_err(|source| RegistryError::Compiler {
                plugin: name.to_owned(),
                source,
            })?;
        loaded
            .map(Arc::new)
            .map_err(|source| RegistryError::Invalid {
                plugin: name.to_owned(),
                source,
            })
    }

    /// Stores a validated version durably, makes it current, and collects old versions.
    async fn commit(
        &self,
        name: &str,
        entry: &Entry,
        plugin: Arc<Plugin>,
        wasm: &[u8],
        signed: Signed,
    ) -> Result<Registered, RegistryError> {
        let Signed {
            label,
            source,
            signed_by,
        } = signed;
        let _change = self.changes.lock().await;
        let digest = plugin.digest().to_owned();
        let mut head = self.store.head(name).await?.unwrap_or_default();
        let existing = self.store.version(name, &digest).await?;
        let new = existing.is_none();
        let version = match existing {
            Some(mut version) => {
                let relabelled = label.is_some() && label != version.label;
                // A signature now checked is recorded, over an earlier one or none.
                let signed = signed_by.is_some() && signed_by != version.signed_by;
                if relabelled {
                    version.label = label;
                }
                if signed {
                    version.signed_by = signed_by;
                }
                if relabelled || signed {
                    self.store.put_version(&version).await?;
                }
                version
            }
            None => {
                let version = PluginVersion {
                    name: name.to_owned(),
                    digest: digest.clone(),
                    label,
                    worlds: plugin.worlds().iter().map(ToString::to_string).collect(),
                    size: wasm.len() as u64,
                    registered_ms: now_ms(),
                    source,
                    grants: entry.grants.clone(),
                    signed_by,
                };
                // The bytes before the version, the version before the head: a crash never
                // leaves a head naming what is not there.
                self.store.put_component(&digest, wasm).await?;
                self.store.put_version(&version).await?;
                version
            }
        };
        let changed = head.current() != Some(digest.as_str());
        head.make_current(&digest);
        if source != VersionSource::Api {
            head.config_digest = Some(digest.clone());
        }
        self.store.put_head(name, &head).await?;
        self.store.flush().await?;
        self.swap(name, plugin).await;
        if changed {
            tracing::info!(
                plugin = name,
                digest = &digest[..12],
                label = version.label.as_deref().unwrap_or(""),
                source = ?source,
                "current version changed"
            );
        }
        if let Err(e) = self.collect(name, &mut head).await {
            tracing::warn!(plugin = name, error = %e, "could not collect old versions");
        }
        Ok(Registered {
            version,
            new,
            changed,
        })
    }

    /// Makes `plugin` the current version of `name`, once no run start is between reading
    /// the current versions and storing its run.
    async fn swap(&self, name: &str, plugin: Arc<Plugin>) {
        let _pinning = self.pinning.write().await;
        let previous = self
            .current
            .write()
            .expect("registry lock")
            .insert(name.to_owned(), plugin);
        // Runs that pinned the previous version find it among the loaded ones.
        if let Some(previous) = previous {
            self.loaded.lock().expect("registry lock").insert(
                (name.to_owned(), previous.digest().to_owned()),
                Arc::downgrade(&previous),
            );
        }
    }

    /// Removes the versions of `name` beyond `keep_versions` that were current least
    /// recently (or never), unless current or pinned. Called with `changes` held; durable
    /// with the next flush.
    async fn collect(&self, name: &str, head: &mut Head) -> Result<(), RegistryError> {
        let mut versions = self.store.versions(name).await?;
        let Some(excess) = versions.len().checked_sub(self.keep_versions) else {
            return Ok(());
        };
        if excess == 0 {
            return Ok(());
        }
        // Never current first (oldest registration first), then by when they last were.
        versions.sort_by_key(|v| {
            let position = head.history.iter().position(|d| *d == v.digest);
            (position.map_or(0, |p| p + 1), v.registered_ms)
        });
        let pins = self.runs.pins(PinKind::Plugin, name).await?;
        let mut removed = 0;
        for version in &versions {
            if removed == excess {
                break;
            }
            let digest = &version.digest;
            if head.current() == Some(digest) || pins_of(&pins, digest) > 0 {
                continue;
            }
            if self.store.remove_version(name, digest).await? {
                self.runtime.forget(digest);
            }
            head.history.retain(|d| d != digest);
            removed += 1;
        }
        self.store.put_head(name, head).await?;
        if removed > 0 {
            tracing::info!(plugin = name, removed, "collected old versions");
        }
        Ok(())
    }
}

/// What the configuration says about each plugin: settings, grants, file and uses.
fn entries(
    plugins: &BTreeMap<String, PluginConfig>,
    uses: &[Use],
    runtime: &RuntimeConfig,
) -> Result<BTreeMap<String, Entry>, RegistryError> {
    plugins
        .iter()
        .map(|(name, plugin)| {
            let settings =
                plugin
                    .settings(name, runtime)
                    .map_err(|source| RegistryError::Settings {
                        plugin: name.clone(),
                        source,
                    })?;
            let mut used: Vec<Use> = uses.iter().filter(|u| u.plugin == *name).cloned().collect();
            used.sort_by_key(|u| u.world as u8);
            let entry = Entry {
                grants: grants(name, plugin),
                settings,
                file: plugin.path.relative(),
                uses: used,
            };
            Ok((name.clone(), entry))
        })
        .collect()
}

fn grants(name: &str, plugin: &PluginConfig) -> Grants {
    Grants {
        services: plugin.services.clone(),
        publish: plugin.publish.clone(),
        cache_namespace: plugin
            .cache_namespace
            .clone()
            .unwrap_or_else(|| name.to_owned()),
    }
}

/// A version validated and compiled, not yet stored: see [`PluginRegistry::prepare`].
pub struct Prepared {
    name: String,
    plugin: Arc<Plugin>,
    wasm: Vec<u8>,
    signed: Signed,
}

impl Prepared {
    /// Its code, loaded.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }
}

/// How a version came to be registered: its label, source and signer.
struct Signed {
    label: Option<String>,
    source: VersionSource,
    signed_by: Option<SignedBy>,
}

/// The signature in `name`'s configured file's signature file (`FILE.sig`), if there is one.
fn signature_of(name: &str, entry: &Entry) -> Result<Option<String>, RegistryError> {
    read_signature(&entry.file).map_err(|source| RegistryError::Read {
        plugin: name.to_owned(),
        path: signature_path(&entry.file),
        source,
    })
}

/// A configured file's load error, naming the file.
fn in_file(error: RegistryError, entry: &Entry) -> RegistryError {
    match error {
        RegistryError::Invalid { plugin, source } => RegistryError::Load {
            plugin,
            path: entry.file.clone(),
            source,
        },
        other => other,
    }
}

fn read(name: &str, entry: &Entry) -> Result<Vec<u8>, RegistryError> {
    std::fs::read(&entry.file).map_err(|source| RegistryError::Read {
        plugin: name.to_owned(),
        path: entry.file.clone(),
        source,
    })
}

/// Compiles `wasm` as a version of `name` on the calling thread, and checks it against
/// the worlds its name is used as.
fn load_checked(
    runtime: &Runtime,
    name: &str,
    entry: &Entry,
    wasm: &[u8],
) -> Result<Arc<Plugin>, RegistryError> {
    let plugin = runtime
        .load(entry.settings.clone(), wasm)
        .map_err(|source| RegistryError::Invalid {
            plugin: name.to_owned(),
            source,
        })?;
    check_uses(name, entry, &plugin)?;
    Ok(Arc::new(plugin))
}

/// Checks that `plugin` implements every world `name` is used as.
fn check_uses(name: &str, entry: &Entry, plugin: &Plugin) -> Result<(), RegistryError> {
    let has = plugin.worlds();
    match entry.uses.iter().find(|u| !has.contains(&u.world)) {
        Some(missing) => Err(RegistryError::WrongWorld {
            plugin: name.to_owned(),
            world: missing.world,
            key: missing.key.clone(),
            has,
        }),
        None => Ok(()),
    }
}

fn pins_of(pins: &BTreeMap<String, usize>, digest: &str) -> usize {
    pins.get(digest).copied().unwrap_or(0)
}

/// Loads each of `plugins` from its file and checks it against `uses`, storing nothing:
/// what `flowhost check` reports, and what tests and benchmarks that call plugins directly
/// use.
pub fn load_files(
    runtime: &Runtime,
    plugins: &BTreeMap<String, PluginConfig>,
    uses: &[Use],
) -> Result<BTreeMap<String, Arc<Plugin>>, RegistryError> {
    let configured = plugins;
    let mut plugins = BTreeMap::new();
    for (name, entry) in entries(configured, uses, runtime.config())? {
        let wasm = read(&name, &entry)?;
        let plugin = load_checked(runtime, &name, &entry, &wasm).map_err(|e| in_file(e, &entry))?;
        plugins.insert(name, plugin);
    }
    Ok(plugins)
}
