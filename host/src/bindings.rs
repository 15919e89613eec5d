//! The host side of the WIT contract in `wit/`, generated once here and used everywhere.
//!
//! Both worlds import the same host interfaces: `step-plugin` generates them, and
//! `handler-plugin` reuses those modules through `with`, so that there is one Rust type per
//! WIT type. Every import is `async` (a service call awaits the network) and `trappable`: a
//! host function returns `wasmtime::Result<T>` where `T` is the WIT result, an expected
//! failure travels to the guest as the WIT error inside `T`, and an `Err` is a trap, kept for
//! host bugs and lost host state.

#![expect(missing_docs, reason = "generated code; the WIT documents every item")]

mod step {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "step-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

mod handler {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "handler-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "flowhost:plugin/types": super::step::flowhost::plugin::types,
            "flowhost:plugin/services": super::step::flowhost::plugin::services,
            "flowhost:plugin/cache": super::step::flowhost::plugin::cache,
            "flowhost:plugin/events": super::step::flowhost::plugin::events,
            "flowhost:plugin/log": super::step::flowhost::plugin::log,
            "flowhost:plugin/config": super::step::flowhost::plugin::config,
        },
    });
}

pub use handler::{HandlerPlugin, HandlerPluginPre};
pub use step::flowhost::plugin::{cache, config, events, log, services, types};
pub use step::{StepPlugin, StepPluginPre};

/// The fully qualified names of the two exports, as they appear in a component.
pub mod export_names {
    /// Exported by a `step-plugin`.
    pub const SAGA_STEP: &str = "flowhost:plugin/saga-step@0.1.0";
    /// Exported by a `handler-plugin`.
    pub const EVENT_HANDLER: &str = "flowhost:plugin/event-handler@0.1.0";
}
