//! Several nodes on one store: membership and takeover.
//!
//! Each node registers in the store ([`NodeStore`]) and renews its lease with a heartbeat,
//! `lease / 3` apart. The runs a node starts are stored as its own; they stay its own while
//! its lease holds. A node whose lease ran out (it died, was paused, or lost the store) is
//! taken over: every pass, each live node claims up to `claim-batch` of the unfinished runs
//! such nodes own ([`Claim::Expired`]), each under a new epoch, and drives them from where
//! their journals end. The earlier owner, should it come back, is fenced off: each of its
//! writes of those runs names the epoch it held them under and is refused
//! ([`StoreError::Fenced`]), so it lets them go.
//!
//! On sled there is one node, and these passes find nothing to claim; on PostgreSQL the
//! lease is measured by the database's clock, so the nodes' clocks need not agree.
//!
//! The registries follow the store too ([`follow_registries`]): a plugin or workflow
//! version made current on one node is current on every node as soon as the store tells
//! them (PostgreSQL's LISTEN/NOTIFY), and within [`REGISTRY_SYNC`] should a notice be lost.
//!
//! ```toml
//! [cluster]
//! node-id = "node-a"                 # default: the address it advertises
//! advertise = "http://10.0.0.5:8080" # default: http://<the address it listens on>
//! lease = "10s"                      # a dead node's runs wait this long, at most
//! claim-batch = 100                  # runs claimed per pass, at most
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::plugins::PluginRegistry;
use crate::saga::Engine;
use crate::store::{Claim, Node, NodeInfo, NodeStore, Store, StoreError};
use crate::workflows::WorkflowRegistry;

/// How often a node looks for the registry changes other nodes made without being told
/// of them: the safety net under the store's notices, and the pace where it sends none.
pub const REGISTRY_SYNC: Duration = Duration::from_secs(1);

/// How long a node that left stays listed by [`crate::store::NodeStore::nodes`].
pub const FORGOTTEN_AFTER: Duration = Duration::from_secs(60 * 60);

/// `[cluster]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This node's id, unique among the nodes sharing the store, and the same across its
    /// restarts: a node restarted under the same id takes its runs back at once, rather
    /// than after its lease. Default: the address it advertises.
    pub node_id: Option<String>,
    /// Where this node's API answers, as the other nodes and the console show it.
    /// Default `http://<the address it listens on>`.
    pub advertise: Option<String>,
    /// How long a node's lease lasts unless renewed: how long a dead node's runs wait
    /// before others claim them. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// The most runs a node claims per pass (`lease / 3` apart), so that a dead node's
    /// runs spread over the others rather than falling on the first to look. Default 100.
    pub claim_batch: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            node_id: None,
            advertise: None,
            lease: Duration::from_secs(10),
            claim_batch: 100,
        }
    }
}

/// A `[cluster]` value that does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cluster.{key}: {reason}")]
pub struct InvalidCluster {
    /// The key.
    pub key: &'static str,
    /// Why.
    pub reason: &'static str,
}

impl ClusterConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), InvalidCluster> {
        if self.lease < Duration::from_millis(300) {
            return Err(InvalidCluster {
                key: "lease",
                reason: "must be at least 300ms (it is renewed every third of it)",
            });
        }
        if self.claim_batch == 0 {
            return Err(InvalidCluster {
                key: "claim-batch",
                reason: "must be at least 1",
            });
        }
        if self.node_id.as_deref().is_some_and(str::is_empty) {
            return Err(InvalidCluster {
                key: "node-id",
                reason: "must not be empty",
            });
        }
        Ok(())
    }

    /// Where this node's API answers, listening on `listening`.
    pub fn address(&self, listening: SocketAddr) -> String {
        self.advertise
            .clone()
            .unwrap_or_else(|| format!("http://{listening}"))
    }

    /// This node's id, listening on `listening`.
    pub fn id(&self, listening: SocketAddr) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            let address = self.address(listening);
            let bare = address
                .split_once("://")
                .map_or(&*address, |(_, rest)| rest);
            bare.trim_end_matches('/').to_owned()
        })
    }

    /// This node's id among nodes sharing a store, listening on `listening`: as
    /// [`Self::id`], but refused when it would be the same on every machine (a node that
    /// listens on every interface and says neither its id nor its address), since nodes
    /// under one id take each other's runs.
    pub fn shared_id(&self, listening: SocketAddr) -> Result<String, InvalidCluster> {
        if self.node_id.is_none() && self.advertise.is_none() && listening.ip().is_unspecified() {
            return Err(InvalidCluster {
                key: "node-id",
                reason: "a node listening on every interface needs an id (or an advertise \
                         address) of its own among the nodes sharing the store",
            });
        }
        Ok(self.id(listening))
    }

    /// What this node says of itself, listening on `listening`.
    pub fn node(&self, listening: SocketAddr) -> NodeInfo {
        let started_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        NodeInfo {
            id: self.id(listening),
            address: self.address(listening),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_ms,
        }
    }

    /// The time between two heartbeats (and claim passes).
    pub fn heartbeat(&self) -> Duration {
        self.lease / 3
    }
}

