//! flowhost: a workflow host for WebAssembly plugins.
//!
//! Teams ship step logic as sandboxed WebAssembly components; flowhost runs them as durable
//! sagas and event handlers. Plugins reach the outside world only through the capabilities
//! declared in `wit/` (the package `flowhost:plugin`).
//!
//! The tree shows the architecture, in layers, each using only those below it:
//!
//! 0. [`telemetry`]: metric names and trace context, which every layer may record;
//! 1. [`model`]: plain data — ids, runs and their journal, events, versions, workflow
//!    definitions, the retry policy, the clock;
//! 2. [`store`]: persistence of the model behind traits, sled or PostgreSQL (which
//!    several nodes share, under leases with fencing); [`retention`] deletes
//!    what outlived its time;
//! 3. [`bindings`] and [`capabilities`]: the host side of the WIT contract, one module per
//!    interface, each with its own configuration;
//! 4. [`runtime`]: the engine, compiled-code cache, limits, per-call stores and instances;
//! 5. [`plugins`] and [`workflows`]: the registries of plugin and workflow versions — hot
//!    swaps, pinning, collection; beside them, [`replay`] runs a recorded attempt again on
//!    a version and compares;
//! 6. [`events`] (outbox, relay, delivery, transports) and [`saga`] (the run state machine,
//!    admission and the engine that drives runs); [`schedules`] starts the runs of cron
//!    schedules through the engine, and [`cluster`] (membership, heartbeat) hands it the
//!    runs of nodes whose lease expired, and [`discovery`] registers the node in a service
//!    registry (Consul) while it serves;
//! 7. [`api`] (the HTTP routes) and [`config`] (which only gathers each subsystem's
//!    section).
//!
//! [`run`] wires them together and serves until `shutdown` resolves; [`serve`] does the
//! same over a store the caller opened.

pub mod api;
pub mod bindings;
pub mod capabilities;
pub mod cluster;
pub mod config;
pub mod discovery;
pub mod events;
pub mod model;
pub mod plugins;
pub mod replay;
pub mod retention;
pub mod runtime;
pub mod saga;
pub mod schedules;
pub mod store;
pub mod telemetry;
pub mod workflows;

pub use config::Config;
pub use runtime::{CallError, Plugin, PluginSettings, Runtime};

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;

use crate::capabilities::Capabilities;
use crate::capabilities::events::EventSink;
use crate::model::{Clock, SystemClock};
use crate::store::Store;

/// Serves the API on `listener` with everything `config` describes, on the store `[store]`
/// names (sled in the data directory, or PostgreSQL), until `shutdown` resolves; then stops
/// accepting, lets in-flight steps finish for up to `server.shutdown-grace`, and returns.
/// Unfinished runs resume on the next start.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store: Arc<dyn Store> = match config.store.kind {
        store::StoreKind::Sled => {
            let runs_dir = config.runs_dir();
            Arc::new(
                store::sled::SledStore::open(&runs_dir)
                    .with_context(|| format!("opening the run store in {}", runs_dir.display()))?,
            )
        }
        store::StoreKind::Postgres => {
            let url = config.store.url.as_deref().unwrap_or_default();
            let node = config.cluster.shared_id(listener.local_addr()?)?;
            Arc::new(
                store::postgres::PgStore::connect(url, config.store.pool_size, &node)
                    .await
                    .context("opening the PostgreSQL store (store.url)")?,
            )
        }
    };
    serve(listener, config, store, Arc::new(SystemClock), shutdown).await
}

