//! The workflow registry: every version of every workflow definition, which one is current,
//! and the definitions runs are pinned to.
//!
//! Definitions are versioned as plugins are: each is stored in the [`WorkflowStore`] under
//! its name and the digest of its canonical form, and each name has a head. At start,
//! [`WorkflowRegistry::open`] registers each `[workflows.<name>]` whose definition changed
//! since the configuration last registered it and makes it current; a name that left the
//! configuration is retired (new starts get 404). A run records the digest of the
//! definition current when it started and follows that definition for every step and
//! compensation, across restarts and configuration changes ([`WorkflowRegistry::pinned`]).
//! A change while runs are in flight is logged once, with how many runs stay on an older
//! version. Versions are small and kept; pushing definitions over the API builds on this
//! store.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;

use crate::model::{Head, VersionSource, WorkflowDefinition, WorkflowVersion, now_ms};
use crate::store::{PinKind, RunStore, StoreError, WorkflowStore};

/// A definition version, loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    /// The workflow's name.
    pub name: String,
    /// The definition's digest.
    pub digest: String,
    /// The definition.
    pub definition: WorkflowDefinition,
}

/// Why the registry refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// No workflow of that name has ever been registered.
    #[error("unknown workflow `{0}`")]
    Unknown(String),
    /// A run names a version that is not in the store.
    #[error("workflow `{name}`: version {digest} is not in the registry's store")]
    Missing {
        /// The workflow.
        name: String,
        /// The version.
        digest: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One workflow as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkflowView {
    /// The name.
    pub name: String,
    /// The current version's digest; none once the name left the configuration.
    pub current: Option<String>,
    /// Its versions, newest registration first.
    pub versions: Vec<WorkflowVersionView>,
}

/// One version as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkflowVersionView {
    /// The digest.
    pub digest: String,
    /// Whether it is current.
    pub current: bool,
    /// When it was registered, RFC 3339.
    pub registered_at: String,
    /// How it was registered.
    pub source: VersionSource,
    /// Runs that follow it and may still run a step of it.
    pub pinned_runs: usize,
    /// The definition.
    pub definition: WorkflowDefinition,
}

/// The registry. Shared by the engine and the API.
pub struct WorkflowRegistry {
    store: Arc<dyn WorkflowStore>,
    runs: Arc<dyn RunStore>,
    /// The current version of each workflow. A std lock: read for a moment per run start,
    /// written only at start, never held across an `.await`.
    current: RwLock<HashMap<String, Arc<Workflow>>>,
    /// Versions runs asked for, by name and digest: definitions are small, and a run
    /// resumed after a restart asks again.
    loaded: Mutex<HashMap<(String, String), Arc<Workflow>>>,
}

impl WorkflowRegistry {
    /// Opens the registry over `store`: registers each of `configured` that changed since the
    /// configuration last registered it, retires the names that left the configuration,
    /// and loads the current versions. Each definition must have been validated.
    pub async fn open(
        store: Arc<dyn WorkflowStore>,
        runs: Arc<dyn RunStore>,
        configured: &BTreeMap<String, WorkflowDefinition>,
    ) -> Result<Self, WorkflowError> {
        let registry = Self {
            store,
            runs,
            current: RwLock::default(),
            loaded: Mutex::default(),
        };
        let mut heads: HashMap<String, Head> =
            registry.store.workflow_heads()?.into_iter().collect();
        let mut current = HashMap::new();
        for (name, definition) in configured {
            let digest = definition.digest();
            let mut head = heads.remove(name).unwrap_or_default();
            let unchanged =
                head.config_digest.as_deref() == Some(digest.as_str()) && head.current().is_some();
            if !unchanged {
                registry.register(name, definition, &digest, &mut head)?;
            }
            let digest = head.current().expect("registered").to_owned();
            current.insert(name.clone(), registry.pinned(name, &digest)?);
        }
        // What is left has left the configuration.
        for (name, mut head) in heads {
            if head.retired {
                continue;
            }
            head.retired = true;
            registry.store.put_workflow_head(&name, &head)?;
            let in_flight: usize = registry.runs.pins(PinKind::Workflow, &name)?.values().sum();
            tracing::info!(
                workflow = %name,
                runs_in_flight = in_flight,
                "workflow left the configuration: its runs finish on their own definitions, new starts are refused"
            );
        }
        registry.store.flush().await?;
        *registry.current.write().expect("workflows lock") = current;
        Ok(registry)
    }

