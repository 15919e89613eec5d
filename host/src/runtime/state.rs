//! [`HostState`]: the data of one plugin call's `Store`.
//!
//! A store lives for one call, or for one run's consecutive calls of a plugin (see
//! [`super::WarmInstance`]), and holds everything a call may touch: the WASI context with
//! nothing granted, a `wasi:http` context that denies every outgoing request, the memory
//! limiter, and one context per `flowhost:plugin` capability. Capabilities reach their own
//! field only, through [`CapabilitiesView`].

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::PluginSettings;
use super::limits::MemoryLimiter;
use super::wasi::{DenyOutgoingHttp, sandboxed_wasi_ctx};
use crate::capabilities::cache::CacheCtx;
use crate::capabilities::config::ConfigCtx;
use crate::capabilities::events::EventsCtx;
use crate::capabilities::log::LogCtx;
use crate::capabilities::services::{CallMeta, ServicesCtx};
use crate::capabilities::{Capabilities, CapabilitiesView};
use crate::model::recording::Recording;
use crate::telemetry::metrics::PLUGIN_INSTANCES;

/// Who a call is for: the ids that tag its logs, events and service calls.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// The run this call serves, if it serves one.
    pub run_id: Option<Arc<str>>,
    /// The step this call serves, if it serves one.
    pub step: Option<Arc<str>>,
    /// The step's idempotency key, sent on every service call.
    pub idempotency_key: Option<String>,
    /// Sent as `X-Request-ID`: the run id, else a fresh id per call.
    pub request_id: String,
    /// The `traceparent` of the span the call is part of (the step's attempt, the
    /// handler's call): its service calls and events are its children.
    pub traceparent: Option<String>,
    /// Keep the call's service calls and cache reads ([`crate::model::recording`]).
    pub record: bool,
    /// Answer them from this recording instead ([`super::CallOptions::replay`]).
    pub replay: Option<Arc<Recording>>,
}

/// The data of one plugin call's store.
pub struct HostState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    deny_http: DenyOutgoingHttp,
    /// Enforces the plugin's memory cap and remembers whether it was hit.
    pub(crate) limiter: MemoryLimiter,
    /// The capabilities as this call sees them; replaced for each call of a reused store.
    pub(crate) call: PerCall,
}

impl HostState {
    /// Fresh state for one call of `plugin` on behalf of `call`.
    pub fn new(capabilities: &Capabilities, plugin: &PluginSettings, call: &CallContext) -> Self {
        metrics::gauge!(PLUGIN_INSTANCES).increment(1.0);
        Self {
            table: ResourceTable::new(),
            wasi: sandboxed_wasi_ctx(),
            http: WasiHttpCtx::new(),
            deny_http: DenyOutgoingHttp,
            limiter: MemoryLimiter::new(plugin.memory_limit_bytes),
            call: PerCall::new(capabilities, plugin, call),
        }
    }

    /// Points a reused store at its next call: that call's ids, and nothing pending from
    /// the previous one.
    pub fn next_call(
        &mut self,
        capabilities: &Capabilities,
        plugin: &PluginSettings,
        call: &CallContext,
    ) {
        self.call = PerCall::new(capabilities, plugin, call);
    }
}

/// The capability contexts, which depend on the call, not only on the plugin: its ids, and
/// whether it is recorded or replayed.
pub(crate) struct PerCall {
    pub(crate) services: ServicesCtx,
    pub(crate) cache: CacheCtx,
    pub(crate) events: EventsCtx,
    log: LogCtx,
    pub(crate) config: ConfigCtx,
}

impl PerCall {
    fn new(capabilities: &Capabilities, plugin: &PluginSettings, call: &CallContext) -> Self {
        let services = ServicesCtx::new(
            capabilities.services.clone(),
            plugin.services.clone(),
            CallMeta {
                request_id: call.request_id.clone(),
                idempotency_key: call.idempotency_key.clone(),
                traceparent: call.traceparent.clone(),
            },
        );
        let cache = CacheCtx::new(capabilities.cache.clone(), plugin.cache_namespace.clone());
        let events = EventsCtx::new(
            &plugin.name,
            plugin.publish.clone(),
            call.run_id.clone(),
            capabilities.events,
            call.traceparent.clone(),
        );
        let config = ConfigCtx::new(plugin.config.clone());
        let (services, cache, events, config) = match call.replay.as_deref() {
            Some(recording) => (
                services.replaying(&recording.calls),
                cache.replaying(&recording.cache),
                events.replaying(recording.events.iter().map(|e| e.id.clone())),
                config.replaying(&recording.config),
            ),
            None if call.record => (
                services.recording(),
                cache.recording(),
                events,
                config.recording(),
            ),
            None => (services, cache, events, config),
        };
        Self {
            services,
            cache,
            events,
            log: LogCtx::new(plugin.name.clone(), call.run_id.clone(), call.step.clone()),
            config,
        }
    }
}

/// A store's data lives as long as its instance: counting one counts the other.
impl Drop for HostState {
    fn drop(&mut self) {
        metrics::gauge!(PLUGIN_INSTANCES).decrement(1.0);
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.deny_http,
        }
    }
}

/// `types` declares types only; its `Host` trait has nothing to implement.
impl crate::bindings::types::Host for HostState {}

impl CapabilitiesView for HostState {
    fn services(&mut self) -> &mut ServicesCtx {
        &mut self.call.services
    }
    fn cache(&mut self) -> &mut CacheCtx {
        &mut self.call.cache
    }
    fn events(&mut self) -> &mut EventsCtx {
        &mut self.call.events
    }
    fn log(&mut self) -> &mut LogCtx {
        &mut self.call.log
    }
    fn config(&mut self) -> &mut ConfigCtx {
        &mut self.call.config
    }
}
