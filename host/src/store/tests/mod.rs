//! The store's behaviour, one test body run on every backend (sled in a fresh directory,
//! PostgreSQL in a fresh database that the test creates and drops).
//!
//! PostgreSQL is the machine's: `FLOWHOST_TEST_POSTGRES` names a database to connect to
//! for creating the test's own (default `postgres://postgres@127.0.0.1:5432/postgres`).

mod events;
mod migrations;
mod registry;
pub(crate) mod runs;

use std::sync::Arc;

use super::Store;
use super::postgres::PgStore;
use super::sled::SledStore;

/// Where the backends' tests create their databases.
fn admin_url() -> String {
    std::env::var("FLOWHOST_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A store of one backend, fresh, with what keeps it alive and cleans it up.
pub(crate) struct TestStore {
    pub store: Arc<dyn Store>,
    place: Place,
}

enum Place {
    Sled(tempfile::TempDir),
    Postgres(Database),
}

impl TestStore {
    /// A sled store in a fresh directory.
    pub fn sled() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            store: Arc::new(SledStore::open(dir.path()).unwrap()),
            place: Place::Sled(dir),
        }
    }

    /// A PostgreSQL store in a fresh database.
    pub async fn postgres() -> Self {
        let database = Database::create().await;
        Self {
            store: Arc::new(PgStore::connect(&database.url, 4).await.unwrap()),
            place: Place::Postgres(database),
        }
    }

    /// The same data opened anew, as a restart (or another node) would.
    pub async fn reopen(self) -> Self {
        let Self { store, place } = self;
        drop(store);
        let store: Arc<dyn Store> = match &place {
            Place::Sled(dir) => Arc::new(SledStore::open(dir.path()).unwrap()),
            Place::Postgres(database) => {
                Arc::new(PgStore::connect(&database.url, 4).await.unwrap())
            }
        };
        Self { store, place }
    }
}

/// A database of its own for one test, dropped with it.
struct Database {
    name: String,
    url: String,
}

impl Database {
    async fn create() -> Self {
        let name = format!(
            "flowhost_test_{}",
            ulid::Ulid::new().to_string().to_lowercase()
        );
        let admin = admin_url();
        let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin} (FLOWHOST_TEST_POSTGRES): {e}"));
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let mut config: tokio_postgres::Config = admin.parse().unwrap();
        config.dbname(&name);
        let url = format!(
            "postgres://{}@{}:{}/{name}",
            config.get_user().unwrap_or("postgres"),
            match config.get_hosts().first() {
                Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
                _ => "127.0.0.1".to_owned(),
            },
            config.get_ports().first().copied().unwrap_or(5432),
        );
        Self { name, url }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // Drop is not async: a thread of its own with a runtime of its own drops the
        // database, forcing off the connections the store's pool still holds.
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let (client, connection) =
                    tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!(
                "could not drop the test database {}: {dropped:?}",
                self.name
            );
        }
    }
}

/// Each `async fn name(store: TestStore) { ... }` becomes a test per backend:
/// `sled::name` and `postgres::name`.
macro_rules! on_every_backend {
    ($(
        $(#[$meta:meta])*
        async fn $name:ident($store:ident: TestStore) $body:block
    )*) => {
        mod sled {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let $store = $crate::store::tests::TestStore::sled();
                    $body
                }
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let $store = $crate::store::tests::TestStore::postgres().await;
                    $body
                }
            )*
        }
    };
}
pub(crate) use on_every_backend;
