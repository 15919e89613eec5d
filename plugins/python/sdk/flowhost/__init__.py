"""flowhost: the guest SDK for flowhost plugins written in Python, built into components with
componentize-py. It gives what the Rust SDK (plugins/sdk) gives:

- `Step` and `handler`: the exports, with the context parsed in and the output serialised
  out, and errors mapped to the WIT's `step-error` (retryable or fatal);
- `Ctx`: the run's context, `ctx.get(key)` failing the step (fatal) on a missing field;
- `services`: `get/post/put/delete` returning parsed JSON, `request` for the rest, and a
  `ServiceError` that knows whether it is retryable;
- `cache` (JSON or bytes, with a TTL), `events.publish`, `config.get`, `log`.

A step plugin::

    from flowhost import Ctx, Step, StepInfo, services

    step = Step()

    @step.execute("process_payment")
    def pay(ctx: Ctx, info: StepInfo) -> dict:
        payment = services.post("payments", "/payments", {"amount": ctx.get("total")})
        return {"payment_id": payment["payment_id"]}

    SagaStep = step.export()

componentize-py looks for `SagaStep` (or `EventHandler`, see `handler`) in the app module.
The host's interfaces come from the `wit_world` bindings componentize-py generates when it
builds the component. Each module binds its interface when it is imported, since a module
the app has not imported by the time componentize-py snapshots it is not in the component;
outside a component (a type check, a test of pure code) the package still imports, and any
call to the host raises `RuntimeError`.
"""

from . import cache, config, events, log, services
from .errors import CacheError, PublishError, ServiceError, StepError
from .handler import Event, handler
from .step import Ctx, Step, StepInfo

__all__ = [
    "CacheError",
    "Ctx",
    "Event",
    "PublishError",
    "ServiceError",
    "Step",
    "StepError",
    "StepInfo",
    "cache",
    "config",
    "events",
    "handler",
    "log",
    "services",
]
