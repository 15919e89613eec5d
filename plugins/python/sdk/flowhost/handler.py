"""Event handlers: `handler(fn)` makes the `EventHandler` export from a function of one
`Event`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Optional


@dataclass(frozen=True)
class Event:
    """An event as a handler receives it, `data` parsed."""

    #: Unique per event; a repeat (at-least-once delivery) should count as done.
    id: str
    topic: str
    source: str
    #: Publication time, milliseconds since the Unix epoch.
    time_ms: int
    #: The run that caused the event, if one did.
    correlation_id: Optional[str]
    data: Any


def handler(fn: Callable[[Event], None]) -> type:
    """The class componentize-py instantiates as the `event-handler` export: name it
    `EventHandler` in the app module. Anything `fn` raises fails the delivery, which the
    host retries and then dead-letters."""
    from componentize_py_types import Err
    from wit_world import exports

    class EventHandler(exports.EventHandler):
        def handle(self, event: Any) -> None:
            try:
                fn(
                    Event(
                        event.id,
                        event.topic,
                        event.source,
                        event.time_ms,
                        event.correlation_id,
                        json.loads(event.data),
                    )
                )
            except Exception as error:  # noqa: BLE001 - every failure must reach the host
                raise Err(f"{type(error).__name__}: {error}") from None

    return EventHandler
