// The code both versions of `marked` share; each crate's `lib.rs` defines `MARK` and
// includes this file.

use flowhost_sdk::prelude::*;

/// The plugin.
struct Marked;

impl Step for Marked {
    fn execute(info: StepInfo, ctx: Ctx) -> StepResult {
        mark(&info, "execute")?;
        let fail: Option<String> = ctx.get_opt("fail")?;
        if fail.as_deref() == Some(info.step.as_str()) {
            return Err(StepError::fatal(format!("{} fails as asked", info.step)));
        }
        Ok(json!({ info.step.clone(): MARK }))
    }

    fn compensate(info: StepInfo, _ctx: Ctx) -> StepResult {
        mark(&info, "compensate")?;
        Ok(json!({ format!("{}_undone", info.step): MARK }))
    }
}

/// Tells the `marks` service which version served this call, when the config asks for it.
fn mark(info: &StepInfo, direction: &str) -> Result<(), StepError> {
    if config::get("report").as_deref() != Some("true") {
        return Ok(());
    }
    let body = json!({
        "run_id": info.run_id,
        "step": info.step,
        "direction": direction,
        "mark": MARK,
    });
    let _: Value = services::post("marks", "/marks", &body)?;
    Ok(())
}

export_step!(Marked);
