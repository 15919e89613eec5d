// Step `send_confirmation`: publishes `order.confirmed` (keyed by the order id) and adds
// `{"confirmation_event"}` to the context. The host holds the event until the step's
// result is durable. Nothing to compensate.

import { events } from '../sdk/index.js';

export const sendConfirmation = {
  execute(ctx) {
    const orderId = ctx.get('order_id');
    const event = {
      order_id: orderId,
      user_id: ctx.get('user_id'),
      total_amount: ctx.get('total_amount'),
    };
    return { confirmation_event: events.publish('order.confirmed', event, orderId) };
  },
};
