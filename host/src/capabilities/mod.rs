//! The host interfaces of `flowhost:plugin`, one module per WIT interface.
//!
//! Every capability has the same three phases:
//! 1. **link** once at start: [`add_to_linker`] wires each interface to a getter of
//!    [`CapabilitiesView`], which the store's data implements, lending out the capability's
//!    per-call context, so that no capability knows the others or the store's data;
//! 2. **build** its shared part once from its own configuration section
//!    ([`Capabilities::new`]): the HTTP client and service table, the cache, the event
//!    limits;
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

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use crate::bindings;

/// The shared halves of all capabilities, built once from the configuration.
#[derive(Clone)]
pub struct Capabilities {
    /// The service table and HTTP client.
    pub services: Arc<services::Services>,
    /// The cache all plugins share, namespaced per plugin.
    pub cache: Arc<cache::Cache>,
    /// Limits on published events.
    pub events: events::PublishLimits,
    /// Where successful calls' events go.
    pub sink: Arc<dyn events::EventSink>,
}

impl Capabilities {
    /// Builds every capability's shared state from its section: `[services]`, `[cache]`
    /// and the `[events]` limits; the events of bare calls go to `sink`.
    pub fn new(
        services: &BTreeMap<String, services::ServiceConfig>,
        cache: &cache::CacheConfig,
        events: events::PublishLimits,
        sink: Arc<dyn events::EventSink>,
    ) -> Result<Self, services::ServicesError> {
        Ok(Self {
            services: Arc::new(services::Services::new(services)?),
            cache: Arc::new(cache::Cache::new(cache)),
            events,
            sink,
        })
    }
}

/// What a store's data lends the capabilities: each one its own per-call context. The
/// runtime's `HostState` implements it; a capability sees only its own field.
pub trait CapabilitiesView: bindings::types::Host + Send {
    /// The services capability's context.
    fn services(&mut self) -> &mut services::ServicesCtx;
    /// The cache capability's context.
    fn cache(&mut self) -> &mut cache::CacheCtx;
    /// The events capability's context.
    fn events(&mut self) -> &mut events::EventsCtx;
    /// The log capability's context.
    fn log(&mut self) -> &mut log::LogCtx;
    /// The config capability's context.
    fn config(&mut self) -> &mut config::ConfigCtx;
}

/// Links every `flowhost:plugin` host interface into `linker`.
pub fn add_to_linker<T: CapabilitiesView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    bindings::types::add_to_linker::<T, HasSelf<T>>(linker, |state| state)?;
    bindings::services::add_to_linker::<T, HasSelf<services::ServicesCtx>>(linker, T::services)?;
    bindings::cache::add_to_linker::<T, HasSelf<cache::CacheCtx>>(linker, T::cache)?;
    bindings::events::add_to_linker::<T, HasSelf<events::EventsCtx>>(linker, T::events)?;
    bindings::log::add_to_linker::<T, HasSelf<log::LogCtx>>(linker, T::log)?;
    bindings::config::add_to_linker::<T, HasSelf<config::ConfigCtx>>(linker, T::config)?;
    Ok(())
}