/// This node's membership: its heartbeat, and the claims of dead nodes' runs.
pub struct Membership {
    store: Arc<dyn Store>,
    node: NodeInfo,
    config: ClusterConfig,
}

impl Membership {
    /// Registers `node` in `store`, its lease starting now.
    pub async fn join(
        store: Arc<dyn Store>,
        node: NodeInfo,
        config: &ClusterConfig,
    ) -> Result<Self, StoreError> {
        store.heartbeat(&node, config.lease).await?;
        tracing::info!(node = %node.id, address = %node.address, "joined");
        Ok(Self {
            store,
            node,
            config: config.clone(),
        })
    }

    /// This node.
    pub fn node(&self) -> &NodeInfo {
        &self.node
    }

    /// Every node sharing the store, live or gone within [`FORGOTTEN_AFTER`] (or still
    /// owning runs).
    pub async fn nodes(&self) -> Result<Vec<Node>, StoreError> {
        self.store.nodes(FORGOTTEN_AFTER).await
    }

    /// Renews the lease and claims expired runs for `engine`, every `lease / 3`, until
    /// `stop`.
    pub async fn run(&self, engine: Engine, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.heartbeat());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            self.pass(&engine).await;
        }
    }

    /// One heartbeat, then one claim: a node claims only while its own lease holds.
    async fn pass(&self, engine: &Engine) {
        match self.store.heartbeat(&self.node, self.config.lease).await {
            Ok(false) => {}
            Ok(true) => tracing::warn!(
                node = %self.node.id,
                "this node's lease had run out (paused, or cut off from the store); runs other nodes claimed meanwhile are theirs now"
            ),
            Err(error) => {
                tracing::warn!(%error, "could not renew this node's lease");
                return;
            }
        }
        let claim = Claim::Expired {
            limit: self.config.claim_batch,
        };
        let ids = match self.store.claim(claim).await {
            Ok(ids) => ids,
            Err(error) => {
                tracing::warn!(%error, "could not claim the runs of expired nodes");
                return;
            }
        };
        if ids.is_empty() {
            return;
        }
        let count = engine.adopt(ids).await;
        tracing::info!(count, "took over runs of nodes whose lease expired");
    }

    /// Ends this node's lease, so that others take over what it leaves unfinished at once
    /// rather than after the lease: call after the engine stopped.
    pub async fn leave(&self) {
        match self.store.leave(&self.node.id).await {
            Ok(()) => tracing::info!(node = %self.node.id, "left"),
            Err(error) => tracing::warn!(%error, "could not end this node's lease"),
        }
    }
}

/// Keeps this node's registries current with the store, which other nodes push to, until
/// `stop`: at each of the store's notices ([`NodeStore::registry_changes`]), and every
/// [`REGISTRY_SYNC`] in any case. Compiled code stays a per-node cache: a version new here
/// is compiled here (or read from this node's compiled cache).
pub async fn follow_registries(
    plugins: Arc<PluginRegistry>,
    workflows: Arc<WorkflowRegistry>,
    store: Arc<dyn NodeStore>,
    stop: CancellationToken,
) {
    let mut changes = store.registry_changes();
    let mut tick = tokio::time::interval(REGISTRY_SYNC);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let noticed = async {
            match &mut changes {
                Some(changes) => changes.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tick.tick() => {}
            heard = noticed => if !heard { changes = None },
            () = stop.cancelled() => return,
        }
        if let Err(error) = plugins.refresh().await {
            tracing::warn!(%error, "could not look for plugin versions other nodes made current");
        }
        if let Err(error) = workflows.refresh().await {
            tracing::warn!(%error, "could not look for workflow versions other nodes made current");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_on_every_interface_must_name_itself_to_share_a_store() {
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let unnamed = ClusterConfig::default();
        assert_eq!(unnamed.shared_id(any).unwrap_err().key, "node-id");
        let named = ClusterConfig {
            node_id: Some("a".into()),
            ..ClusterConfig::default()
        };
        assert_eq!(named.shared_id(any).unwrap(), "a");
        let advertised = ClusterConfig {
            advertise: Some("http://10.0.0.5:8080/".into()),
            ..ClusterConfig::default()
        };
        assert_eq!(advertised.shared_id(any).unwrap(), "10.0.0.5:8080");
        let loopback = "127.0.0.1:9".parse().unwrap();
        assert_eq!(unnamed.shared_id(loopback).unwrap(), "127.0.0.1:9");
    }
}
