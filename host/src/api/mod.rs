//! The HTTP API, v1: JSON in and out, errors as `application/problem+json`.
//!
//! | route | what |
//! | --- | --- |
//! | `POST /v1/workflows/{workflow}/runs[?wait=30s]` | start a run ([`runs::start`]) |
//! | `GET /v1/runs/{id}` | one run |
//! | `GET /v1/runs/{id}/journal` | every attempt of its steps |
//! | `GET /v1/runs?workflow=&status=&limit=&cursor=` | runs, newest first, paged |
//! | `POST /v1/runs/{id}/retry` | drive a failed compensation again |
//! | `POST /v1/runs/{id}/cancel` | stop a run: compensate its completed steps, end `cancelled` |
//! | `POST /v1/runs/{id}/signals/{name}` | deliver a signal to the run's await step for it |
//! | `GET /v1/workflows` | every workflow, its current version, its versions and their pins |
//! | `GET /v1/workflows/{name}` | one workflow's versions, each with its definition |
//! | `PUT /v1/workflows/{name}` | push a JSON definition and make it current ([`workflows::push`]) |
//! | `POST /v1/workflows/{name}/rollback` | make the previous (or a given) version current |
//! | `DELETE /v1/workflows/{name}` | retire a workflow no run pins |
//! | `GET /v1/schemas/workflow.json` | the JSON Schema of a definition |
//! | `POST /v1/events/{topic}` | publish the JSON body; 202 once durable ([`events::publish`]) |
//! | `GET /v1/dead-letters?limit=&cursor=` | deliveries given up on, newest first |
//! | `POST /v1/dead-letters/{id}/redeliver` | queue one for its subscription again |
//! | `PUT /v1/plugins/{name}[?version=][&replay=N]` | upload a version (replayed first on recorded attempts with `replay`) and make it current ([`plugins::push`]) |
//! | `GET /v1/plugins` | every plugin with its current version |
//! | `GET /v1/plugins/{name}` | its versions, which is current, how many runs pin each |
//! | `POST /v1/plugins/{name}/rollback` | make the previous (or a given) version current |
//! | `DELETE /v1/plugins/{name}/versions/{digest}` | remove a version no run pins |
//! | `GET /v1/plugins/{name}/versions/{digest}/component` | a version's component, as uploaded |
//! | `GET /v1/subscriptions` | every subscription with its backlog |
//! | `GET /v1/nodes` | the nodes sharing the store: address, version, lease, runs owned |
//! | `GET /openapi.json` | this API's OpenAPI 3.1 document ([`openapi`]) |
//! | `GET /ui`, `GET /ui/{file}` | the web console ([`console`]); `GET /` leads there |
//! | `GET /healthz` | liveness: the process serves requests |
//! | `GET /readyz` | readiness: the store, the plugins, the transport ([`observe::readyz`]) |
//! | `GET /metrics` | Prometheus metrics, `flowhost_*` ([`crate::telemetry::metrics`]) |
//!
//! The plugin and workflow routes need the admin token (`Authorization: Bearer`), and are
//! off without one; the routes that make plugins run (start and retry runs, publish and redeliver
//! events) need the trigger token when one is configured ([`auth`]).

mod auth;
mod config;
mod console;
mod error;
mod events;
mod extract;
mod nodes;
mod observe;
pub mod openapi;
mod plugins;
mod runs;
mod views;
mod workflows;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Extension};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::auth::Guard;
pub use self::config::ServerConfig;
pub use self::error::{Problem, ProblemDetails};
pub use self::views::RunView;
use crate::cluster::Membership;
use crate::events::Dispatcher;
use crate::model::Secret;
use crate::plugins::PluginRegistry;
use crate::saga::Engine;

/// Most items one page may hold.
const MAX_PAGE: usize = 500;

/// A listing's `limit`: 50 unless given, 1 to [`MAX_PAGE`].
fn page_limit(limit: Option<usize>) -> Result<usize, Problem> {
    let limit = limit.unwrap_or(50);
    if limit == 0 || limit > MAX_PAGE {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!("limit must be 1 to {MAX_PAGE}"),
        ));
    }
    Ok(limit)
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The saga engine.
    pub engine: Engine,
    /// The event dispatcher, with its outbox.
    pub dispatcher: Arc<Dispatcher>,
    /// The plugin registry.
    pub plugins: Arc<PluginRegistry>,
    /// This node among those sharing the store.
    pub membership: Arc<Membership>,
    /// The longest `?wait=` honoured.
    pub max_wait: Duration,
    /// The largest component an upload may carry.
    pub max_upload_bytes: usize,
    /// What `/metrics` renders; none when metrics are off.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// When the host started serving, for `/healthz`.
    pub started: std::time::Instant,
    /// Where the console's files are read from, when not from the binary.
    pub console_dir: Option<std::path::PathBuf>,
}

