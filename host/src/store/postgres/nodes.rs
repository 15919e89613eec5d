//! [`NodeStore`] on [`PgStore`]: a row per node in `nodes`, its lease measured by
//! PostgreSQL's clock (`flowhost_now_ms()`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_postgres::{AsyncMessage, NoTls};

use super::{PgStore, ms};
use crate::store::{Node, NodeInfo, NodeStore, StoreError};

/// The channel [`NodeStore::registry_changes`] listens on (schema 7 notifies it).
const REGISTRY_CHANNEL: &str = "flowhost_registry";

/// The pauses between attempts to listen again after the connection was lost: doubling,
/// from the first to the last.
const RELISTEN: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// A duration in ms as PostgreSQL's `bigint`.
fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl NodeStore for PgStore {
    async fn heartbeat(&self, node: &NodeInfo, lease: Duration) -> Result<bool, StoreError> {
        let row = self
            .query_opt(
                "renew the node's lease",
                "WITH before AS (SELECT started_ms, expires_ms FROM nodes WHERE id = $1)
                 INSERT INTO nodes (id, address, version, started_ms, heartbeat_ms, expires_ms)
                 VALUES ($1, $2, $3, $4, flowhost_now_ms(), flowhost_now_ms() + $5)
                 ON CONFLICT (id) DO UPDATE SET address = excluded.address,
                     version = excluded.version, started_ms = excluded.started_ms,
                     heartbeat_ms = excluded.heartbeat_ms, expires_ms = excluded.expires_ms
                 RETURNING (SELECT started_ms = $4 AND expires_ms < flowhost_now_ms()
                            FROM before)",
                &[
                    &node.id,
                    &node.address,
                    &node.version,
                    &ms(node.started_ms),
                    &millis(lease),
                ],
            )
            .await?;
        Ok(row.and_then(|row| row.get::<_, Option<bool>>(0)) == Some(true))
    }

    async fn leave(&self, id: &str) -> Result<(), StoreError> {
        self.execute(
            "end the node's lease",
            "UPDATE nodes SET expires_ms = least(expires_ms, flowhost_now_ms() - 1)
             WHERE id = $1",
            &[&id],
        )
        .await?;
        Ok(())
    }

    fn registry_changes(&self) -> Option<watch::Receiver<()>> {
        let (changed, receiver) = watch::channel(());
        tokio::spawn(listen(self.config.clone(), Arc::new(changed)));
        Some(receiver)
    }

    async fn nodes(&self, forgotten_after: Duration) -> Result<Vec<Node>, StoreError> {
        let rows = self
            .query(
                "list the nodes",
                "SELECT n.id, n.address, n.version, n.started_ms, n.heartbeat_ms, n.expires_ms,
                        n.expires_ms >= flowhost_now_ms(), coalesce(o.runs, 0)
                 FROM nodes n
                 LEFT JOIN (SELECT owner, count(*) AS runs FROM runs
                            WHERE status IN ('pending', 'running', 'compensating')
                            GROUP BY owner) o ON o.owner = n.id
                 WHERE n.expires_ms >= flowhost_now_ms() - $1 OR o.runs > 0
                 ORDER BY n.id",
                &[&millis(forgotten_after)],
            )
            .await?;
        let unsigned = |value: i64| u64::try_from(value).unwrap_or(0);
        Ok(rows
            .iter()
            .map(|row| Node {
                info: NodeInfo {
                    id: row.get(0),
                    address: row.get(1),
                    version: row.get(2),
                    started_ms: unsigned(row.get(3)),
                },
                heartbeat_ms: unsigned(row.get(4)),
                expires_ms: unsigned(row.get(5)),
                live: row.get(6),
                runs: unsigned(row.get(7)),
            })
            .collect())
    }
}

/// Listens for registry notices on a connection of its own, and marks `changed` for each,
/// until no one holds its receiver. After each (re)connection it marks it once too: what
/// changed while no one listened is looked for then.
async fn listen(config: tokio_postgres::Config, changed: Arc<watch::Sender<()>>) {
    let mut pause = RELISTEN.0;
    loop {
        let lost = async {
            let (client, mut connection) = config.connect(NoTls).await?;
            // The connection's messages are read by a task of its own, which must run for
            // the LISTEN below to be answered too.
            let notices = changed.clone();
            let mut reader = tokio::spawn(async move {
                let mut messages =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(message) = messages.next().await {
                    match message {
                        Ok(AsyncMessage::Notification(_)) => notices.send_replace(()),
                        Ok(_) => {}
                        Err(error) => return Err(error),
                    }
                }
                Ok(())
            });
            client
                .batch_execute(&format!("LISTEN {REGISTRY_CHANNEL}"))
                .await?;
            changed.send_replace(());
            pause = RELISTEN.0;
            tokio::select! {
                read = &mut reader => read.unwrap_or(Ok(())),
                () = changed.closed() => {
                    reader.abort();
                    Ok(())
                }
            }
        }
        .await;
        if changed.is_closed() {
            return;
        }
        if let Err(error) = lost {
            tracing::warn!(%error, ?pause, "lost the connection that listens for registry changes; listening again after a pause");
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = changed.closed() => return,
        }
        pause = (pause * 2).min(RELISTEN.1);
    }
}
