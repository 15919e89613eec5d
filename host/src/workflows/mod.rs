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
//! version. Versions are small and kept.
//!
//! Definitions are also pushed over the API ([`WorkflowRegistry::push`]), rolled back and
//! retired ([`WorkflowRegistry::delete`], refused while runs pin the workflow). A pushed
//! version stays current across restarts until the configuration's definition of that name
//! changes; a name that only the API defined is never retired by a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;

use crate::model::schedule::Schedule;
use crate::model::{
    Head, VersionSource, WorkflowDefinition, WorkflowVersion, now_ms, workflow::InvalidDefinition,
};
use crate::store::{PinKind, RunStore, StoreError, WorkflowStore};

/// Whether workflow `parent` may run `child` as a child, where `children_of` gives the
/// child workflows of each workflow there is (`None`: no such workflow): a name that is
/// defined, and from which no chain of children leads back to the parent, whose runs would
/// nest for ever.
pub fn check_child(
    parent: &str,
    child: &str,
    children_of: impl Fn(&str) -> Option<Vec<String>>,
) -> Result<(), String> {
    if child != parent && children_of(child).is_none() {
        return Err(format!("unknown workflow `{child}`"));
    }
    // Depth first from the child, each workflow once, with the path that led there.
    let mut seen = std::collections::HashSet::new();
    let mut paths = vec![vec![parent.to_owned(), child.to_owned()]];
    while let Some(path) = paths.pop() {
        let last = path.last().expect("a path has a workflow");
        if last == parent {
            let cycle: Vec<String> = path.iter().map(|w| format!("`{w}`")).collect();
            return Err(format!(
                "children would nest for ever: {}",
                cycle.join(" → ")
            ));
        }
        if !seen.insert(last.clone()) {
            continue;
        }
        for next in children_of(last).unwrap_or_default() {
            let mut longer = path.clone();
            longer.push(next);
            paths.push(longer);
        }
    }
    Ok(())
}

/// A definition version, loaded.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// The workflow's name.
    pub name: String,
    /// The definition's digest.
    pub digest: String,
    /// The definition.
    pub definition: WorkflowDefinition,
    /// Its `input-schema`, compiled.
    pub input: Option<Arc<jsonschema::Validator>>,
    /// Its `schedule`, parsed.
    pub schedule: Option<Schedule>,
}

impl Workflow {
    /// Version `digest` of `name`, with its input schema compiled. The definition was
    /// validated before it was stored; a schema that no longer compiles checks nothing and
    /// is logged.
    pub fn new(name: String, digest: String, definition: WorkflowDefinition) -> Self {
        let input = definition.input_schema.as_ref().and_then(|schema| {
            jsonschema::validator_for(schema)
                .inspect_err(|e| tracing::error!(workflow = %name, error = %e, "input-schema does not compile"))
                .ok()
                .map(Arc::new)
        });
        let schedule = definition.schedule().and_then(|schedule| {
            schedule
                .inspect_err(
                    |e| tracing::error!(workflow = %name, error = %e, "schedule does not parse"),
                )
                .ok()
        });
        Self {
            name,
            digest,
            definition,
            input,
            schedule,
        }
    }

    /// Checks a run's input against the input schema: the first failing path and why.
    pub fn check_input(&self, input: &serde_json::Value) -> Result<(), InvalidInput> {
        let Some(validator) = &self.input else {
            return Ok(());
        };
        match validator.iter_errors(input).next() {
            None => Ok(()),
            Some(error) => Err(InvalidInput {
                path: error.instance_path().to_string(),
                reason: error.to_string(),
            }),
        }
    }
}

/// An input its workflow's `input-schema` refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the input does not match the workflow's input-schema at `{}`: {reason}", if path.is_empty() { "/" } else { path })]
pub struct InvalidInput {
    /// A JSON pointer into the input, empty for the whole.
    pub path: String,
    /// What the schema says.
    pub reason: String,
}

