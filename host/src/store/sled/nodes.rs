//! [`NodeStore`] on [`SledStore`]: the embedded store has one node, the process that
//! opened it, kept under `node` in `meta`.

use std::time::Duration;

use async_trait::async_trait;

use super::{SledStore, decode, encode, io};
use crate::store::{Node, NodeInfo, NodeStore, StoreError};

/// The key of the node's record in `meta`.
const NODE: &[u8] = b"node";

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl SledStore {
    fn node(&self) -> Result<Option<(NodeInfo, u64, u64)>, StoreError> {
        let Some(bytes) = self.meta.get(NODE).map_err(io("read the node"))? else {
            return Ok(None);
        };
        decode(NODE, &bytes).map(Some)
    }
}

#[async_trait]
impl NodeStore for SledStore {
    async fn heartbeat(&self, node: &NodeInfo, lease: Duration) -> Result<bool, StoreError> {
        let now = now_ms();
        let expired = self
            .node()?
            .is_some_and(|(known, _, expires)| known.id == node.id && expires < now);
        let record = (node, now, now + lease.as_millis() as u64);
        self.meta
            .insert(NODE, encode(&record)?)
            .map_err(io("write the node"))?;
        Ok(expired)
    }

    async fn leave(&self, id: &str) -> Result<(), StoreError> {
        if let Some((info, heartbeat, _)) = self.node()?
            && info.id == id
        {
            let record = (info, heartbeat, now_ms());
            self.meta
                .insert(NODE, encode(&record)?)
                .map_err(io("write the node"))?;
        }
        Ok(())
    }

    async fn nodes(&self, forgotten_after: Duration) -> Result<Vec<Node>, StoreError> {
        let Some((info, heartbeat_ms, expires_ms)) = self.node()? else {
            return Ok(Vec::new());
        };
        let now = now_ms();
        // Every unfinished run is this node's.
        let runs = self.unfinished()?.len() as u64;
        if runs == 0 && expires_ms + (forgotten_after.as_millis() as u64) < now {
            return Ok(Vec::new());
        }
        Ok(vec![Node {
            info,
            heartbeat_ms,
            expires_ms,
            live: expires_ms >= now,
            runs,
        }])
    }
}
