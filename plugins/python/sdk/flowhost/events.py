"""Publishing events for handlers and event-triggered workflows."""

from __future__ import annotations

import json
from typing import Any, Optional

from .errors import Never, Outside, PublishError, variant_kind

try:
    from componentize_py_types import Err
    from wit_world.imports import events as raw
except ImportError:
    raw = Outside("events")
    Err = Never


def publish(topic: str, data: Any, key: Optional[str] = None) -> str:
    """Publishes `data` (as JSON) on `topic` and returns the event's id; events with the
    same `key` are delivered in order. From a step, the event is held until the step's
    result is durable. Raises `PublishError`."""
    try:
        return raw.publish(topic, json.dumps(data), key)
    except Err as error:
        raise PublishError(variant_kind(error.value), error.value.value) from None