    /// Stores `definition` as a version of `name` (if new) and makes it current in `head`,
    /// logging the change with the runs that stay on older versions.
    fn register(
        &self,
        name: &str,
        definition: &WorkflowDefinition,
        digest: &str,
        head: &mut Head,
    ) -> Result<(), WorkflowError> {
        let previous = head.current().map(str::to_owned);
        // The version before the head that names it.
        self.store.put_workflow_version(&WorkflowVersion {
            name: name.to_owned(),
            digest: digest.to_owned(),
            definition: definition.clone(),
            registered_ms: now_ms(),
            source: VersionSource::Config,
        })?;
        head.make_current(digest);
        head.config_digest = Some(digest.to_owned());
        self.store.put_workflow_head(name, head)?;
        if let Some(previous) = previous.filter(|p| p != digest) {
            let pins = self.runs.pins(PinKind::Workflow, name)?;
            let in_flight: usize = pins
                .iter()
                .filter(|(version, _)| *version != digest)
                .map(|(_, runs)| runs)
                .sum();
            tracing::info!(
                workflow = name,
                from = &previous[..12],
                to = &digest[..12],
                runs_in_flight = in_flight,
                "workflow definition changed: runs in flight finish on the definition they started with"
            );
        }
        Ok(())
    }

    /// The current version of `name`; none for a name that is not (or no longer) configured.
    pub fn current(&self, name: &str) -> Option<Arc<Workflow>> {
        self.current
            .read()
            .expect("workflows lock")
            .get(name)
            .cloned()
    }

    /// Version `digest` of `name`, from memory or the store.
    pub fn pinned(&self, name: &str, digest: &str) -> Result<Arc<Workflow>, WorkflowError> {
        // Most runs follow the current version.
        if let Some(current) = self.current(name)
            && current.digest == digest
        {
            return Ok(current);
        }
        let key = (name.to_owned(), digest.to_owned());
        if let Some(workflow) = self.loaded.lock().expect("workflows lock").get(&key) {
            return Ok(workflow.clone());
        }
        let version =
            self.store
                .workflow_version(name, digest)?
                .ok_or_else(|| WorkflowError::Missing {
                    name: name.to_owned(),
                    digest: digest.to_owned(),
                })?;
        let workflow = Arc::new(Workflow {
            name: version.name,
            digest: version.digest,
            definition: version.definition,
        });
        self.loaded
            .lock()
            .expect("workflows lock")
            .insert(key, workflow.clone());
        Ok(workflow)
    }

    /// Every workflow that has versions, configured or retired, by name.
    pub fn list(&self) -> Result<Vec<WorkflowView>, WorkflowError> {
        let mut heads = self.store.workflow_heads()?;
        heads.sort_by(|a, b| a.0.cmp(&b.0));
        heads
            .into_iter()
            .map(|(name, head)| self.view(name, &head))
            .collect()
    }

    /// One workflow with its versions.
    pub fn describe(&self, name: &str) -> Result<WorkflowView, WorkflowError> {
        let head = self
            .store
            .workflow_heads()?
            .into_iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| WorkflowError::Unknown(name.to_owned()))?;
        self.view(head.0, &head.1)
    }

    fn view(&self, name: String, head: &Head) -> Result<WorkflowView, WorkflowError> {
        let pins = self.runs.pins(PinKind::Workflow, &name)?;
        let current = head.current().map(str::to_owned);
        let mut versions: Vec<WorkflowVersionView> = self
            .store
            .workflow_versions(&name)?
            .into_iter()
            .map(|version| WorkflowVersionView {
                current: current.as_deref() == Some(version.digest.as_str()),
                pinned_runs: pins.get(&version.digest).copied().unwrap_or(0),
                registered_at: crate::model::rfc3339(version.registered_ms),
                source: version.source,
                digest: version.digest,
                definition: version.definition,
            })
            .collect();
        versions.reverse();
        Ok(WorkflowView {
            name,
            current,
            versions,
        })
    }
}
