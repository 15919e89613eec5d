//! Every metric the host exports, declared in one place: its name, kind, labels and help
//! text. Code records through these constants only (`metrics::counter!(RUNS_STARTED, ...)`),
//! so that this file is the list the README, the Grafana dashboard and the console read.
//!
//! Names follow Prometheus' conventions: `flowhost_` first, `_total` for counters, the unit
//! last (`_seconds`). Labels stay bounded: workflows, steps, plugins, services and
//! subscriptions come from the configuration, never from requests.

use std::sync::OnceLock;

use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Counter `{workflow}`: runs started (a start that found an existing run is not counted).
pub const RUNS_STARTED: &str = "flowhost_runs_started_total";
/// Counter `{workflow, status}`: runs that reached a terminal status (a retried run that
/// ends again counts again).
pub const RUNS_ENDED: &str = "flowhost_runs_ended_total";
/// Gauge: runs driven right now, holding a slot.
pub const RUNS_IN_FLIGHT: &str = "flowhost_runs_in_flight";
/// Gauge: runs admitted and waiting for a slot.
pub const RUNS_QUEUED: &str = "flowhost_runs_queued";
/// Gauge: runs waiting for a time (a `sleep` step, a retry's backoff), holding no task.
pub const RUNS_SLEEPING: &str = "flowhost_runs_sleeping";
/// Gauge: runs parked at an `await` step or on a child run, holding no task.
pub const RUNS_WAITING: &str = "flowhost_runs_waiting";
/// Histogram `{workflow, step, direction, outcome}`: how long each step attempt took, from
/// the call to its result (outcome `ok`, `retryable`, `fatal` or `host`).
pub const STEP_ATTEMPT_DURATION: &str = "flowhost_step_attempt_duration_seconds";
/// Counter `{plugin, export, outcome}`: plugin calls by how they ended: `ok`, `error` (the
/// plugin's own error), `trap`, `deadline`, `memory_cap`, `output_too_large` or `failed`.
pub const PLUGIN_CALLS: &str = "flowhost_plugin_calls_total";
/// Histogram `{plugin, export}`: how long plugin calls took, instantiation included.
pub const PLUGIN_CALL_DURATION: &str = "flowhost_plugin_call_duration_seconds";
/// Gauge: plugin instances alive (in a call, or kept warm for a run's next step).
pub const PLUGIN_INSTANCES: &str = "flowhost_plugin_instances";
/// Gauge `{plugin, digest, version}`: runs that pin each plugin version (unfinished, or
/// waiting for an operator's retry).
pub const PINNED_RUNS: &str = "flowhost_pinned_runs";
/// Counter `{service, status}`: service calls by their final answer: the HTTP status, or
/// `timeout`, `connection`, `denied`, `unknown_service` or `other`.
pub const SERVICE_CALLS: &str = "flowhost_service_calls_total";
/// Histogram `{service}`: how long service calls took, retries included.
pub const SERVICE_CALL_DURATION: &str = "flowhost_service_call_duration_seconds";
/// Counter `{service}`: attempts made again after a 429, a 5xx, a timeout or a connection
/// error.
pub const SERVICE_RETRIES: &str = "flowhost_service_retries_total";
/// Gauge `{service}`: the instances a discovered service's registry last reported healthy.
pub const SERVICE_INSTANCES: &str = "flowhost_service_instances";
/// Counter `{namespace}`: cache reads that found a live entry.
pub const CACHE_HITS: &str = "flowhost_cache_hits_total";
/// Counter `{namespace}`: cache reads that found none.
pub const CACHE_MISSES: &str = "flowhost_cache_misses_total";
/// Counter: cache entries evicted to stay within `cache.max-bytes` (expiries not counted).
pub const CACHE_EVICTIONS: &str = "flowhost_cache_evictions_total";
/// Gauge: events in the outbox, not relayed yet.
pub const OUTBOX_DEPTH: &str = "flowhost_outbox_depth";
/// Histogram: from an event's publication to its relay to the transport.
pub const RELAY_LAG: &str = "flowhost_relay_lag_seconds";
/// Counter: events relayed from the outbox to the transport.
pub const EVENTS_RELAYED: &str = "flowhost_events_relayed_total";
/// Counter `{subscription, outcome}`: delivery attempts: `ok`, `retry` (failed, comes
/// again) or `dead` (failed for good).
pub const DELIVERIES: &str = "flowhost_deliveries_total";
/// Counter `{subscription}`: deliveries given up on and kept as dead letters.
pub const DEAD_LETTERS: &str = "flowhost_dead_letters_total";
/// Histogram: how long one flush of the store took (one fsync shared by its batch).
pub const STORE_FLUSH_DURATION: &str = "flowhost_store_flush_duration_seconds";
/// Histogram: how many callers one flush served (group commit).
pub const STORE_FLUSH_BATCH: &str = "flowhost_store_flush_batch_size";
/// Counter: starts refused with 429 because every slot and queue place was taken.
pub const ADMISSION_REJECTIONS: &str = "flowhost_admission_rejections_total";
/// Counter `{method, route, status}`: HTTP requests answered, by route template.
pub const HTTP_REQUESTS: &str = "flowhost_http_requests_total";
/// Histogram `{method, route}`: how long HTTP requests took to answer.
pub const HTTP_REQUEST_DURATION: &str = "flowhost_http_request_duration_seconds";
/// Gauge `{version}`: 1, labelled with the build's version.
pub const BUILD_INFO: &str = "flowhost_build_info";

