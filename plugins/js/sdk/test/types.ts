// Compiled (never run) by the test suite with `tsc --noEmit -p sdk`: the SDK's declarations
// and the jco-generated ones in `wit/` agree, and a typed step reads as intended.

import { Ctx, StepError, cache, config, events, handler, log, services, step } from '../index.js';
import type { StepInfo } from '../index.js';

interface Order extends Record<string, unknown> {
  order_id: string;
  total_amount: number;
  payment_id?: string;
}

export const sagaStep = step({
  process_payment: {
    execute(ctx: Ctx<Order>, info: StepInfo) {
      const amount: number = ctx.get('total_amount');
      const greeting: string = config.get('greeting', 'hello');
      const cached: { id: string } | undefined = cache.get<{ id: string }>(`paid:${ctx.get('order_id')}`);
      if (cached) return { payment_id: cached.id };
      log.info(`${greeting}: paying ${amount} on attempt ${info.attempt}`);
      const paid = services.post<{ payment_id: string }>('payments', '/payments', { amount });
      cache.set(`paid:${ctx.get('order_id')}`, { id: paid.payment_id }, { ttlMs: 60_000 });
      events.publish('payment.captured', { amount }, ctx.get('order_id'));
      return { payment_id: paid.payment_id };
    },
    compensate(ctx: Ctx<Order>) {
      const id: string | undefined = ctx.opt('payment_id');
      if (id === undefined) throw StepError.fatal('nothing to refund');
      services.request('payments', `/payments/${id}/refund`, { method: 'post', idempotencyKey: id });
    },
  },
});

export const eventHandler = handler<{ order_id: string }>((event) => {
  log.info(`${event.topic} for ${event.data.order_id} at ${event.time.toISOString()}`);
});
