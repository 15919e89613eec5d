"""Step `reserve_inventory`: reserves every item of the run with the `inventory` service
and adds `{"reservations": [ids]}` to the context; compensation releases them.

Each reservation is its own call, told apart by an `idempotency-key` (the product id), so a
retried step gets the same reservations back instead of new ones."""

from typing import List

from flowhost import Ctx, ServiceError, Step, StepError, StepInfo, log, services
from flowhost.services import encode_segment

step = Step()


@step.execute("reserve_inventory")
def reserve(ctx: Ctx, info: StepInfo) -> dict:
    order_id = ctx.get("order_id", str)
    items = ctx.get("items", list)
    # Every item is checked before the first reservation: a bad one found halfway would
    # fail the step with reservations held and no compensation to come.
    for item in items:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("product_id"), str)
            and isinstance(item.get("quantity"), int)
        ):
            raise StepError.fatal("`items` must be a list of {product_id, quantity}")
    reservations: List[str] = []
    for item in items:
        request = {
            "order_id": order_id,
            "product_id": item["product_id"],
            "quantity": item["quantity"],
        }
        try:
            reservation = services.post(
                "inventory", "/reservations", request, idempotency_key=item["product_id"]
            )
        except ServiceError as error:
            failure = (
                StepError.fatal(f"product {item['product_id']} is out of stock")
                if error.status == 409
                else StepError.of(error)
            )
            # A retryable failure keeps what this attempt reserved: the retry sends the same
            # keys and gets them back. A fatal one ends the step without a compensation, so
            # release them here.
            if not failure.is_retryable:
                try:
                    release_all(reservations)
                except StepError as release:
                    if release.is_retryable:
                        raise StepError.retryable(f"{failure.message}; {release.message}") from None
                    log.error(f"reservations {reservations} may be left over: {release.message}")
            raise failure from None
        reservations.append(reservation["reservation_id"])
    return {"reservations": reservations}


@step.compensate("reserve_inventory")
def release(ctx: Ctx, info: StepInfo) -> dict:
    release_all(ctx.opt("reservations", []))
    return {}


def release_all(reservations: List[str]) -> None:
    """Releases `reservations`; one already gone (404) counts as released."""
    for reservation in reservations:
        try:
            services.delete(
                "inventory",
                f"/reservations/{encode_segment(reservation)}",
                idempotency_key=f"release-{reservation}",
            )
        except ServiceError as error:
            if not error.is_not_found:
                raise StepError.of(error).context(f"releasing reservation {reservation}") from None
