//! The raw `wit-bindgen` bindings of `flowhost:plugin@0.1.0`, generated from the repository's
//! `wit/` folder at build time (wit-bindgen tracks every file it reads, so editing the WIT
//! rebuilds this crate).
//!
//! Layout:
//! - [`flowhost::plugin`]: the host imports (world `imports`), generated once: `types`,
//!   `services`, `cache`, `events`, `log`, `config`.
//! - [`step`]: world `step-plugin`. Its exports (`step::exports::flowhost::plugin::saga_step`)
//!   and its [`step::export!`](crate::bindings::step::export) macro; the imports are the
//!   shared ones above.
//! - [`handler`]: world `handler-plugin`, the same for `event-handler`.
//!
//! Each world's export macro carries that world's `component-type` custom section, so a
//! plugin ends up targeting exactly the world whose macro it invokes: a step plugin exports
//! only `saga-step`, a handler plugin only `event-handler`. Unused imports are dropped when
//! the module is turned into a component.
//!
//! Most plugins need none of this: [`crate::Step`], [`crate::Handler`] and the helper modules
//! wrap it. Use the raw bindings to see exactly what the host returned (say, the raw
//! `call-error`) or to skip JSON work altogether:
//!
//! ```ignore
//! use flowhost_sdk::bindings::step::exports::flowhost::plugin::saga_step::Guest;
//! use flowhost_sdk::bindings::flowhost::plugin::types::{StepError, StepInfo};
//!
//! struct Noop;
//!
//! impl Guest for Noop {
//!     fn execute(_: StepInfo, _: String) -> Result<String, StepError> {
//!         Ok("{}".to_string())
//!     }
//!     fn compensate(_: StepInfo, _: String) -> Result<String, StepError> {
//!         Ok("{}".to_string())
//!     }
//! }
//!
//! flowhost_sdk::bindings::step::export!(Noop with_types_in flowhost_sdk::bindings::step);
//! ```
#![expect(
    missing_docs,
    reason = "generated code: the WIT documents its items, not every case and field"
)]

wit_bindgen::generate!({
    path: "../../wit",
    world: "imports",
});

/// World `step-plugin`: the `saga-step` export and its `export!` macro.
pub mod step {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "step-plugin",
        with: {
            "flowhost:plugin/types@0.1.0": crate::bindings::flowhost::plugin::types,
            "flowhost:plugin/services@0.1.0": crate::bindings::flowhost::plugin::services,
            "flowhost:plugin/cache@0.1.0": crate::bindings::flowhost::plugin::cache,
            "flowhost:plugin/events@0.1.0": crate::bindings::flowhost::plugin::events,
            "flowhost:plugin/log@0.1.0": crate::bindings::flowhost::plugin::log,
            "flowhost:plugin/config@0.1.0": crate::bindings::flowhost::plugin::config,
        },
        pub_export_macro: true,
        default_bindings_module: "flowhost_sdk::bindings::step",
        export_macro_name: "export",
    });
}

/// World `handler-plugin`: the `event-handler` export and its `export!` macro.
pub mod handler {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "handler-plugin",
        with: {
            "flowhost:plugin/types@0.1.0": crate::bindings::flowhost::plugin::types,
            "flowhost:plugin/services@0.1.0": crate::bindings::flowhost::plugin::services,
            "flowhost:plugin/cache@0.1.0": crate::bindings::flowhost::plugin::cache,
            "flowhost:plugin/events@0.1.0": crate::bindings::flowhost::plugin::events,
            "flowhost:plugin/log@0.1.0": crate::bindings::flowhost::plugin::log,
            "flowhost:plugin/config@0.1.0": crate::bindings::flowhost::plugin::config,
        },
        pub_export_macro: true,
        default_bindings_module: "flowhost_sdk::bindings::handler",
        export_macro_name: "export",
    });
}