/// As [`run`], over `store` and telling time by `clock`: what tests use to put a
/// [`store::faults::FaultyStore`] under a real host.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Config,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tracing::info!(config = %config.summary(), "starting");
    // First, so that nothing recorded while starting is lost.
    let metrics = config.telemetry.metrics.then(telemetry::metrics::install);
    // This node in a service registry while it serves: checked before anything starts.
    let listening = listener.local_addr()?;
    let registration = config
        .discovery
        .register
        .as_ref()
        .map(|register| {
            discovery::Registration::new(
                register,
                &config.cluster.address(listening),
                &config.cluster.id(listening),
            )
        })
        .transpose()
        .context("discovery.register")?;
    let outbox = Arc::new(events::Outbox::new(store.clone()));
    let runtime = Arc::new(runtime_for(&config, outbox.clone())?);
    let plugins = Arc::new(
        plugins::PluginRegistry::open(
            runtime.clone(),
            store.clone(),
            store.clone(),
            &config.registry,
            &config.plugins,
            &config.plugin_uses(),
        )
        .await?,
    );
    let workflows = Arc::new(
        workflows::WorkflowRegistry::open(store.clone(), store.clone(), &config.workflows).await?,
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
    let dispatcher = Arc::new(events::Dispatcher::new(
        outbox.clone(),
        transport,
        &config.subscriptions,
        &config.workflows,
        plugins.clone(),
    )?);
    let engine = saga::Engine::new(
        store.clone(),
        outbox,
        runtime.clone(),
        plugins.clone(),
        workflows,
        config.server.limits(),
        clock.clone(),
    );
    // Registered before it claims its own runs back, so that no other node claims them
    // meanwhile.
    let membership = Arc::new(
        cluster::Membership::join(
            store.clone(),
            config.cluster.node(listener.local_addr()?),
            &config.cluster,
        )
        .await
        .context("joining the cluster")?,
    );
    engine.recover().await?;
    dispatcher
        .start(runtime, Arc::new(engine.clone()))
        .await
        .context("declaring the subscriptions' queues")?;
    let stop_retention = tokio_util::sync::CancellationToken::new();
    // Renewed until the engine stopped: steps finishing in the grace period are still
    // this node's to record.
    let stop_membership = tokio_util::sync::CancellationToken::new();
    let registries = tokio::spawn(cluster::follow_registries(
        plugins.clone(),
        engine.workflows().clone(),
        store.clone(),
        stop_retention.clone(),
    ));
    let heartbeat = tokio::spawn({
        let membership = membership.clone();
        let (engine, stop) = (engine.clone(), stop_membership.clone());
        async move { membership.run(engine, stop).await }
    });
    let schedules = tokio::spawn(schedules::run(
        engine.clone(),
        store.clone(),
        clock.clone(),
        stop_retention.clone(),
    ));
    let retention = tokio::spawn(
        retention::Retention::new(store, config.retention.clone(), clock)
            .run(stop_retention.clone()),
    );
    let registration = registration.map(|registration| {
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move { registration.run(stop).await }
        });
        (stop, task)
    });
    // Deregistered as soon as the host is asked to stop, before it stops accepting, so
    // that clients move away first.
    let shutdown = async move {
        shutdown.await;
        if let Some((stop, task)) = registration {
            stop.cancel();
            let _ = task.await;
        }
    };
    tracing::info!(address = %listener.local_addr()?, "listening");
    let tokens = api::Tokens {
        admin: config.admin_token.clone(),
        trigger: config.trigger_token.clone(),
    };
    let router = api::router(
        engine.clone(),
        dispatcher.clone(),
        plugins,
        membership.clone(),
        &config.server,
        &tokens,
        config.registry.max_upload_mib.saturating_mul(1024 * 1024),
        metrics,
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await?;
    stop_retention.cancel();
    let _ = retention.await;
    let _ = schedules.await;
    let _ = registries.await;
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
    stop_membership.cancel();
    let _ = heartbeat.await;
    membership.leave().await;
    Ok(())
}

/// The runtime `config` describes, with its capabilities; the events of bare plugin calls
/// ([`Runtime::execute`], [`Runtime::handle`]) go to `sink`. What [`serve`] builds, for
/// embedders and tests that call plugins directly.
pub fn runtime_for(config: &Config, sink: Arc<dyn EventSink>) -> anyhow::Result<Runtime> {
    let capabilities = Capabilities::new(
        &config.services,
        &config.cache,
        config.events.limits(),
        sink,
    )?;
    Runtime::new(&config.runtime, &config.runtime_setup(), capabilities)
}