/// What the detail of an admin route says when no admin token is configured.
const ADMIN_OFF: &str = "the admin routes are off: set FLOWHOST_ADMIN_TOKEN (or `admin-token` in the configuration) to a secret of at least 16 characters to enable them";

/// The bearer tokens that guard the routes.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    /// The admin routes' (plugins, workflows); they are off without one.
    pub admin: Option<Secret>,
    /// The routes that make plugins run, when set.
    pub trigger: Option<Secret>,
}

/// Every route with its OpenAPI description, in three groups by the token they need.
fn routes(tokens: &Tokens) -> OpenApiRouter<AppState> {
    let triggers = OpenApiRouter::new()
        .routes(routes!(runs::start))
        .routes(routes!(runs::retry))
        .routes(routes!(runs::cancel))
        .routes(routes!(runs::signal))
        .routes(routes!(events::publish))
        .routes(routes!(events::redeliver))
        .route_layer(from_fn_with_state(
            Guard::optional(tokens.trigger.as_ref()),
            auth::require,
        ));
    let admin = OpenApiRouter::new()
        .routes(routes!(plugins::list))
        .routes(routes!(plugins::describe, plugins::push))
        .routes(routes!(plugins::rollback))
        .routes(routes!(plugins::delete))
        .routes(routes!(plugins::component))
        .routes(routes!(workflows::list))
        .routes(routes!(
            workflows::describe,
            workflows::push,
            workflows::delete
        ))
        .routes(routes!(workflows::rollback))
        .route_layer(from_fn_with_state(
            Guard::required(tokens.admin.as_ref(), ADMIN_OFF),
            auth::require,
        ));
    OpenApiRouter::with_openapi(openapi::Base::openapi())
        .merge(triggers)
        .merge(admin)
        .routes(routes!(runs::list))
        .routes(routes!(runs::get))
        .routes(routes!(runs::journal))
        .routes(routes!(events::subscriptions))
        .routes(routes!(events::dead_letters))
        .routes(routes!(nodes::list))
        .routes(routes!(workflows::schema))
        .routes(routes!(observe::healthz))
        .routes(routes!(observe::readyz))
        .routes(routes!(observe::metrics))
        .routes(routes!(openapi::serve))
        .routes(routes!(console::root))
        .routes(routes!(console::index))
        .routes(routes!(console::file))
}

/// The OpenAPI document of the API, as `GET /openapi.json` serves it.
pub fn openapi_document() -> serde_json::Value {
    let (_, openapi) = routes(&Tokens::default()).split_for_parts();
    openapi::document(openapi, workflows::definition_schema())
}

/// The API's router over `engine`, `dispatcher`, `plugins` and `membership`, configured by
/// `server`; uploads may carry up to `max_upload_bytes`; `/metrics` renders `metrics`.
#[allow(clippy::too_many_arguments)]
pub fn router(
    engine: Engine,
    dispatcher: Arc<Dispatcher>,
    plugins: Arc<PluginRegistry>,
    membership: Arc<Membership>,
    server: &ServerConfig,
    tokens: &Tokens,
    max_upload_bytes: usize,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> Router {
    let state = AppState {
        engine,
        dispatcher,
        plugins,
        membership,
        max_wait: server.max_wait,
        max_upload_bytes,
        metrics,
        started: std::time::Instant::now(),
        console_dir: server.console_dir.clone(),
    };
    let (router, openapi) = routes(tokens).split_for_parts();
    let document = openapi::document(openapi, workflows::definition_schema());
    let document = openapi::Document(
        serde_json::to_vec(&document)
            .expect("the document serialises")
            .into(),
    );
    router
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "this route does not take that method",
            )
        })
        .layer(Extension(document))
        .layer(DefaultBodyLimit::max(server.max_body_bytes))
        .layer(axum::middleware::from_fn(observe::observe))
        .with_state(state)
}
