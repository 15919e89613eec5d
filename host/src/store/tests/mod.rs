//! The store's behaviour, one test body run on every backend (sled in a fresh directory,
//! PostgreSQL in a fresh database that the test creates and drops).
//!
//! PostgreSQL is the machine's ([`ScratchDatabase`](super::postgres::ScratchDatabase)).

mod events;
mod leases;
mod migrations;
mod registry;
pub(crate) mod runs;

use std::sync::Arc;

use super::Store;
use super::postgres::{PgStore, ScratchDatabase as Database};
use super::sled::SledStore;

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
            store: Arc::new(PgStore::connect(&database.url, 4, "test").await.unwrap()),
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
                Arc::new(PgStore::connect(&database.url, 4, "test").await.unwrap())
            }
        };
        Self { store, place }
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
