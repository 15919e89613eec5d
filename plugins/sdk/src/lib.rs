//! # flowhost-sdk
//!
//! The guest SDK for flowhost plugins: WebAssembly components (built for `wasm32-wasip2`)
//! that serve saga steps or handle events, talking to the outside world only through the
//! host interfaces of `flowhost:plugin@0.1.0` (the repository's `wit/`).
//!
//! - [`Step`] + [`export_step!`]: a saga step plugin (world `step-plugin`). [`Ctx`] reads the
//!   run's context; [`StepError::retryable`] / [`StepError::fatal`] and the `From`
//!   conversions in [`step`] decide between a retry and a compensation.
//! - [`Handler`] + [`export_handler!`]: an event handler plugin (world `handler-plugin`).
//! - Host capabilities: [`services`] (named HTTP services, JSON), [`cache`], [`events`],
//!   [`log`], [`config`].
//! - [`bindings`]: the raw generated bindings, for what the helpers hide.
//!
//! A plugin crate is a `cdylib` that implements one of the two traits and invokes one of the
//! two macros, once; it then targets exactly that world. `use flowhost_sdk::prelude::*`
//! brings in what a plugin usually needs.
//!
//! Every call runs in a fresh instance, possibly more than once for the same step
//! (at-least-once delivery): keep no state in globals, and make repeats harmless with the
//! step's idempotency key (see [`Step`]).

pub mod bindings;
pub mod cache;
pub mod config;
pub mod events;
pub mod handler;
pub mod log;
pub mod prelude;
pub mod services;
pub mod step;

pub use handler::{Event, Handler};
pub use serde_json::{self, Value, json};
pub use step::{Ctx, Step, StepError, StepInfo, StepResult};

/// Exports a [`Step`] implementation as the plugin's `saga-step`, making the component a
/// `step-plugin`. Invoke it once per crate, at module level.
///
/// ```ignore
/// struct MyStep;
/// impl flowhost_sdk::Step for MyStep { /* ... */ }
/// flowhost_sdk::export_step!(MyStep);
/// ```
#[macro_export]
macro_rules! export_step {
    ($step:ty) => {
        const _: () = {
            type FlowhostStepExport = $crate::step::StepExport<$step>;
            $crate::bindings::step::export!(FlowhostStepExport with_types_in $crate::bindings::step);
        };
    };
}

/// Exports a [`Handler`] implementation as the plugin's `event-handler`, making the
/// component a `handler-plugin`. Invoke it once per crate, at module level.
///
/// ```ignore
/// struct MyHandler;
/// impl flowhost_sdk::Handler for MyHandler { /* ... */ }
/// flowhost_sdk::export_handler!(MyHandler);
/// ```
#[macro_export]
macro_rules! export_handler {
    ($handler:ty) => {
        const _: () = {
            type FlowhostHandlerExport = $crate::handler::HandlerExport<$handler>;
            $crate::bindings::handler::export!(
                FlowhostHandlerExport with_types_in $crate::bindings::handler
            );
        };
    };
}
