"""Saga steps: `Step`, which routes the host's calls to the functions registered per step
name, and `Ctx`, the run's context."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

from .errors import StepError


@dataclass(frozen=True)
class StepInfo:
    """Who is calling a step, and why (the WIT `step-info`)."""

    run_id: str
    workflow: str
    step: str
    #: 1 for the first attempt in this direction, 2 for the first retry, ...
    attempt: int
    #: Stable for one run, step and direction; the host sends it on every service call.
    idempotency_key: str


class Ctx:
    """The run's context: the JSON object the run started with, merged with the outputs of
    the steps before this one."""

    def __init__(self, raw: str) -> None:
        self.raw = raw
        try:
            data = json.loads(raw)
        except ValueError as error:
            raise StepError.fatal(f"malformed context: {error}") from None
        if not isinstance(data, dict):
            raise StepError.fatal("the context is not a JSON object")
        #: The whole context, parsed.
        self.data: Dict[str, Any] = data

    def get(self, key: str, kind: Optional[type] = None) -> Any:
        """Field `key`; a missing (or null) field, or one that is not a `kind`, fails the
        step (fatal)."""
        value = self.data.get(key)
        if value is None:
            raise StepError.fatal(f"the context has no `{key}`")
        if kind is not None and not _is(value, kind):
            raise StepError.fatal(f"the context's `{key}` is not {kind.__name__}: {value!r}")
        return value

    def opt(self, key: str, default: Any = None) -> Any:
        """Field `key`, or `default` when it is missing or null."""
        value = self.data.get(key)
        return default if value is None else value

    def __contains__(self, key: str) -> bool:
        return key in self.data


def _is(value: Any, kind: type) -> bool:
    # JSON has one kind of number: an int is a float too, and a bool is no int.
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


#: What a step function is: the context and the step's info in, an object to merge into
#: the context out (None means `{}`).
StepFn = Callable[[Ctx, StepInfo], Optional[Dict[str, Any]]]


class Step:
    """The steps a plugin serves, by name, and the `SagaStep` export that calls them::

        step = Step()

        @step.execute("reserve_inventory")
        def reserve(ctx: Ctx, info: StepInfo) -> dict: ...

        @step.compensate("reserve_inventory")
        def release(ctx: Ctx, info: StepInfo) -> dict: ...

        SagaStep = step.export()

    A step without a compensation has nothing to undo; a name not registered fails fatally.
    """

    def __init__(self) -> None:
        self._steps: Dict[str, Tuple[Optional[StepFn], Optional[StepFn]]] = {}

    def execute(self, name: str) -> Callable[[StepFn], StepFn]:
        """Registers the decorated function as step `name`'s `execute`."""

        def register(fn: StepFn) -> StepFn:
            self._steps[name] = (fn, self._steps.get(name, (None, None))[1])
            return fn

        return register

    def compensate(self, name: str) -> Callable[[StepFn], StepFn]:
        """Registers the decorated function as step `name`'s `compensate`."""

        def register(fn: StepFn) -> StepFn:
            self._steps[name] = (self._steps.get(name, (None, None))[0], fn)
            return fn

        return register

    def include(self, other: "Step") -> "Step":
        """Serves `other`'s steps too (one component for several modules' steps)."""
        self._steps.update(other._steps)
        return self

    def call(self, direction: str, info: StepInfo, raw_ctx: str) -> str:
        """Runs step `info.step` in `direction` (`execute` or `compensate`) on the raw
        context; the output as JSON, or a `StepError`."""
        execute, compensate = self._steps.get(info.step, (None, None))
        if execute is None:
            raise StepError.unknown_step(info.step)
        fn = execute if direction == "execute" else compensate
        if fn is None:
            return "{}"
        try:
            output = fn(Ctx(raw_ctx), info)
        except Exception as error:  # noqa: BLE001 - every failure must reach the host
            raise StepError.of(error) from error
        if output is None:
            return "{}"
        if not isinstance(output, dict):
            raise StepError.fatal(f"a step returns a dict, not {output!r}")
        try:
            return json.dumps(output)
        except (TypeError, ValueError) as error:
            raise StepError.fatal(f"the step's output is not JSON: {error}") from None

    def export(self) -> type:
        """The class componentize-py instantiates as the `saga-step` export: name it
        `SagaStep` in the app module."""
        from componentize_py_types import Err
        from wit_world import exports
        from wit_world.imports.types import StepError_Fatal, StepError_Retryable

        steps = self

        def run(direction: str, raw_info: Any, ctx: str) -> str:
            info = StepInfo(
                raw_info.run_id,
                raw_info.workflow,
                raw_info.step,
                raw_info.attempt,
                raw_info.idempotency_key,
            )
            try:
                return steps.call(direction, info, ctx)
            except StepError as error:
                case = StepError_Retryable if error.is_retryable else StepError_Fatal
                raise Err(case(error.message)) from None

        class SagaStep(exports.SagaStep):
            def execute(self, info: Any, ctx: str) -> str:
                return run("execute", info, ctx)

            def compensate(self, info: Any, ctx: str) -> str:
                return run("compensate", info, ctx)

        return SagaStep
