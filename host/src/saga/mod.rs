//! Durable sagas: the run lifecycle and the engine that drives runs through it.
//!
//! - [`machine`]: the run lifecycle as a pure state machine (state and event in, state and
//!   actions out), with its property tests;
//! - [`scheduler`]: admission (slots, a bounded queue of pending runs) and the timers of
//!   runs waiting out a backoff;
//! - [`engine`]: the I/O around the machine: journaled attempts, records saved by
//!   compare-and-swap, group-committed durability, the lifecycle events, recovery on start.
//!
//! Workflow definitions are plain data ([`crate::model::WorkflowDefinition`]); their
//! versions live in [`crate::workflows`].

mod awaits;
pub mod engine;
mod histograms;
pub mod machine;
pub mod scheduler;

pub use engine::{Engine, EngineError};
pub use scheduler::Limits;
