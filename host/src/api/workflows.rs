//! Handlers of the workflow routes: definitions, their versions and their pins.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{AppState, Problem};

/// `GET /v1/workflows`: every workflow with versions, configured or retired.
pub async fn list(State(app): State<AppState>) -> Result<Response, Problem> {
    let workflows = app.engine.workflows().list()?;
    Ok(Json(json!({ "workflows": workflows })).into_response())
}

/// `GET /v1/workflows/{name}`: its versions newest first, which is current, and how many
/// runs pin each.
pub async fn describe(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(app.engine.workflows().describe(&name)?).into_response())
}
