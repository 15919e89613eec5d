// Step `create_order`: creates the order with the `orders` service and adds
// `{"order_status"}` to the context; compensation cancels it.

import { encodeSegment, services } from '../sdk/index.js';

export const createOrder = {
  execute(ctx) {
    const order = services.post('orders', '/orders', {
      order_id: ctx.get('order_id'),
      user_id: ctx.get('user_id'),
      items: ctx.get('items'),
      total_amount: ctx.get('total_amount'),
    });
    return { order_status: order.status };
  },

  compensate(ctx) {
    const orderId = ctx.get('order_id');
    services.request('orders', `/orders/${encodeSegment(orderId)}/cancel`, { method: 'post' });
  },
};
