//! `[server]`: the HTTP API and the admission of runs behind it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::saga::Limits;

/// `[server]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: std::net::SocketAddr,
    /// Largest request body, in bytes; a larger one is answered 413. Default 1 MiB.
    pub max_body_bytes: usize,
    /// Runs driven at once; more wait for a slot. Default 256.
    pub max_concurrent_runs: usize,
    /// Runs accepted and waiting for a slot; past them a start is answered 429 with
    /// `Retry-After`, and nothing is stored. Default 4096.
    pub max_pending_runs: usize,
    /// Longest `?wait=` a client may ask for. Default 60 s.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// On shutdown, how long in-flight steps may take to finish. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Serve the console's files from this directory instead of those built into the
    /// binary: for working on the console (`host/console`) without rebuilding. Default none.
    pub console_dir: Option<std::path::PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 8080).into(),
            max_body_bytes: 1024 * 1024,
            max_concurrent_runs: 256,
            max_pending_runs: 4096,
            max_wait: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
            console_dir: None,
        }
    }
}

impl ServerConfig {
    /// The engine's admission limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_concurrent_runs: self.max_concurrent_runs,
            max_pending_runs: self.max_pending_runs,
        }
    }
}
