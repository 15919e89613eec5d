"""The Python SDK's own logic, outside a component (`python3 -m unittest discover -s tests`
in plugins/python/sdk): routing by step name, the context's checks and the error mapping.
What it does with the host is tested from real components (tests/all/polyglot.rs)."""

import json
import unittest

from flowhost import (
    CacheError,
    Ctx,
    PublishError,
    ServiceError,
    Step,
    StepError,
    StepInfo,
    config,
)
from flowhost.errors import variant_kind
from flowhost.services import Response, encode_segment


def info(step: str) -> StepInfo:
    return StepInfo("run", "workflow", step, 1, "key")


class StepTest(unittest.TestCase):
    def setUp(self) -> None:
        self.step = Step()

        @self.step.execute("pay")
        def pay(ctx: Ctx, info: StepInfo) -> dict:
            if ctx.get("amount", float) > 100:
                raise ServiceError("http", "declined", 402)
            if ctx.opt("flaky"):
                raise ServiceError("http", "busy", 503)
            return {"paid": ctx.get("amount", float)}

        @self.step.compensate("pay")
        def refund(ctx: Ctx, info: StepInfo) -> None:
            return None

        @self.step.execute("note")
        def note(ctx: Ctx, info: StepInfo) -> list:
            return [1]

        @self.step.execute("tags")
        def tags(ctx: Ctx, info: StepInfo) -> dict:
            return {"tags": {"a", "b"}}

    def call(self, name: str, ctx: object, direction: str = "execute") -> str:
        return self.step.call(direction, info(name), json.dumps(ctx))

    def test_a_step_runs_by_name_and_its_output_is_json(self) -> None:
        self.assertEqual(json.loads(self.call("pay", {"amount": 5})), {"paid": 5})
        self.assertEqual(self.call("pay", {}, "compensate"), "{}")

    def test_service_errors_map_to_retryable_or_fatal(self) -> None:
        with self.assertRaises(StepError) as fatal:
            self.call("pay", {"amount": 500})
        self.assertEqual(fatal.exception.kind, "fatal")
        with self.assertRaises(StepError) as retryable:
            self.call("pay", {"amount": 5, "flaky": True})
        self.assertEqual(retryable.exception.kind, "retryable")

    def test_bad_input_and_unknown_steps_are_fatal(self) -> None:
        for name, ctx, says in [
            ("pay", {}, "no `amount`"),
            ("pay", {"amount": "x"}, "is not float"),
            ("pay", [1], "not a JSON object"),
            ("refund", {}, "unknown step"),
            ("note", {}, "returns a dict"),
            ("tags", {}, "output is not JSON"),
        ]:
            with self.assertRaises(StepError) as error:
                self.call(name, ctx)
            self.assertEqual(error.exception.kind, "fatal", name)
            self.assertIn(says, error.exception.message)
        with self.assertRaises(StepError) as error:
            self.step.call("execute", info("pay"), "{oops")
        self.assertIn("malformed context", error.exception.message)

    def test_any_other_exception_is_fatal_with_its_type(self) -> None:
        step = Step()

        @step.execute("bug")
        def bug(ctx: Ctx, info: StepInfo) -> dict:
            return {"x": ctx.data["missing"]}

        with self.assertRaises(StepError) as error:
            step.call("execute", info("bug"), "{}")
        self.assertEqual(error.exception.kind, "fatal")
        self.assertIn("KeyError", error.exception.message)


class ErrorsTest(unittest.TestCase):
    def test_which_errors_are_retryable(self) -> None:
        for kind, status, retryable in [
            ("timeout", None, True),
            ("connection", None, True),
            ("http", 408, True),
            ("http", 429, True),
            ("http", 500, True),
            ("http", 404, False),
            ("denied", None, False),
            ("decode", None, False),
        ]:
            self.assertEqual(ServiceError(kind, "", status).is_retryable, retryable, (kind, status))
        self.assertTrue(PublishError("unavailable", "").is_retryable)
        self.assertFalse(PublishError("denied", "").is_retryable)
        self.assertFalse(CacheError("too-large", "").is_retryable)
        self.assertEqual(StepError.of(ServiceError("timeout", "t")).kind, "retryable")

    def test_variant_case_names(self) -> None:
        class CallError_UnknownService:  # noqa: N801 - componentize-py's naming
            pass

        self.assertEqual(variant_kind(CallError_UnknownService()), "unknown-service")

    def test_responses_and_path_segments(self) -> None:
        self.assertIsNone(Response(204).json())
        self.assertEqual(Response(200, [("x-a", "1")], b'{"a": 1}').json(), {"a": 1})
        self.assertEqual(Response(200, [("x-a", "1")]).header("X-A"), "1")
        with self.assertRaises(ServiceError) as error:
            Response(200, [], b"nope").json()
        self.assertEqual(error.exception.kind, "decode")
        self.assertEqual(encode_segment("a/b c?"), "a%2Fb%20c%3F")

    def test_the_host_is_out_of_reach_outside_a_component(self) -> None:
        with self.assertRaises(RuntimeError):
            config.get("x")


if __name__ == "__main__":
    unittest.main()
