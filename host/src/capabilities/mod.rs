//! The host interfaces of `flowhost:plugin`, one module per WIT interface.
//!
//! Every capability has the same three phases:
//! 1. **link** once at start: [`add_to_linker`] wires each interface to a getter that lends
//!    the capability's per-call context out of [`HostState`](crate::state::HostState), so
//!    that no capability knows the others;
//! 2. **build** its shared part once from the configuration ([`Capabilities::new`]): the
//!    HTTP client and service table, the cache, the event limits;
//! 3. **prepare** a cheap per-call context (`*Ctx`) for each plugin call, holding clones of
//!    the shared handles and the calling plugin's grants.
//!
//! Each `*Ctx` implements its interface's generated `Host` trait in its `host.rs`, and can
//! be driven directly in tests without any wasm.

pub mod cache;
pub mod config;
pub mod events;
pub mod log;
pub mod services;

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use crate::bindings;
use crate::config::Config;
use crate::state::HostState;

/// The shared halves of all capabilities, built once from the configuration.
#[derive(Clone)]
pub struct Capabilities {
    /// The service table and HTTP client.
    pub services: Arc<services::Services>,
    /// The cache all plugins share, namespaced per plugin.
    pub cache: Arc<cache::Cache>,
    /// Limits on published events.
    pub events: Arc<events::EventsConfig>,
    /// Where successful calls' events go.
    pub sink: Arc<dyn events::EventSink>,
}

impl Capabilities {
    /// Builds every capability's shared state from `config`; events go to `sink`.
    pub fn new(
        config: &Config,
        sink: Arc<dyn events::EventSink>,
    ) -> Result<Self, services::ServicesError> {
        Ok(Self {
            services: Arc::new(services::Services::new(&config.services)?),
            cache: Arc::new(cache::Cache::new(&config.cache)),
            events: Arc::new(config.events.clone()),
            sink,
        })
    }
}

/// Links every `flowhost:plugin` host interface into `linker`.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    bindings::types::add_to_linker::<_, HasSelf<HostState>>(linker, |state| state)?;
    bindings::services::add_to_linker::<_, HasSelf<services::ServicesCtx>>(linker, |s| {
        &mut s.services
    })?;
    bindings::cache::add_to_linker::<_, HasSelf<cache::CacheCtx>>(linker, |s| &mut s.cache)?;
    bindings::events::add_to_linker::<_, HasSelf<events::EventsCtx>>(linker, |s| &mut s.events)?;
    bindings::log::add_to_linker::<_, HasSelf<log::LogCtx>>(linker, |s| &mut s.log)?;
    bindings::config::add_to_linker::<_, HasSelf<config::ConfigCtx>>(linker, |s| &mut s.config)?;
    Ok(())
}