/// Help text of [`PINNED_RUNS`]: that family is written at each scrape from the registry
/// ([`pinned_runs_text`]), not kept by the recorder, so that a deleted version's series goes
/// with it.
pub const PINNED_RUNS_HELP: &str = "Runs pinning each plugin version.";

/// The [`PINNED_RUNS`] family in Prometheus' text format, one sample per
/// `(plugin, digest, version label, runs)`.
pub fn pinned_runs_text<'a>(
    versions: impl IntoIterator<Item = (&'a str, &'a str, &'a str, usize)>,
) -> String {
    use std::fmt::Write;
    let mut text = format!("# HELP {PINNED_RUNS} {PINNED_RUNS_HELP}\n# TYPE {PINNED_RUNS} gauge\n");
    for (plugin, digest, version, runs) in versions {
        let _ = writeln!(
            text,
            "{PINNED_RUNS}{{plugin=\"{}\",digest=\"{}\",version=\"{}\"}} {runs}",
            escape(plugin),
            escape(digest),
            escape(version)
        );
    }
    text
}

/// A label value escaped as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Buckets of the `_seconds` histograms: 1 ms to 60 s, about three per decade.
const SECONDS_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// How often the recorder folds the histogram samples it holds into their buckets.
const UPKEEP: std::time::Duration = std::time::Duration::from_secs(1);

/// Buckets of the flush batch sizes.
const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Installs the process' Prometheus recorder, once (later calls get the same handle: tests
/// run several hosts in one process), and describes every metric above.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(STORE_FLUSH_BATCH.into()), &BATCH_BUCKETS))
                .expect("the buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may be installed already (an embedder's): ours then serves
            // /metrics with what it is given, which is nothing.
            if ::metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was installed already; /metrics shows only what flowhost records itself");
            }
            describe();
            // The unlabelled counters are there from the start, at zero, so that a rate of
            // them is defined before the first increment.
            for counter in [CACHE_EVICTIONS, EVENTS_RELAYED, ADMISSION_REJECTIONS] {
                ::metrics::counter!(counter).absolute(0);
            }
            ::metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            // The recorder keeps every histogram sample until upkeep folds them into the
            // buckets: without it, a host nobody scrapes grows by each sample it records.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("flowhost-metrics".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP);
                        upkeep.run_upkeep();
                    }
                })
                .expect("starting the metrics upkeep thread");
            handle
        })
        .clone()
}

