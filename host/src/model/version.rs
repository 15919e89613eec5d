//! Versions of plugins and workflow definitions, and the heads that say which is current.
//!
//! A version is content-addressed: a plugin version is the pair of its name and the SHA-256
//! of its component, a workflow version the pair of its name and the SHA-256 of its
//! definition's canonical JSON ([`super::WorkflowDefinition::digest`]). Each name has a
//! [`Head`]: the versions that were made current, the last one current.

use serde::{Deserialize, Serialize};

use super::WorkflowDefinition;

/// Where a version came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionSource {
    /// The configuration, read at start.
    Config,
    /// The API (`PUT /v1/plugins/{name}`).
    Api,
    /// The configuration's file, rebuilt while the host ran (the directory watch).
    Watch,
}

/// What a plugin version was granted when it was registered: the grants of its name in the
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
    /// Who signed it, if it came signed (see [`crate::plugins::signing`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<SignedBy>,
}

/// Who signed a plugin version: a key whose signature over the plugin's name and digest
/// verified when the version was registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedBy {
    /// The public key (`ed25519:<base64>`).
    pub key: String,
    /// Its name in `registry.trusted-keys`, when it was there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// One version of a workflow definition, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowVersion {
    /// The workflow's name.
    pub name: String,
    /// SHA-256 of the definition's canonical JSON, hex.
    pub digest: String,
    /// The definition.
    pub definition: WorkflowDefinition,
    /// When it was registered, ms since the Unix epoch.
    pub registered_ms: u64,
    /// How it was registered.
    pub source: VersionSource,
}

/// Which version of a name is current, and which were before it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Digests that were made current, oldest first, each once; the last one is current
    /// unless the name is retired. Rollback drops the last.
    pub history: Vec<String>,
    /// The digest of what the configuration registered last (a plugin's file, a workflow's
    /// definition): at start, the same again is not registered anew, so that a version
    /// pushed since stays current across restarts.
    #[serde(default, alias = "file_digest")]
    pub config_digest: Option<String>,
    /// Set when the name left the configuration: it has no current version and starts
    /// nothing new, while runs pinned to its versions finish on them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retired: bool,
}

impl Head {
    /// The current version's digest.
    pub fn current(&self) -> Option<&str> {
        if self.retired {
            return None;
        }
        self.history.last().map(String::as_str)
    }

    /// Makes `digest` current, moving it to the end of the history if it was there.
    pub fn make_current(&mut self, digest: &str) {
        self.history.retain(|d| d != digest);
        self.history.push(digest.to_owned());
        self.retired = false;
    }
}
