"""Step `validate_user`: looks the run's `user_id` up (cache first, then the `users`
service), fails the run for an unknown or inactive user, and adds `{"user": {"name",
"email"}}` to the context. Nothing to compensate."""

from flowhost import Ctx, ServiceError, Step, StepError, StepInfo, cache, log, services

#: How long a looked-up user stays in the cache.
USER_TTL_MS = 5 * 60 * 1000

step = Step()


@step.execute("validate_user")
def validate(ctx: Ctx, info: StepInfo) -> dict:
    user_id = ctx.get("user_id", int)
    key = f"user:{user_id}"
    user = cache.get(key)
    if user is None:
        try:
            user = services.get("users", f"/users/{user_id}")
        except ServiceError as error:
            if error.is_not_found:
                raise StepError.fatal(f"user {user_id} does not exist") from None
            raise
        # The cache only saves a call next time: a failure to fill it is no failure.
        try:
            cache.set(key, user, ttl_ms=USER_TTL_MS)
        except Exception as error:  # noqa: BLE001
            log.warn(f"user {user_id} not cached: {error}")
    if not user["active"]:
        raise StepError.fatal(f"user {user_id} is not active")
    return {"user": {"name": user["name"], "email": user["email"]}}
