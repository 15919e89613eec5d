//! Handler of the cluster route: the nodes sharing the store.

use axum::Json;
use axum::extract::State;

use super::views::{NodeView, Nodes};
use super::{AppState, Problem, ProblemDetails};

/// The tag of these routes in the OpenAPI document.
pub const TAG: &str = "operations";

/// Every node sharing this node's store, live or gone within the hour (or still owning
/// runs), with the runs each owns: one node on sled, every node on PostgreSQL.
#[utoipa::path(
    get,
    operation_id = "list_nodes",
    path = "/v1/nodes",
    tag = TAG,
    responses(
        (status = 200, description = "The nodes, by id.", body = Nodes),
        (status = 503, description = "The store is unreachable.", body = ProblemDetails,
         content_type = "application/problem+json"),
    )
)]
pub async fn list(State(app): State<AppState>) -> Result<Json<Nodes>, Problem> {
    let this = app.membership.node().id.clone();
    let nodes = app.membership.nodes().await?;
    Ok(Json(Nodes {
        nodes: nodes
            .iter()
            .map(|node| NodeView::new(node, node.info.id == this))
            .collect(),
        this,
    }))
}
