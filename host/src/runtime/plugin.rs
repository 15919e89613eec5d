//! A loaded plugin: one component version, compiled, checked against the worlds and
//! pre-instantiated, ready for a fresh instance per call.

use std::fmt;
use std::sync::Arc;

use wasmtime::wasmparser::Parser;

use super::CallMetrics;
use super::compile::{self, Compiled};
use super::state::HostState;
use super::{PluginSettings, Runtime};
use crate::bindings::export_names::{EVENT_HANDLER, SAGA_STEP};
use crate::bindings::{HandlerPluginPre, StepPluginPre};

/// The worlds of `flowhost:plugin` a component can implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// Exports `saga-step`.
    Step,
    /// Exports `event-handler`.
    Handler,
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            World::Step => "step-plugin",
            World::Handler => "handler-plugin",
        })
    }
}

/// Why a component cannot be used as a plugin. Each message fits on one line.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not WebAssembly at all.
    #[error("not a WebAssembly file (no `\\0asm` header)")]
    NotWasm,
    /// A core module where a component is needed.
    #[error(
        "a core WebAssembly module, not a component: build for wasm32-wasip2, or wrap it with `wasm-tools component new`"
    )]
    CoreModule,
    /// The component does not validate or compile.
    #[error("invalid component: {0}")]
    Compile(String),
    /// The component imports something the host does not provide.
    #[error("imports what the host does not provide: {0}")]
    Link(String),
    /// The component exports neither world's interface.
    #[error("implements neither `step-plugin` nor `handler-plugin`: it exports [{}]", .0.join(", "))]
    NoWorld(Vec<String>),
    /// The component exports a world's interface with different types.
    #[error("exports `{0}` with types that do not match flowhost:plugin@0.1.0: {1}")]
    Mismatch(&'static str, String),
}

/// A compiled, checked, pre-instantiated plugin version.
pub struct Plugin {
    settings: PluginSettings,
    digest: String,
    size: usize,
    imports: Vec<String>,
    compiled: Compiled,
    step: Option<StepPluginPre<HostState>>,
    handler: Option<HandlerPluginPre<HostState>>,
    /// Its series of the call metrics.
    metrics: CallMetrics,
}

impl Plugin {
    pub(super) fn load(
        runtime: &Runtime,
        settings: PluginSettings,
        wasm: &[u8],
    ) -> Result<Self, LoadError> {
        if Parser::is_core_wasm(wasm) {
            return Err(LoadError::CoreModule);
        }
        if !Parser::is_component(wasm) {
            return Err(LoadError::NotWasm);
        }
        let digest = compile::digest(wasm);
        let compiled = match &runtime.compiled {
            Some(cache) => cache.load_or_compile(&runtime.engine, &digest, wasm),
            None => compile::compile(&runtime.engine, wasm),
        };
        let (component, compiled) = compiled.map_err(|e| LoadError::Compile(one_line(&e)))?;
        let engine = &runtime.engine;
        let ty = component.component_type();
        let imports = ty
            .imports(engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let exports: Vec<String> = ty
            .exports(engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let pre = runtime
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(one_line(&e)))?;
        let step = exports
            .iter()
            .any(|e| e == SAGA_STEP)
            .then(|| StepPluginPre::new(pre.clone()))
            .transpose()
            .map_err(|e| LoadError::Mismatch(SAGA_STEP, one_line(&e)))?;
        let handler = exports
            .iter()
            .any(|e| e == EVENT_HANDLER)
            .then(|| HandlerPluginPre::new(pre))
            .transpose()
            .map_err(|e| LoadError::Mismatch(EVENT_HANDLER, one_line(&e)))?;
        if step.is_none() && handler.is_none() {
            return Err(LoadError::NoWorld(exports));
        }
        tracing::info!(
            plugin = %settings.name,
            digest = &digest[..12],
            cached = compiled.cached,
            took = ?compiled.took,
            "plugin loaded"
        );
        Ok(Self {
            metrics: CallMetrics::new(&settings.name),
            settings,
            digest,
            size: wasm.len(),
            imports,
            compiled,
            step,
            handler,
        })
    }

    /// The plugin's configured name.
    pub fn name(&self) -> &Arc<str> {
        &self.settings.name
    }

    /// Grants and limits.
    pub fn settings(&self) -> &PluginSettings {
        &self.settings
    }

    /// SHA-256 of the component, hex: this version's identity.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Size of the component in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// What the component imports, by name.
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// Whether the code was compiled now or loaded from the cache, and how long it took.
    pub fn compiled(&self) -> Compiled {
        self.compiled
    }

    /// The worlds it implements.
    pub fn worlds(&self) -> Vec<World> {
        let mut worlds = Vec::new();
        if self.step.is_some() {
            worlds.push(World::Step);
        }
        if self.handler.is_some() {
            worlds.push(World::Handler);
        }
        worlds
    }

    pub(super) fn step_pre(&self) -> Option<&StepPluginPre<HostState>> {
        self.step.as_ref()
    }

    pub(super) fn handler_pre(&self) -> Option<&HandlerPluginPre<HostState>> {
        self.handler.as_ref()
    }

    pub(super) fn metrics(&self) -> &CallMetrics {
        &self.metrics
    }
}

/// wasmtime's error chain on one line.
fn one_line(e: &wasmtime::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}
