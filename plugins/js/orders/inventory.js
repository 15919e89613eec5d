// Step `reserve_inventory`: reserves every item of the run with the `inventory` service and
// adds `{"reservations": [ids]}` to the context; compensation releases them.
//
// Each reservation is its own call, told apart by an idempotency key (the product id), so a
// retried step gets the same reservations back instead of new ones.

import { StepError, encodeSegment, log, services } from '../sdk/index.js';

export const reserveInventory = {
  execute(ctx) {
    const orderId = ctx.get('order_id');
    const items = ctx.get('items');
    // Every item is checked before the first reservation: a bad one found halfway would
    // fail the step with reservations held and no compensation to come.
    const valid = (item) => typeof item?.product_id === 'string' && Number.isInteger(item.quantity);
    if (!Array.isArray(items) || !items.every(valid)) {
      throw StepError.fatal('`items` must be a list of {product_id, quantity}');
    }
    const reservations = [];
    for (const item of items) {
      const request = { order_id: orderId, product_id: item.product_id, quantity: item.quantity };
      let reservation;
      try {
        reservation = services.post('inventory', '/reservations', request, {
          idempotencyKey: item.product_id,
        });
      } catch (error) {
        const failure =
          error.status === 409
            ? StepError.fatal(`product ${item.product_id} is out of stock`)
            : StepError.from(error);
        // A retryable failure keeps what this attempt reserved: the retry sends the same
        // keys and gets them back. A fatal one ends the step without a compensation, so
        // release them here.
        if (!failure.retryable) {
          try {
            releaseAll(reservations);
          } catch (release) {
            if (release.retryable) {
              throw StepError.retryable(`${failure.message}; ${release.message}`);
            }
            log.error(`reservations ${reservations} may be left over: ${release.message}`);
          }
        }
        throw failure;
      }
      reservations.push(reservation.reservation_id);
    }
    return { reservations };
  },

  compensate(ctx) {
    releaseAll(ctx.opt('reservations', []));
  },
};

/** Releases `reservations`; one already gone (404) counts as released. */
function releaseAll(reservations) {
  for (const id of reservations) {
    try {
      services.delete('inventory', `/reservations/${encodeSegment(id)}`, {
        idempotencyKey: `release-${id}`,
      });
    } catch (error) {
      if (!error.notFound) throw StepError.from(error).context(`releasing reservation ${id}`);
    }
  }
}
