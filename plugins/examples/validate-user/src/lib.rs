//! `validate-user`: the order saga's first step, `validate_user`. Looks the run's `user_id`
//! up (cache first, then the `users` service), fails the run for an unknown or inactive
//! user, and adds `{"user": {"name", "email"}}` to the context. Nothing to compensate.

use std::time::Duration;

use flowhost_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// How long a looked-up user stays in the cache.
const USER_TTL: Duration = Duration::from_secs(5 * 60);

/// A user as `GET /users/{id}` returns it, and as it is cached.
#[derive(Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
    email: String,
    active: bool,
}

/// The plugin.
struct ValidateUser;

impl Step for ValidateUser {
    fn execute(info: StepInfo, ctx: Ctx) -> StepResult {
        match info.step.as_str() {
            "validate_user" => validate(&ctx),
            other => Err(StepError::unknown_step(other)),
        }
    }
}

/// Step `validate_user`.
fn validate(ctx: &Ctx) -> StepResult {
    let user_id: u64 = ctx.get("user_id")?;
    let key = format!("user:{user_id}");
    let user = match cache::get::<User>(&key) {
        Some(user) => user,
        None => {
            let path = format!("/users/{user_id}");
            let user: User = services::get("users", &path).map_err(|error| {
                if error.is_not_found() {
                    StepError::fatal(format!("user {user_id} does not exist"))
                } else {
                    StepError::from(error)
                }
            })?;
            // The cache only saves a call next time: a failure to fill it is no failure.
            if let Err(error) = cache::set(&key, &user, Some(USER_TTL)) {
                log::warn!("user {user_id} not cached: {error}");
            }
            user
        }
    };
    if !user.active {
        return Err(StepError::fatal(format!("user {user_id} is not active")));
    }
    Ok(json!({ "user": { "name": user.name, "email": user.email } }))
}

export_step!(ValidateUser);