/// What a push or rollback did.
#[derive(Debug, Clone, Serialize)]
pub struct Pushed {
    /// The workflow.
    pub name: String,
    /// The version now current.
    pub digest: String,
    /// Whether this version was never stored before.
    pub new: bool,
    /// Whether the current version changed.
    pub changed: bool,
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
    /// A pushed definition does not hold together.
    #[error("{0}")]
    Invalid(InvalidDefinition),
    /// A rollback with no version before the current one.
    #[error("workflow `{0}` has no earlier version to roll back to")]
    NoEarlierVersion(String),
    /// A rollback to a version that is not stored.
    #[error("workflow `{name}` has no version {digest}")]
    UnknownVersion {
        /// The workflow.
        name: String,
        /// The version asked for.
        digest: String,
    },
    /// A delete while runs may still run a step of the workflow.
    #[error(
        "workflow `{name}` is pinned by runs in flight ({runs}): they must end before it is deleted"
    )]
    Pinned {
        /// The workflow.
        name: String,
        /// How many runs.
        runs: usize,
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
    /// Serialises changes of heads over the API: pushes, rollbacks, deletions.
    changes: tokio::sync::Mutex<()>,
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
            changes: tokio::sync::Mutex::default(),
        };
        let mut heads: HashMap<String, Head> =
            registry.store.workflow_heads().await?.into_iter().collect();
        let mut current = HashMap::new();
        for (name, definition) in configured {
            let digest = definition.digest();
            let mut head = heads.remove(name).unwrap_or_default();
            let unchanged =
                head.config_digest.as_deref() == Some(digest.as_str()) && head.current().is_some();
            if !unchanged {
                head.config_digest = Some(digest.clone());
                registry
                    .register(name, definition, &digest, &mut head, VersionSource::Config)
                    .await?;
            }
            let digest = head.current().expect("registered").to_owned();
            current.insert(name.clone(), registry.pinned(name, &digest).await?);
        }
        // What is left and came from the configuration has left it; what only the API
        // pushed stays.
        for (name, mut head) in heads {
            if head.retired || head.config_digest.is_none() {
                if !head.retired
                    && let Some(digest) = head.current()
                {
                    current.insert(name.clone(), registry.pinned(&name, digest).await?);
                }
                continue;
            }
            head.retired = true;
            registry.store.put_workflow_head(&name, &head).await?;
            let in_flight: usize = registry
                .runs
                .pins(PinKind::Workflow, &name)
                .await?
                .values()
                .sum();
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
    async fn register(
        &self,
        name: &str,
        definition: &WorkflowDefinition,
        digest: &str,
        head: &mut Head,
        source: VersionSource,
    ) -> Result<(), WorkflowError> {
        let previous = head.current().map(str::to_owned);
        // The version before the head that names it.
        self.store
            .put_workflow_version(&WorkflowVersion {
                name: name.to_owned(),
                digest: digest.to_owned(),
                definition: definition.clone(),
                registered_ms: now_ms(),
                source,
            })
            .await?;
        head.make_current(digest);
        self.store.put_workflow_head(name, head).await?;
        if let Some(previous) = previous.filter(|p| p != digest) {
            let pins = self.runs.pins(PinKind::Workflow, name).await?;
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

    /// Makes `definition` the current version of `name`, durably: runs started after this
    /// returns follow it, runs in flight finish on theirs. `check` is what the registry
    /// cannot know itself (the plugins); the definition is validated first, and nothing
    /// changes if either refuses.
    pub async fn push(
        &self,
        name: &str,
        definition: WorkflowDefinition,
        check: impl FnOnce(&WorkflowDefinition) -> Result<(), InvalidDefinition>,
    ) -> Result<Pushed, WorkflowError> {
        definition.validate().map_err(WorkflowError::Invalid)?;
        check(&definition).map_err(WorkflowError::Invalid)?;
        let digest = definition.digest();
        let _change = self.changes.lock().await;
        let mut head = self.head(name).await?.unwrap_or_default();
        let new = self.store.workflow_version(name, &digest).await?.is_none();
        let changed = head.current() != Some(digest.as_str());
        self.register(name, &definition, &digest, &mut head, VersionSource::Api)
            .await?;
        self.store.flush().await?;
        self.make_current(Workflow::new(name.to_owned(), digest.clone(), definition));
        Ok(Pushed {
            name: name.to_owned(),
            digest,
            new,
            changed,
        })
    }

    /// Makes `to`, or without it the version current before the current one, current
    /// again. `check` as for [`Self::push`]: the plugins an old version names may be gone.
    pub async fn rollback(
        &self,
        name: &str,
        to: Option<&str>,
        check: impl FnOnce(&WorkflowDefinition) -> Result<(), InvalidDefinition>,
    ) -> Result<Pushed, WorkflowError> {
        let _change = self.changes.lock().await;
        let mut head = self
            .head(name)
            .await?
            .ok_or_else(|| WorkflowError::Unknown(name.to_owned()))?;
        let target = match to {
            Some(digest) => digest.to_owned(),
            None => {
                if head.retired || head.history.len() < 2 {
                    return Err(WorkflowError::NoEarlierVersion(name.to_owned()));
                }
                head.history[head.history.len() - 2].clone()
            }
        };
        let version = self
            .store
            .workflow_version(name, &target)
            .await?
            .ok_or_else(|| WorkflowError::UnknownVersion {
                name: name.to_owned(),
                digest: target.clone(),
            })?;
        check(&version.definition).map_err(WorkflowError::Invalid)?;
        let changed = head.current() != Some(target.as_str());
        if to.is_none() {
            head.history.pop();
        }
        head.make_current(&target);
        self.store.put_workflow_head(name, &head).await?;
        self.store.flush().await?;
        self.make_current(Workflow::new(
            name.to_owned(),
            target.clone(),
            version.definition,
        ));
        tracing::info!(
            workflow = name,
            digest = &target[..12],
            "workflow rolled back"
        );
        Ok(Pushed {
            name: name.to_owned(),
            digest: target,
            new: false,
            changed,
        })
    }

    /// Retires `name`: new starts get 404, its versions stay for the record. Refused while
    /// a run that may still run a step pins any version of it. A name the configuration
    /// defines comes back at the next start; remove it there to retire it for good.
    pub async fn delete(&self, name: &str) -> Result<(), WorkflowError> {
        let _change = self.changes.lock().await;
        let mut head = self
            .head(name)
            .await?
            .filter(|h| !h.retired)
            .ok_or_else(|| WorkflowError::Unknown(name.to_owned()))?;
        // New starts stop first, so that none pins it between the count and the retire (a
        // start that took the definition just before still finishes: versions stay).
        let current = self.current.write().expect("workflows lock").remove(name);
        let runs: usize = match self.runs.pins(PinKind::Workflow, name).await {
            Ok(pins) => pins.values().sum(),
            Err(e) => {
                self.restore(name, current);
                return Err(e.into());
            }
        };
        if runs > 0 {
            self.restore(name, current);
            return Err(WorkflowError::Pinned {
                name: name.to_owned(),
                runs,
            });
        }
        head.retired = true;
        let stored = self.store.put_workflow_head(name, &head).await;
        if let Err(e) = stored {
            self.restore(name, current);
            return Err(e.into());
        }
        self.store.flush().await?;
        tracing::info!(workflow = name, "workflow deleted: new starts are refused");
        Ok(())
    }

    /// Makes current here what the store says is current (a push, rollback or retirement
    /// on another node sharing the store). Returns how many workflows changed. A version
    /// that cannot be loaded here leaves its workflow as it is and the others change; the
    /// first such error is returned once all were looked at.
    pub async fn refresh(&self) -> Result<usize, WorkflowError> {
        let _change = self.changes.lock().await;
        let (mut changed, mut failed) = (0, None);
        for (name, head) in self.store.workflow_heads().await? {
            let there = head.current().filter(|_| !head.retired);
            let here = self.current(&name);
            if here.as_ref().map(|w| w.digest.as_str()) == there {
                continue;
            }
            match there {
                Some(digest) => {
                    let workflow = match self.pinned(&name, digest).await {
                        Ok(workflow) => workflow,
                        Err(error) => {
                            failed.get_or_insert(error);
                            continue;
                        }
                    };
                    self.current
                        .write()
                        .expect("workflows lock")
                        .insert(name.clone(), workflow);
                }
                None => {
                    self.current.write().expect("workflows lock").remove(&name);
                }
            }
            tracing::info!(
                workflow = name.as_str(),
                current = there.map_or("none (retired)", |d| &d[..12.min(d.len())]),
                "current version changed on another node"
            );
            changed += 1;
        }
        failed.map_or(Ok(changed), Err)
    }

    fn restore(&self, name: &str, current: Option<Arc<Workflow>>) {
        if let Some(current) = current {
            self.current
                .write()
                .expect("workflows lock")
                .insert(name.to_owned(), current);
        }
    }

    async fn head(&self, name: &str) -> Result<Option<Head>, WorkflowError> {
        Ok(self
            .store
            .workflow_heads()
            .await?
            .into_iter()
            .find_map(|(n, head)| (n == name).then_some(head)))
    }

    fn make_current(&self, workflow: Workflow) {
        self.current
            .write()
            .expect("workflows lock")
            .insert(workflow.name.clone(), Arc::new(workflow));
    }

    /// The current version of `name`; none for a name that is not (or no longer) configured.
    pub fn current(&self, name: &str) -> Option<Arc<Workflow>> {
        self.current
            .read()
            .expect("workflows lock")
            .get(name)
            .cloned()
    }

    /// Every current version, by name: the workflows new runs can start.
    pub fn all_current(&self) -> Vec<Arc<Workflow>> {
        self.current
            .read()
            .expect("workflows lock")
            .values()
            .cloned()
            .collect()
    }

    /// Version `digest` of `name`, from memory or the store.
    pub async fn pinned(&self, name: &str, digest: &str) -> Result<Arc<Workflow>, WorkflowError> {
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
        let version = self
            .store
            .workflow_version(name, digest)
            .await?
            .ok_or_else(|| WorkflowError::Missing {
                name: name.to_owned(),
                digest: digest.to_owned(),
            })?;
        let workflow = Arc::new(Workflow::new(
            version.name,
            version.digest,
            version.definition,
        ));
        self.loaded
            .lock()
            .expect("workflows lock")
            .insert(key, workflow.clone());
        Ok(workflow)
    }

    /// Every workflow that has versions, configured or retired, by name.
    pub async fn list(&self) -> Result<Vec<WorkflowView>, WorkflowError> {
        let mut heads = self.store.workflow_heads().await?;
        heads.sort_by(|a, b| a.0.cmp(&b.0));
        let mut views = Vec::with_capacity(heads.len());
        for (name, head) in heads {
            views.push(self.view(name, &head).await?);
        }
        Ok(views)
    }

    /// One workflow with its versions.
    pub async fn describe(&self, name: &str) -> Result<WorkflowView, WorkflowError> {
        let head = self
            .head(name)
            .await?
            .ok_or_else(|| WorkflowError::Unknown(name.to_owned()))?;
        self.view(name.to_owned(), &head).await
    }

    async fn view(&self, name: String, head: &Head) -> Result<WorkflowView, WorkflowError> {
        let pins = self.runs.pins(PinKind::Workflow, &name).await?;
        let current = head.current().map(str::to_owned);
        let mut versions: Vec<WorkflowVersionView> = self
            .store
            .workflow_versions(&name)
            .await?
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
