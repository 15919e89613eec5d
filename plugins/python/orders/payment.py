"""Step `process_payment`: captures `total_amount` with the `payments` service and adds
`{"payment_id"}` to the context; compensation refunds it."""

from flowhost import Ctx, ServiceError, Step, StepError, StepInfo, services
from flowhost.services import encode_segment

step = Step()


@step.execute("process_payment")
def pay(ctx: Ctx, info: StepInfo) -> dict:
    request = {
        "order_id": ctx.get("order_id", str),
        "amount": ctx.get("total_amount", float),
        "method": ctx.get("payment_method", str),
    }
    try:
        payment = services.post("payments", "/payments", request)
    except ServiceError as error:
        if error.status == 402:
            raise StepError.fatal("payment declined") from None
        raise
    return {"payment_id": payment["payment_id"]}


@step.compensate("process_payment")
def refund(ctx: Ctx, info: StepInfo) -> dict:
    payment_id = ctx.opt("payment_id")
    if payment_id is not None:
        services.request("payments", f"/payments/{encode_segment(payment_id)}/refund", "post")
    return {}
