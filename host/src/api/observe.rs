//! What the API tells about the host itself: `GET /healthz`, `GET /readyz`, `GET /metrics`,
//! and the middleware that gives every request its span (continuing the caller's trace from
//! `traceparent`) and its place in the HTTP metrics.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracing::Instrument;

use super::{AppState, Problem, ProblemDetails};
use crate::telemetry::metrics::{
    HTTP_REQUEST_DURATION, HTTP_REQUESTS, OUTBOX_DEPTH, PINNED_RUNS, RUNS_IN_FLIGHT, RUNS_QUEUED,
    RUNS_SLEEPING, RUNS_WAITING,
};
use crate::telemetry::trace;

/// How long a readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One thing a health or readiness probe looked at.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Check {
    /// What was checked: `process`, `store`, `plugins` or `transport`.
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

/// The answer of `/healthz` and `/readyz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, `ready` or `not_ready`.
    pub status: &'static str,
    /// The build's version.
    pub version: &'static str,
    /// Seconds since the host started serving.
    pub uptime_seconds: u64,
    /// What was checked.
    pub checks: Vec<Check>,
}

/// The tag of these routes in the OpenAPI document.
pub const TAG: &str = "operations";

/// Liveness: the process is alive and serves requests. Checks nothing else, so that a slow
/// disk or a broker outage never gets a live host restarted.
#[utoipa::path(
    get,
    operation_id = "healthz",
    path = "/healthz",
    tag = TAG,
    responses((status = 200, description = "Alive.", body = Health))
)]
pub async fn healthz(State(app): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: app.started.elapsed().as_secs(),
        checks: vec![Check {
            name: "process",
            ok: true,
            detail: "serving requests".into(),
        }],
    })
}

/// Readiness: 200 when the host can take work (the store makes writes durable, every
/// configured plugin has a loaded version, the event transport's broker answers), else
/// 503. Each check says what it found.
#[utoipa::path(
    get,
    operation_id = "readyz",
    path = "/readyz",
    tag = TAG,
    responses(
        (status = 200, description = "Ready.", body = Health),
        (status = 503, description = "Not ready: a check failed.", body = Health),
    )
)]
pub async fn readyz(State(app): State<AppState>) -> Response {
    let store = async {
        let started = Instant::now();
        match tokio::time::timeout(CHECK_TIMEOUT, app.engine.store().flush()).await {
            Ok(Ok(())) => Check {
                name: "store",
                ok: true,
                detail: format!("flushed in {} ms", started.elapsed().as_millis()),
            },
            Ok(Err(error)) => Check {
                name: "store",
                ok: false,
                detail: error.to_string(),
            },
            Err(_) => Check {
                name: "store",
                ok: false,
                detail: format!("no flush within {CHECK_TIMEOUT:?}"),
            },
        }
    };
    let transport = async {
        match tokio::time::timeout(CHECK_TIMEOUT, app.dispatcher.ping()).await {
            Ok(Ok(())) => Check {
                name: "transport",
                ok: true,
                detail: "the broker answers".into(),
            },
            Ok(Err(error)) => Check {
                name: "transport",
                ok: false,
                detail: error.to_string(),
            },
            Err(_) => Check {
                name: "transport",
                ok: false,
                detail: format!("no answer within {CHECK_TIMEOUT:?}"),
            },
        }
    };
    let (store, transport) = tokio::join!(store, transport);
    let plugins = {
        let names: Vec<&str> = app.plugins.files().map(|(name, _)| name).collect();
        let missing: Vec<&str> = names
            .iter()
            .filter(|name| app.plugins.current(name).is_none())
            .copied()
            .collect();
        Check {
            name: "plugins",
            ok: missing.is_empty(),
            detail: if missing.is_empty() {
                format!("{} of {} plugins loaded", names.len(), names.len())
            } else {
                format!("not loaded: {}", missing.join(", "))
            },
        }
    };
    let checks = vec![store, plugins, transport];
    let ready = checks.iter().all(|c| c.ok);
    let health = Health {
        status: if ready { "ready" } else { "not_ready" },
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: app.started.elapsed().as_secs(),
        checks,
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health)).into_response()
}

/// Every `flowhost_*` metric family in the Prometheus text format. The gauges that
/// describe state (runs by where they are, the outbox, pins) are read when scraped.
#[utoipa::path(
    get,
    operation_id = "metrics",
    path = "/metrics",
    tag = TAG,
    responses(
        (status = 200, description = "The metrics.", body = String, content_type = "text/plain; version=0.0.4; charset=utf-8"),
        (status = 404, description = "Metrics are off (`telemetry.metrics = false`).", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub async fn metrics(State(app): State<AppState>) -> Result<Response, Problem> {
    let Some(handle) = &app.metrics else {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "metrics are off: set `telemetry.metrics = true` to serve them",
        ));
    };
    let occupancy = app.engine.occupancy();
    metrics::gauge!(RUNS_IN_FLIGHT).set(occupancy.in_flight as f64);
    metrics::gauge!(RUNS_QUEUED).set(occupancy.queued as f64);
    metrics::gauge!(RUNS_SLEEPING).set(occupancy.sleeping as f64);
    metrics::gauge!(RUNS_WAITING).set(occupancy.waiting as f64);
    match app.dispatcher.outbox().depth() {
        Ok(depth) => metrics::gauge!(OUTBOX_DEPTH).set(depth as f64),
        Err(error) => tracing::warn!(%error, "could not count the outbox for /metrics"),
    }
    match app.plugins.list() {
        Ok(plugins) => {
            for plugin in plugins {
                for version in plugin.versions {
                    metrics::gauge!(
                        PINNED_RUNS,
                        "plugin" => plugin.name.clone(),
                        "digest" => version.version.digest.clone(),
                        "version" => version.version.label.clone().unwrap_or_default(),
                    )
                    .set(version.pinned_runs as f64);
                }
            }
        }
        Err(error) => tracing::warn!(%error, "could not count pins for /metrics"),
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response())
}

/// Middleware: a `flowhost.http` span per request, the child of the caller's `traceparent`
/// when it sends one, and the request counted by route template, method and status.
pub async fn observe(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let span = tracing::info_span!(
        "flowhost.http",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    let parent = request
        .headers()
        .get(trace::TRACEPARENT)
        .and_then(|value| value.to_str().ok());
    trace::set_parent(&span, parent);
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    metrics::counter!(
        HTTP_REQUESTS,
        "method" => method.clone(),
        "route" => route.clone(),
        "status" => status.to_string(),
    )
    .increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION, "method" => method, "route" => route)
        .record(started.elapsed());
    response
}
