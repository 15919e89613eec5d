//! flowhost: a workflow host for WebAssembly plugins.
//!
//! Teams ship step logic as sandboxed WebAssembly components; flowhost runs them as durable
//! sagas and event handlers. Plugins reach the outside world only through the capabilities
//! declared in `wit/` (the package `flowhost:plugin`).
//!
//! The tree shows the architecture:
//!
//! - [`config`]: the one typed configuration, layered from file, environment and flags;
//! - [`bindings`]: the host side of the WIT contract, generated once;
//! - [`runtime`]: the engine, compiled-code cache, limits and per-call instantiation;
//! - [`state`]: what one call's store holds;
//! - [`capabilities`]: one module per WIT interface the host implements;
//! - [`plugins`]: the registry of loaded plugins;
//! - [`saga`]: workflow definitions and the engine that drives runs;
//! - [`store`]: run persistence behind a trait, sled first;
//! - [`api`]: the HTTP API.
//!
//! [`run`] wires them together and serves until `shutdown` resolves.

pub mod api;
pub mod bindings;
pub mod capabilities;
pub mod config;
pub mod plugins;
pub mod runtime;
pub mod saga;
pub mod state;
pub mod store;

pub use config::Config;
pub use runtime::{CallError, Plugin, PluginSettings, Runtime};

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;

/// Serves the API on `listener` with everything `config` describes, until `shutdown`
/// resolves; then stops accepting, lets in-flight steps finish for up to
/// `server.shutdown-grace`, and returns. Unfinished runs resume on the next start.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tracing::info!(config = %config.summary(), "starting");
    let sink = Arc::new(capabilities::events::LogSink);
    let runtime = Arc::new(Runtime::new(
        &config,
        capabilities::Capabilities::new(&config, sink)?,
    )?);
    let plugins = plugins::PluginRegistry::load(&runtime, &config)?;
    let runs_dir = config.runs_dir();
    let store = store::sled::SledStore::open(&runs_dir)
        .with_context(|| format!("opening the run store in {}", runs_dir.display()))?;
    let engine = saga::Engine::new(
        Arc::new(store),
        runtime,
        &plugins,
        &config.workflows,
        config.server.max_concurrent_runs,
    )
    .map_err(anyhow::Error::msg)?;
    engine.recover()?;
    tracing::info!(address = %listener.local_addr()?, "listening");
    axum::serve(listener, api::router(engine.clone(), &config.server))
        .with_graceful_shutdown(shutdown)
        .await?;
    engine.shutdown(config.server.shutdown_grace).await;
    Ok(())
}
