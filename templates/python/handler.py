"""`{{name}}`: a flowhost event handler. It logs each event it is given and refuses one whose
data is not a JSON object; a refused event is retried and then dead-lettered.

Delivery is at least once: the same event id may come again, and should count as done.
"""

from flowhost import Event, handler, log


def handle(event: Event) -> None:
    if not isinstance(event.data, dict):
        raise ValueError(f"event {event.id} has no object as its data")
    log.info(f"{event.topic} {event.id}: {event.data}")


# componentize-py instantiates this class as the plugin's `event-handler` export.
EventHandler = handler(handle)
