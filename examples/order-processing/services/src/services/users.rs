//! The users service: a fixed directory of users 1 to 100, all active but user 13.

use axum::Json;
use axum::extract::Path;
use serde::Serialize;

use crate::error::ApiError;

/// The highest user id that exists.
pub const LAST_USER: u64 = 100;
/// The one user that exists but is not active.
pub const INACTIVE_USER: u64 = 13;

/// A user as `GET /users/{id}` returns it.
#[derive(Debug, Serialize)]
pub struct User {
    /// The id asked for.
    pub id: u64,
    /// `User <id>`.
    pub name: String,
    /// `user<id>@example.com`.
    pub email: String,
    /// False for user 13 only.
    pub active: bool,
}

/// Looks a user up; `None` unless `1 <= id <= 100`.
pub fn find(id: u64) -> Option<User> {
    (1..=LAST_USER).contains(&id).then(|| User {
        id,
        name: format!("User {id}"),
        email: format!("user{id}@example.com"),
        active: id != INACTIVE_USER,
    })
}

/// `GET /users/{id}`: 200 with the user, 404 for an unknown (or non-numeric) id.
pub async fn get(Path(id): Path<String>) -> Result<Json<User>, ApiError> {
    id.parse()
        .ok()
        .and_then(find)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("user {id} not found")))
}
