//! `[store]`: which backend holds runs, events and the registry.
//!
//! ```toml
//! [store]
//! kind = "postgres"                                  # default "sled"
//! url = "postgres://flowhost@db.internal:5432/flowhost"
//! pool-size = 16
//! ```

use serde::{Deserialize, Serialize};

/// `[store]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The backend. Default `sled`.
    pub kind: StoreKind,
    /// With `kind = "postgres"`: the database, as `postgres://user[:password]@host:port/db`
    /// (or key-value settings: `host=... dbname=...`). Usually set through
    /// `FLOWHOST_STORE__URL`, since it may hold a password.
    pub url: Option<String>,
    /// With `kind = "postgres"`: connections at most. Default 16.
    pub pool_size: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: StoreKind::default(),
            url: None,
            pool_size: 16,
        }
    }
}

/// Which backend `[store]` uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// The embedded store in `data-dir/runs`: one node.
    #[default]
    Sled,
    /// PostgreSQL: the store several nodes share.
    Postgres,
}

/// A `[store]` value that does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("store.{key}: {reason}")]
pub struct InvalidStore {
    /// The key.
    pub key: &'static str,
    /// Why.
    pub reason: &'static str,
}

impl StoreConfig {
    /// Checks that what the backend needs is there.
    pub fn validate(&self) -> Result<(), InvalidStore> {
        match self.kind {
            StoreKind::Sled => Ok(()),
            StoreKind::Postgres if self.url.as_deref().is_none_or(str::is_empty) => {
                Err(InvalidStore {
                    key: "url",
                    reason: "kind = \"postgres\" needs the database's url",
                })
            }
            StoreKind::Postgres if self.pool_size == 0 => Err(InvalidStore {
                key: "pool-size",
                reason: "must be at least 1",
            }),
            StoreKind::Postgres => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(value: serde_json::Value) -> Result<StoreConfig, serde_json::Error> {
        serde_json::from_value(value)
    }

    #[test]
    fn postgres_needs_a_url_and_a_pool() {
        let config = read(json!({"kind": "postgres"})).unwrap();
        assert_eq!(config.validate().unwrap_err().key, "url");
        let config = read(json!({"kind": "postgres", "url": "postgres://x@h/d", "pool-size": 0}));
        assert_eq!(config.unwrap().validate().unwrap_err().key, "pool-size");
        let config = read(json!({"kind": "postgres", "url": "postgres://x@h/d"})).unwrap();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(StoreConfig::default().kind, StoreKind::Sled);
        let typo = read(json!({"kind": "postgress"})).unwrap_err();
        assert!(typo.to_string().contains("postgress"), "{typo}");
        let unknown = read(json!({"urls": "x"})).unwrap_err();
        assert!(unknown.to_string().contains("urls"), "{unknown}");
    }
}
