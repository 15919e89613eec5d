//! A database of its own for one test or benchmark, created on the server that
//! `FLOWHOST_TEST_POSTGRES` names (default `postgres://postgres@127.0.0.1:5432/postgres`,
//! the machine's, trust auth) and dropped with it.

/// The server scratch databases are made on.
fn admin_url() -> String {
    std::env::var("FLOWHOST_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh, empty database, dropped (its connections forced off) when this is.
pub struct ScratchDatabase {
    name: String,
    /// Where it is, for [`super::PgStore::connect`] and `[store] url`.
    pub url: String,
}

impl ScratchDatabase {
    /// Creates one. Panics when the server cannot be reached: it is for tests.
    pub async fn create() -> Self {
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
            .unwrap_or_else(|e| panic!("creating a database on {admin}: {e}"));
        let config: tokio_postgres::Config = admin.parse().expect("FLOWHOST_TEST_POSTGRES");
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

#[cfg(test)]
impl ScratchDatabase {
    /// The plan PostgreSQL makes once for `sql` (parameters of `types`, as `PREPARE` takes
    /// them) and keeps, as the store's connections do (`force_generic_plan`), shown by
    /// `EXPLAIN EXECUTE` with `args`, on the store's schema and no statistics yet.
    pub(crate) async fn generic_plan(&self, sql: &str, types: &str, args: &str) -> String {
        drop(super::PgStore::connect(&self.url, 1, "plan").await.unwrap());
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
            .batch_execute(&format!(
                "SET plan_cache_mode = force_generic_plan;
                 PREPARE statement ({types}) AS {sql}"
            ))
            .await
            .unwrap();
        let rows = client
            .query(&format!("EXPLAIN EXECUTE statement ({args})"), &[])
            .await
            .unwrap();
        let lines: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
        lines.join("\n")
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        // Drop is not async: a thread of its own with a runtime of its own drops the
        // database, forcing off the connections a store's pool still holds.
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
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
                "could not drop the scratch database {}: {dropped:?}",
                self.name
            );
        }
    }
}
