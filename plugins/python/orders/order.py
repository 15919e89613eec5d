"""Step `create_order`: creates the order with the `orders` service and adds
`{"order_status"}` to the context; compensation cancels it."""

from flowhost import Ctx, Step, StepInfo, services
from flowhost.services import encode_segment

step = Step()


@step.execute("create_order")
def create(ctx: Ctx, info: StepInfo) -> dict:
    request = {
        "order_id": ctx.get("order_id", str),
        "user_id": ctx.get("user_id", int),
        "items": ctx.get("items"),
        "total_amount": ctx.get("total_amount", float),
    }
    order = services.post("orders", "/orders", request)
    return {"order_status": order["status"]}


@step.compensate("create_order")
def cancel(ctx: Ctx, info: StepInfo) -> dict:
    order_id = ctx.get("order_id", str)
    services.request("orders", f"/orders/{encode_segment(order_id)}/cancel", "post")
    return {}
