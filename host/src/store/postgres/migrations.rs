//! The schema, versioned: each migration is a file of SQL embedded in the binary, applied
//! once, in order, at start. All of them run in one transaction under an advisory lock, so
//! that nodes starting together apply each once and none sees half a schema; a database
//! whose schema is newer than this release knows is refused.

use tokio_postgres::Client;

use super::pg;
use crate::store::StoreError;

/// The migrations, by version (consecutive from 1), with what each adds.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "the registry",
        include_str!("migrations/0001_registry.sql"),
    ),
    (
        2,
        "runs, journals, inboxes",
        include_str!("migrations/0002_runs.sql"),
    ),
    (
        3,
        "the outbox, queues, dead letters",
        include_str!("migrations/0003_events.sql"),
    ),
    (
        4,
        "group commit",
        include_str!("migrations/0004_flushes.sql"),
    ),
    (
        5,
        "runs by workflow",
        include_str!("migrations/0005_workflow_index.sql"),
    ),
    (
        6,
        "nodes and leases",
        include_str!("migrations/0006_leases.sql"),
    ),
    (
        7,
        "registry notifications",
        include_str!("migrations/0007_registry_notify.sql"),
    ),
    (
        8,
        "relay leases",
        include_str!("migrations/0008_relay_leases.sql"),
    ),
    (9, "awaits", include_str!("migrations/0009_awaits.sql")),
    (
        10,
        "queue holds",
        include_str!("migrations/0010_queue_holds.sql"),
    ),
];

/// The key of the advisory lock migrations take: "flowhost" in ASCII.
const LOCK: i64 = 0x666c_6f77_686f_7374;

/// The schema version this release writes.
pub const SCHEMA: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
#[error(
    "the database's schema is version {found}, newer than this release's ({SCHEMA}): run a newer release"
)]
struct TooNew {
    found: i32,
}

/// Applies the migrations `client`'s database lacks; returns how many.
pub async fn apply(client: &mut Client) -> Result<usize, StoreError> {
    let op = "migrate the schema";
    let tx = client.transaction().await.map_err(pg(op))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await
        .map_err(pg(op))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS flowhost_schema (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(pg(op))?;
    let current: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM flowhost_schema", &[])
        .await
        .map_err(pg(op))?
        .get(0);
    if current > SCHEMA {
        return Err(StoreError::Corrupt {
            key: "flowhost_schema".into(),
            cause: Box::new(TooNew { found: current }),
        });
    }
    let mut applied = 0;
    for (version, name, sql) in MIGRATIONS.iter().filter(|(v, ..)| *v > current) {
        tx.batch_execute(sql).await.map_err(pg(op))?;
        tx.execute(
            "INSERT INTO flowhost_schema (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await
        .map_err(pg(op))?;
        applied += 1;
    }
    tx.commit().await.map_err(pg(op))?;
    if applied > 0 {
        tracing::info!(applied, schema = SCHEMA, "migrated the PostgreSQL schema");
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_run_from_one_without_gaps() {
        for (i, (version, ..)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version, i as i32 + 1);
        }
    }
}
