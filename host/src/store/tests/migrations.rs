//! The PostgreSQL schema: applied once however many nodes start at once, refused when a
//! newer release wrote it.

use super::Database;
use crate::store::StoreError;
use crate::store::postgres::{PgStore, SCHEMA};

async fn client(database: &Database) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&database.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_nodes_starting_at_once_apply_the_schema_once() {
    let database = Database::create().await;
    let starts: Vec<_> = (0..8)
        .map(|_| {
            let url = database.url.clone();
            tokio::spawn(async move { PgStore::connect(&url, 1, "test").await.map(drop) })
        })
        .collect();
    for start in starts {
        start.await.unwrap().unwrap();
    }
    let rows = client(&database)
        .await
        .query("SELECT version FROM flowhost_schema ORDER BY version", &[])
        .await
        .unwrap();
    let versions: Vec<i32> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(versions, (1..=SCHEMA).collect::<Vec<_>>());
    // And once more, later: nothing to do.
    PgStore::connect(&database.url, 1, "test").await.unwrap();
}

#[tokio::test]
async fn a_schema_newer_than_this_release_is_refused() {
    let database = Database::create().await;
    PgStore::connect(&database.url, 1, "test").await.unwrap();
    client(&database)
        .await
        .execute(
            "INSERT INTO flowhost_schema (version, name) VALUES ($1, 'from the future')",
            &[&(SCHEMA + 1)],
        )
        .await
        .unwrap();
    let Err(error) = PgStore::connect(&database.url, 1, "test").await else {
        panic!("a newer schema was accepted");
    };
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains("newer"), "{error}");
}

#[tokio::test]
async fn an_unreachable_database_is_a_retryable_error() {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let Err(error) = PgStore::connect(
        &format!("postgres://postgres@127.0.0.1:{port}/x"),
        1,
        "test",
    )
    .await
    else {
        panic!("connected to nothing");
    };
    assert!(error.is_retryable(), "{error}");
    let Err(error) = PgStore::connect("not a url", 1, "test").await else {
        panic!("connected to a typo");
    };
    assert!(error.to_string().contains("url"), "{error}");
}

/// A flush is a synchronous commit of this store's flush mark; concurrent flushes share one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_flushes_share_synchronous_commits() {
    use crate::store::Flush;
    let database = Database::create().await;
    let store = std::sync::Arc::new(PgStore::connect(&database.url, 4, "test").await.unwrap());
    let flushes: Vec<_> = (0..32)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.flush().await })
        })
        .collect();
    for flush in flushes {
        flush.await.unwrap().unwrap();
    }
    let rows = client(&database)
        .await
        .query("SELECT flushes FROM flush_marks", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "one row for this store");
    let commits: i64 = rows[0].get(0);
    assert!(
        (1..=32).contains(&commits),
        "{commits} commits for 32 flushes"
    );
}

/// What PostgreSQL cannot hold (a NUL in JSON) is refused for good, not "try again later".
#[tokio::test]
async fn a_value_postgres_cannot_hold_is_rejected_not_retryable() {
    use crate::store::RunStore;
    let database = Database::create().await;
    let store = PgStore::connect(&database.url, 1, "test").await.unwrap();
    let mut run = crate::store::tests::runs::run("a", 1, None);
    run.input
        .insert("x".into(), serde_json::Value::String("a\u{0}b".into()));
    let error = store.create(&run).await.unwrap_err();
    assert!(matches!(error, StoreError::Rejected { .. }), "{error}");
    assert!(!error.is_retryable());
}