/// The help text of every metric.
fn describe() {
    describe_counter!(RUNS_STARTED, "Runs started, by workflow.");
    describe_counter!(
        RUNS_ENDED,
        "Runs that reached a terminal status, by workflow and status."
    );
    describe_gauge!(
        RUNS_IN_FLIGHT,
        "Runs driven right now, each holding a slot."
    );
    describe_gauge!(RUNS_QUEUED, "Runs admitted and waiting for a slot.");
    describe_gauge!(
        RUNS_SLEEPING,
        "Runs waiting for a time: a sleep step or a retry's backoff."
    );
    describe_gauge!(
        RUNS_WAITING,
        "Runs parked at an await step or on a child run."
    );
    describe_histogram!(
        STEP_ATTEMPT_DURATION,
        Unit::Seconds,
        "Step attempts by workflow, step, direction and outcome, and how long they took."
    );
    describe_counter!(
        PLUGIN_CALLS,
        "Plugin calls by plugin, export and outcome (ok, error, trap, deadline, memory_cap, output_too_large, failed)."
    );
    describe_histogram!(
        PLUGIN_CALL_DURATION,
        Unit::Seconds,
        "How long plugin calls took, instantiation included."
    );
    describe_gauge!(
        PLUGIN_INSTANCES,
        "Plugin instances alive: in a call, or kept warm for a run's next step."
    );
    describe_counter!(
        SERVICE_CALLS,
        "Service calls by service and final status (HTTP status, timeout, connection, denied, unknown_service, other)."
    );
    describe_histogram!(
        SERVICE_CALL_DURATION,
        Unit::Seconds,
        "How long service calls took, retries included."
    );
    describe_counter!(
        SERVICE_RETRIES,
        "Service call attempts made again (429, 5xx, timeout, connection error)."
    );
    describe_gauge!(
        SERVICE_INSTANCES,
        "Instances of a discovered service its registry last reported healthy."
    );
    describe_counter!(
        CACHE_HITS,
        "Cache reads that found a live entry, by namespace."
    );
    describe_counter!(CACHE_MISSES, "Cache reads that found none, by namespace.");
    describe_counter!(
        CACHE_EVICTIONS,
        "Cache entries evicted to stay within cache.max-bytes."
    );
    describe_gauge!(OUTBOX_DEPTH, "Events in the outbox, not relayed yet.");
    describe_histogram!(
        RELAY_LAG,
        Unit::Seconds,
        "Time from an event's publication to its relay."
    );
    describe_counter!(
        EVENTS_RELAYED,
        "Events relayed from the outbox to the transport."
    );
    describe_counter!(
        DELIVERIES,
        "Delivery attempts by subscription and outcome (ok, retry, dead)."
    );
    describe_counter!(DEAD_LETTERS, "Deliveries given up on, by subscription.");
    describe_histogram!(
        STORE_FLUSH_DURATION,
        Unit::Seconds,
        "How long one flush of the store took."
    );
    describe_histogram!(
        STORE_FLUSH_BATCH,
        Unit::Count,
        "Callers served by one flush (group commit)."
    );
    describe_counter!(
        ADMISSION_REJECTIONS,
        "Starts refused with 429: every slot and queue place taken."
    );
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests by method, route template and status."
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "How long HTTP requests took to answer."
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the version label says which build runs."
    );
}

/// Every family above with its kind, for the README and the tests that check a scrape
/// against this file.
pub const FAMILIES: &[(&str, &str)] = &[
    (RUNS_STARTED, "counter"),
    (RUNS_ENDED, "counter"),
    (RUNS_IN_FLIGHT, "gauge"),
    (RUNS_QUEUED, "gauge"),
    (RUNS_SLEEPING, "gauge"),
    (RUNS_WAITING, "gauge"),
    (STEP_ATTEMPT_DURATION, "histogram"),
    (PLUGIN_CALLS, "counter"),
    (PLUGIN_CALL_DURATION, "histogram"),
    (PLUGIN_INSTANCES, "gauge"),
    (PINNED_RUNS, "gauge"),
    (SERVICE_CALLS, "counter"),
    (SERVICE_CALL_DURATION, "histogram"),
    (SERVICE_RETRIES, "counter"),
    (SERVICE_INSTANCES, "gauge"),
    (CACHE_HITS, "counter"),
    (CACHE_MISSES, "counter"),
    (CACHE_EVICTIONS, "counter"),
    (OUTBOX_DEPTH, "gauge"),
    (RELAY_LAG, "histogram"),
    (EVENTS_RELAYED, "counter"),
    (DELIVERIES, "counter"),
    (DEAD_LETTERS, "counter"),
    (STORE_FLUSH_DURATION, "histogram"),
    (STORE_FLUSH_BATCH, "histogram"),
    (ADMISSION_REJECTIONS, "counter"),
    (HTTP_REQUESTS, "counter"),
    (HTTP_REQUEST_DURATION, "histogram"),
    (BUILD_INFO, "gauge"),
];
