//! What the API tells about the host itself: `GET /healthz`, `GET /readyz`, `GET /metrics`,
//! and the middleware that gives every request its span (continuing the caller's trace from
//! `traceparent`) and its place in the HTTP metrics.

use std::collections::{HashMap, HashSet};
use std::sync::{LazyLock, RwLock};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{AppState, Problem, ProblemDetails};
use crate::telemetry::metrics::{
    HTTP_REQUEST_DURATION, HTTP_REQUESTS, OUTBOX_DEPTH, RUNS_IN_FLIGHT, RUNS_QUEUED, RUNS_SLEEPING,
    RUNS_WAITING, pinned_runs_text,
};
use crate::telemetry::trace::{self, Kind};

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
    let started = Instant::now();
    let (store, transport) = tokio::join!(
        check("store", app.engine.store().flush(), |()| format!(
            "flushed in {} ms",
            started.elapsed().as_millis()
        )),
        check("transport", app.dispatcher.ping(), |()| {
            "the broker answers".to_owned()
        }),
    );
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

/// The check `name`: what `probe` says within [`CHECK_TIMEOUT`], told by `fine` when it
/// succeeds.
async fn check<T, E: std::fmt::Display>(
    name: &'static str,
    probe: impl std::future::Future<Output = Result<T, E>>,
    fine: impl FnOnce(T) -> String,
) -> Check {
    let (ok, detail) = match tokio::time::timeout(CHECK_TIMEOUT, probe).await {
        Ok(Ok(value)) => (true, fine(value)),
        Ok(Err(error)) => (false, error.to_string()),
        Err(_) => (false, format!("no answer within {CHECK_TIMEOUT:?}")),
    };
    Check { name, ok, detail }
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
    match app.dispatcher.outbox().depth().await {
        Ok(depth) => metrics::gauge!(OUTBOX_DEPTH).set(depth as f64),
        Err(error) => tracing::warn!(%error, "could not count the outbox for /metrics"),
    }
    let pinned = match app.plugins.list().await {
        Ok(plugins) => pinned_runs_text(plugins.iter().flat_map(|plugin| {
            plugin.versions.iter().map(|v| {
                (
                    plugin.name.as_str(),
                    v.version.digest.as_str(),
                    v.version.label.as_deref().unwrap_or_default(),
                    v.pinned_runs,
                )
            })
        })),
        Err(error) => {
            tracing::warn!(%error, "could not count pins for /metrics");
            String::new()
        }
    };
    let mut text = handle.render();
    text.push_str(&pinned);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// `text` as a `&'static str`, leaked once per distinct value: the label values of the HTTP
/// metrics that come from a bounded set (the router's route templates, the statuses), without
/// an allocation per request.
fn intern(text: &str) -> &'static str {
    static INTERNED: LazyLock<RwLock<HashSet<&'static str>>> = LazyLock::new(Default::default);
    if let Some(found) = INTERNED.read().expect("interned lock").get(text) {
        return found;
    }
    let mut interned = INTERNED.write().expect("interned lock");
    if let Some(found) = interned.get(text) {
        return found;
    }
    let leaked: &'static str = Box::leak(text.to_owned().into_boxed_str());
    interned.insert(leaked);
    leaked
}

/// The trace context of the request being handled: what a run it starts, or an event it
/// publishes, carries on.
#[derive(Debug, Clone, Default)]
pub struct RequestTrace(pub Option<String>);

/// Middleware: a span per request, the child of the caller's `traceparent`
/// when it sends one, and the request counted by route template, method and status.
pub async fn observe(mut request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |path| intern(path.as_str()));
    // A client may send any method: those outside HTTP's own are one label value.
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let parent = request
        .headers()
        .get(trace::TRACEPARENT)
        .and_then(|value| value.to_str().ok());
    let mut span = trace::Span::start(|| format!("{method} {route}"), Kind::Server, parent);
    span.set("http.request.method", method);
    span.set("http.route", route);
    // What the request starts (a run, an event) belongs to its trace.
    request
        .extensions_mut()
        .insert(RequestTrace(span.traceparent()));
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    span.set("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.fail(status.to_string());
    }
    let (requests, duration) = series(method, route, intern(status.as_str()));
    requests.increment(1);
    duration.record(started.elapsed());
    response
}

/// The HTTP metrics' series of a method, route and status, registered on first use and kept,
/// so that a request records without building a key.
fn series(
    method: &'static str,
    route: &'static str,
    status: &'static str,
) -> (metrics::Counter, metrics::Histogram) {
    type Series =
        HashMap<(&'static str, &'static str, &'static str), (metrics::Counter, metrics::Histogram)>;
    // A std `RwLock`: held for a look-up, or to add a series.
    static SERIES: LazyLock<RwLock<Series>> = LazyLock::new(Default::default);
    let key = (method, route, status);
    if let Some(found) = SERIES.read().expect("series lock").get(&key) {
        return found.clone();
    }
    SERIES
        .write()
        .expect("series lock")
        .entry(key)
        .or_insert_with(|| {
            (
                metrics::counter!(HTTP_REQUESTS, "method" => method, "route" => route, "status" => status),
                metrics::histogram!(HTTP_REQUEST_DURATION, "method" => method, "route" => route),
            )
        })
        .clone()
}
