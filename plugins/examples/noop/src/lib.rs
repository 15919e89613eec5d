//! `noop`: a step plugin whose `execute` and `compensate` return `{}` at once, for
//! benchmarking the host's per-call cost. It implements the raw generated trait rather than
//! [`flowhost_sdk::Step`], so the context is never parsed and no JSON code is linked in.

use flowhost_sdk::bindings::flowhost::plugin::types::{StepError, StepInfo};
use flowhost_sdk::bindings::step::exports::flowhost::plugin::saga_step::Guest;

/// The plugin: stateless, like every plugin (each call gets a fresh instance).
struct Noop;

impl Guest for Noop {
    fn execute(_info: StepInfo, _ctx: String) -> Result<String, StepError> {
        Ok(String::from("{}"))
    }

    fn compensate(_info: StepInfo, _ctx: String) -> Result<String, StepError> {
        Ok(String::from("{}"))
    }
}

flowhost_sdk::bindings::step::export!(Noop with_types_in flowhost_sdk::bindings::step);
