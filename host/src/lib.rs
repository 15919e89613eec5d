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
//! - [`plugins`]: the registry of loaded plugins.

pub mod bindings;
pub mod capabilities;
pub mod config;
pub mod plugins;
pub mod runtime;
pub mod state;

pub use config::Config;
pub use runtime::{CallError, Plugin, PluginSettings, Runtime};
