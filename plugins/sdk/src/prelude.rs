//! What a plugin usually needs: `use flowhost_sdk::prelude::*;`.

pub use crate::services::ServiceError;
pub use crate::{
    Ctx, Event, Handler, Step, StepError, StepInfo, StepResult, Value, export_handler, export_step,
    json,
};
pub use crate::{cache, config, events, log, services};
