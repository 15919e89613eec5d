"""`{{name}}`: a flowhost saga step. It greets the run's `name` with the `greeting` of its
configuration (`hello` when unset) and adds `{"message"}` to the run's context.

`execute` does the step's work; `compensate` undoes it when a later step fails. Both may run
more than once (at-least-once): `info.idempotency_key` is sent with every service call to
make a repeat harmless. Raise `StepError.retryable(...)` for a failure worth retrying,
`StepError.fatal(...)` for one that is not; a `ServiceError` knows which it is.
"""

from flowhost import Ctx, Step, StepInfo, config, log

step = Step()


@step.execute("{{name}}")
def greet(ctx: Ctx, info: StepInfo) -> dict:
    name = ctx.get("name", str)
    greeting = config.get("greeting", "hello")
    log.info(f"greeting {name} (attempt {info.attempt})")
    return {"message": f"{greeting}, {name}"}


@step.compensate("{{name}}")
def undo(ctx: Ctx, info: StepInfo) -> dict:
    # A greeting takes nothing back; a step that changed something undoes it here.
    return {}


# componentize-py instantiates this class as the plugin's `saga-step` export.
SagaStep = step.export()
