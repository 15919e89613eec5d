// The order saga's five steps in JavaScript, in one component (`js_orders`): the same steps
// as the Rust plugins in `plugins/examples`, against the same services, so a workflow can
// take each step from any language. componentize-js reads no module outside the entry's
// folder, so rolldown bundles this one with the SDK first: `npm run build:orders`.

import { step } from '../sdk/index.js';
import { reserveInventory } from './inventory.js';
import { createOrder } from './order.js';
import { processPayment } from './payment.js';
import { sendConfirmation } from './send_confirmation.js';
import { validateUser } from './validate_user.js';

export const sagaStep = step({
  validate_user: validateUser,
  reserve_inventory: reserveInventory,
  process_payment: processPayment,
  create_order: createOrder,
  send_confirmation: sendConfirmation,
});
