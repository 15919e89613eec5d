//! `{{name}}`: a flowhost saga step. It greets the run's `name` with the `greeting` of its
//! configuration (`hello` when unset) and adds `{"message"}` to the run's context.
//!
//! `execute` does the step's work; `compensate` undoes it when a later step fails. Both may
//! run more than once (at-least-once): `info.idempotency_key` is sent with every service call
//! to make a repeat harmless.

use flowhost_sdk::prelude::*;

/// The plugin.
struct Plugin;

impl Step for Plugin {
    fn execute(info: StepInfo, ctx: Ctx) -> StepResult {
        match info.step.as_str() {
            "{{name}}" => {
                let name: String = ctx.get("name")?;
                let greeting = config::get("greeting").unwrap_or_else(|| "hello".into());
                log::info!("greeting {name} (attempt {})", info.attempt);
                Ok(json!({ "message": format!("{greeting}, {name}") }))
            }
            other => Err(StepError::unknown_step(other)),
        }
    }

    fn compensate(info: StepInfo, _ctx: Ctx) -> StepResult {
        match info.step.as_str() {
            // A greeting takes nothing back; a step that changed something undoes it here.
            "{{name}}" => Ok(json!({})),
            other => Err(StepError::unknown_step(other)),
        }
    }
}

export_step!(Plugin);
