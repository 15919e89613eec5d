//! Durable sagas: workflow definitions and the engine that drives runs through them.
//!
//! - [`definition`]: `[workflows.<name>]`: ordered steps, each with its plugin, whether it
//!   compensates, its retry policy and timeout;
//! - [`engine`]: runs on tokio tasks, journaled attempts, retries, compensation in reverse
//!   order, group-committed durability, recovery on start.

pub mod definition;
pub mod engine;

pub use definition::{RetryPolicy, StepConfig, WorkflowConfig};
pub use engine::{Engine, EngineError};
