"""Step `send_confirmation`: publishes `order.confirmed` (keyed by the order id) and adds
`{"confirmation_event"}` to the context. The host holds the event until the step's result
is durable. Nothing to compensate."""

from flowhost import Ctx, Step, StepInfo, events

step = Step()


@step.execute("send_confirmation")
def confirm(ctx: Ctx, info: StepInfo) -> dict:
    order_id = ctx.get("order_id", str)
    event = {
        "order_id": order_id,
        "user_id": ctx.get("user_id", int),
        "total_amount": ctx.get("total_amount", float),
    }
    return {"confirmation_event": events.publish("order.confirmed", event, key=order_id)}
