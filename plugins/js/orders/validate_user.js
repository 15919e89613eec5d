// Step `validate_user`: looks the run's `user_id` up (cache first, then the `users`
// service), fails the run for an unknown or inactive user, and adds `{"user": {"name",
// "email"}}` to the context. Nothing to compensate.

import { StepError, cache, log, services } from '../sdk/index.js';

/** How long a looked-up user stays in the cache. */
const USER_TTL_MS = 5 * 60 * 1000;

export const validateUser = {
  execute(ctx) {
    const userId = ctx.get('user_id');
    if (!Number.isSafeInteger(userId) || userId < 0) {
      throw StepError.fatal(`\`user_id\` is not a user id: ${JSON.stringify(userId)}`);
    }
    const key = `user:${userId}`;
    let user = cache.get(key);
    if (user === undefined) {
      try {
        user = services.get('users', `/users/${userId}`);
      } catch (error) {
        if (error.notFound) throw StepError.fatal(`user ${userId} does not exist`);
        throw error;
      }
      // The cache only saves a call next time: a failure to fill it is no failure.
      try {
        cache.set(key, user, { ttlMs: USER_TTL_MS });
      } catch (error) {
        log.warn(`user ${userId} not cached: ${error.message}`);
      }
    }
    if (!user.active) throw StepError.fatal(`user ${userId} is not active`);
    return { user: { name: user.name, email: user.email } };
  },
};
