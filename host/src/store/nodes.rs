//! Membership: the nodes that share a store ([`NodeStore`]). Each registers itself and
//! renews its lease with a heartbeat; the runs a node owns are held under that lease, and
//! once it expires other nodes claim them ([`super::RunStore::claim`]). Lease times are
//! the store's clock, so that the nodes' clocks need not agree.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::StoreError;

/// What a node says of itself when it registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its id, unique among the nodes; the owner its runs are stored under.
    pub id: String,
    /// Where its API answers (`http://10.0.0.5:8080`).
    pub address: String,
    /// The flowhost release it runs.
    pub version: String,
    /// When this process started, ms since the Unix epoch.
    pub started_ms: u64,
}

/// A node as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// What it said of itself.
    #[serde(flatten)]
    pub info: NodeInfo,
    /// Its last heartbeat, ms since the Unix epoch (the store's clock).
    pub heartbeat_ms: u64,
    /// When its lease ends unless renewed; after that its runs may be claimed.
    pub expires_ms: u64,
    /// Whether its lease holds now.
    pub live: bool,
    /// How many unfinished runs it owns.
    pub runs: u64,
}

/// Storage of the nodes sharing a store.
#[async_trait]
pub trait NodeStore: Send + Sync {
    /// Registers this node, or renews its lease, for `lease` from now. Returns whether
    /// its lease had run out before this renewal (other nodes may have claimed some of
    /// its runs meanwhile: fencing keeps it off them).
    async fn heartbeat(&self, node: &NodeInfo, lease: Duration) -> Result<bool, StoreError>;

    /// Ends node `id`'s lease now, so that other nodes claim its unfinished runs on their
    /// next pass rather than after the lease (a node stopping for good).
    async fn leave(&self, id: &str) -> Result<(), StoreError>;

    /// Every node registered whose lease ended less than `forgotten_after` ago or that
    /// still owns runs, by id.
    async fn nodes(&self, forgotten_after: Duration) -> Result<Vec<Node>, StoreError>;

    /// The registry changes nodes make, as they make them: the receiver is marked changed
    /// each time a node makes a plugin or workflow version current (or retires one), and
    /// whenever changes may have gone unheard (the store was out of reach meanwhile).
    /// Listens while the receiver lives. `None` where the store sends no such notices:
    /// callers look for changes every so often anyway.
    fn registry_changes(&self) -> Option<watch::Receiver<()>> {
        None
    }
}
