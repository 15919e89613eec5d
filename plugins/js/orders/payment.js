// Step `process_payment`: captures `total_amount` with the `payments` service and adds
// `{"payment_id"}` to the context; compensation refunds it.

import { StepError, encodeSegment, services } from '../sdk/index.js';

export const processPayment = {
  execute(ctx) {
    const request = {
      order_id: ctx.get('order_id'),
      amount: ctx.get('total_amount'),
      method: ctx.get('payment_method'),
    };
    try {
      const payment = services.post('payments', '/payments', request);
      return { payment_id: payment.payment_id };
    } catch (error) {
      if (error.status === 402) throw StepError.fatal('payment declined');
      throw error;
    }
  },

  compensate(ctx) {
    const paymentId = ctx.opt('payment_id');
    if (paymentId !== undefined) {
      services.request('payments', `/payments/${encodeSegment(paymentId)}/refund`, {
        method: 'post',
      });
    }
  },
};
