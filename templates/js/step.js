// `{{name}}`: a flowhost saga step. It greets the run's `name` with the `greeting` of its
// configuration (`hello` when unset) and adds `{"message"}` to the run's context.
//
// `execute` does the step's work; `compensate` undoes it when a later step fails. Both may
// run more than once (at-least-once): `info.idempotencyKey` is sent with every service call
// to make a repeat harmless. Throw `StepError.retryable(...)` for a failure worth retrying,
// `StepError.fatal(...)` for one that is not; a `ServiceError` knows which it is.

import { config, log, step } from '../sdk/index.js';

export const sagaStep = step({
  '{{name}}': {
    execute(ctx, info) {
      const name = ctx.get('name');
      const greeting = config.get('greeting', 'hello');
      log.info(`greeting ${name} (attempt ${info.attempt})`);
      return { message: `${greeting}, ${name}` };
    },

    compensate() {
      // A greeting takes nothing back; a step that changed something undoes it here.
      return {};
    },
  },
});
