"""`greet`, a flowhost step plugin in Python (world `step-plugin`), built with componentize-py.

It exists to prove that a component made by componentize-py runs on the host: it uses the
`config`, `log` and `cache` imports and both kinds of result. Build it by hand with

    pip install -r requirements.txt
    componentize-py -d ../../wit -w step-plugin componentize -p src app -o greet.wasm

(from `plugins/python`; `cargo test` does it for the tests, see tests/artifacts/build.rs).

| step    | context        | returns                                                          |
|---------|----------------|------------------------------------------------------------------|
| `greet` | `{"name": s}`  | `{"message": "<greeting>, <name>", "runtime": "python"}`         |
| other   |                | `step-error.fatal("unknown step ...")`                           |

`greeting` comes from the plugin's configuration (`hello` when unset); the name is also
stored in the cache under `py:last`. `compensate` returns `{}`.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import cache, config, log
from wit_world.imports.types import StepError_Fatal, StepInfo


class SagaStep(exports.SagaStep):
    def execute(self, info: StepInfo, ctx: str) -> str:
        if info.step != "greet":
            raise Err(StepError_Fatal(f"unknown step `{info.step}`"))
        try:
            name = str(json.loads(ctx)["name"])
        except (ValueError, KeyError, TypeError) as error:
            raise Err(StepError_Fatal(f"bad context, want {{\"name\": ...}}: {error!r}"))
        greeting = config.get("greeting")
        if greeting is None:
            greeting = "hello"
        log.log(log.Level.INFO, f"greeting {name} from python")
        try:
            cache.set("py:last", name.encode(), None)
        except Err as error:
            raise Err(StepError_Fatal(f"the cache refused py:last: {error.value!r}"))
        return json.dumps({"message": f"{greeting}, {name}", "runtime": "python"})

    def compensate(self, info: StepInfo, ctx: str) -> str:
        return "{}"
