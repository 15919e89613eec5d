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
//! - [`plugins`]: the registry of plugin versions, hot swaps and the directory watch;
//! - [`saga`]: workflow definitions and the engine that drives runs;
//! - [`events`]: the durable outbox and delivery to subscriptions and triggers;
//! - [`store`]: persistence of runs and events behind traits, sled first;
//! - [`api`]: the HTTP API.
//!
//! [`run`] wires them together and serves until `shutdown` resolves.

pub mod api;
pub mod bindings;
pub mod capabilities;
pub mod config;
pub mod events;
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
    let runs_dir = config.runs_dir();
    let store = Arc::new(
        store::sled::SledStore::open(&runs_dir)
            .with_context(|| format!("opening the run store in {}", runs_dir.display()))?,
    );
    let outbox = Arc::new(events::Outbox::new(store.clone()));
    let runtime = Arc::new(Runtime::new(
        &config,
        capabilities::Capabilities::new(&config, outbox.clone())?,
    )?);
    let plugins = Arc::new(
        plugins::PluginRegistry::open(runtime.clone(), store.clone(), store.clone(), &config)
            .await?,
    );
    let _watch = config
        .registry
        .watch
        .then(|| plugins::watch::watch(plugins.clone()))
        .transpose()
        .context("watching the plugin files")?;
    let transport = events::transport::connect(&config.events.transport, store.clone())
        .await
        .context("connecting the event transport")?;
    let dispatcher = Arc::new(
        events::Dispatcher::new(
            outbox.clone(),
            transport,
            &config.subscriptions,
            &config.workflows,
            plugins.clone(),
        )
        .map_err(anyhow::Error::msg)?,
    );
    dispatcher.drop_orphans()?;
    let engine = saga::Engine::new(
        store,
        outbox,
        runtime.clone(),
        plugins.clone(),
        &config.workflows,
        config.server.max_concurrent_runs,
    )
    .map_err(anyhow::Error::msg)?;
    engine.recover()?;
    dispatcher
        .start(runtime, engine.clone())
        .await
        .context("declaring the subscriptions' queues")?;
    tracing::info!(address = %listener.local_addr()?, "listening");
    axum::serve(
        listener,
        api::router(engine.clone(), dispatcher.clone(), plugins, &config),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    let grace = config.server.shutdown_grace;
    if tokio::time::timeout(grace, dispatcher.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "deliveries still in flight after the grace period; they repeat on the next start"
        );
    }
    engine.shutdown(grace).await;
    Ok(())
}
