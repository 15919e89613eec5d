//! What the host tells operators: `/metrics` scraped and parsed after real runs, and
//! `/healthz` and `/readyz` saying what they checked.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flowhost::store::faults::Op;

use crate::inprocess::InProcess;
use crate::server::{Server, Services, order};
use crate::support::TWO_STEPS;

/// A scrape of `/metrics`, read as Prometheus reads the text format (0.0.4): every family
/// with its help and type, every sample with its labels.
pub struct Metrics {
    /// Family name to (type, help).
    families: BTreeMap<String, (String, String)>,
    samples: Vec<Sample>,
}

struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

impl Metrics {
    pub async fn scrape(url: &str) -> Metrics {
        let response = reqwest::get(format!("{url}/metrics")).await.unwrap();
        assert_eq!(response.status(), 200);
        let kind = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
        Metrics::parse(&response.text().await.unwrap())
    }

    /// Parses the text format, panicking at the first line that breaks it.
    pub fn parse(text: &str) -> Metrics {
        let mut metrics = Metrics {
            families: BTreeMap::new(),
            samples: Vec::new(),
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect(line);
                metrics.families.entry(name.into()).or_default().1 = help.into();
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect(line);
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "{line}"
                );
                metrics.families.entry(name.into()).or_default().0 = kind.into();
            } else if !line.starts_with('#') {
                metrics.samples.push(sample(line));
            }
        }
        for sample in &metrics.samples {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|suffix| sample.name.strip_suffix(suffix))
                .find(|base| {
                    metrics
                        .families
                        .get(*base)
                        .is_some_and(|(k, _)| k == "histogram")
                })
                .unwrap_or(&sample.name);
            assert!(
                metrics.families.contains_key(family),
                "{} has no # TYPE",
                sample.name
            );
        }
        metrics
    }

    /// Samples named `name` whose labels include every pair of `labels`.
    fn samples<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> {
        self.samples.iter().filter(move |sample| {
            sample.name == name
                && labels
                    .iter()
                    .all(|(key, value)| sample.labels.get(*key).map(String::as_str) == Some(*value))
        })
    }

    /// The sum of `name` over the samples matching `labels`; 0 without any.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples(name, labels).map(|s| s.value).sum::<f64>() + 0.0
    }

    /// How many observations the histogram `name` has over the series matching `labels`.
    pub fn observations(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        assert_eq!(self.families[name].0, "histogram", "{name}");
        self.value(&format!("{name}_count"), labels) as u64
    }
}

/// One sample line: `name{label="value",...} value [timestamp]`.
fn sample(line: &str) -> Sample {
    let name_end = line.find(['{', ' ']).expect(line);
    let name = line[..name_end].to_owned();
    assert!(
        name.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "{line}"
    );
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(mut inner) = rest.strip_prefix('{') {
        // Pairs `key="value"` separated by `,`, up to `}`; values escape \\, \" and \n.
        while let Some((key, after)) = inner.split_once("=\"") {
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next().expect(line) {
                    (_, '\\') => match chars.next().expect(line).1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (at, '"') => break at + 1,
                    (_, c) => value.push(c),
                }
            };
            labels.insert(key.to_owned(), value);
            inner = after[end..].strip_prefix(',').unwrap_or(&after[end..]);
            if let Some(after_labels) = inner.strip_prefix('}') {
                inner = after_labels;
                break;
            }
        }
        rest = inner;
    }
    let value = rest.split_whitespace().next().expect(line);
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("{line}")),
    };
    Sample {
        name,
        labels,
        value,
    }
}

#[test]
fn the_reader_takes_braces_and_escapes_in_label_values() {
    let metrics = Metrics::parse(concat!(
        "# HELP a_total A counter.\n",
        "# TYPE a_total counter\n",
        "a_total{route=\"/v1/{id}\",say=\"a \\\"quote\\\", a \\\\ and \\n\"} 3\n",
        "# TYPE h histogram\n",
        "h_bucket{le=\"+Inf\"} 2\nh_sum 0.5\nh_count 2\n",
    ));
    let sample = &metrics.samples[0];
    assert_eq!(sample.labels["route"], "/v1/{id}");
    assert_eq!(sample.labels["say"], "a \"quote\", a \\ and \n");
    assert_eq!(metrics.value("a_total", &[("route", "/v1/{id}")]), 3.0);
    assert_eq!(metrics.observations("h", &[]), 2);
}

/// Polls `url` until `done` holds for its JSON, for up to 30 s.
async fn until(url: &str, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{url}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_what_the_runs_did() {
    let services = Services::start().await;
    // The users service retries (the first entry of the configuration), the others do not.
    let config = services.config().replacen("retries = 0", "retries = 2", 1);
    let server = Server::start(&config).await;
    // One 503 for the users service: one retry. Three failures of the notification: the
    // delivery of o-1's confirmation is retried twice, then kept as a dead letter.
    services.fail("users", 1, 503).await;
    services.fail("notifications", 3, 500).await;
    let path = "/v1/workflows/order_processing/runs?wait=30s";
    let (status, completed) = server.post(path, &order("o-1", 7, 50.0)).await;
    assert_eq!(
        (status, completed["status"].as_str()),
        (200, Some("completed"))
    );
    let (status, declined) = server.post(path, &order("o-2", 7, 5000.0)).await;
    assert_eq!(
        (status, declined["status"].as_str()),
        (200, Some("compensated"))
    );
    until(&format!("{}/v1/dead-letters", server.url), |body| {
        body["dead_letters"]
            .as_array()
            .is_some_and(|l| l.len() == 1)
    })
    .await;

    let metrics = Metrics::scrape(&server.url).await;
    for (family, kind) in flowhost::telemetry::metrics::FAMILIES {
        if let Some((found, help)) = metrics.families.get(*family) {
            assert_eq!(found, kind, "{family}");
            assert!(!help.is_empty(), "{family} has no help text");
        }
    }
    for family in metrics.families.keys() {
        assert!(family.starts_with("flowhost_"), "{family}");
        assert!(
            flowhost::telemetry::metrics::FAMILIES
                .iter()
                .any(|(f, _)| f == family),
            "{family} is not declared in telemetry/metrics.rs"
        );
    }

    let order = [("workflow", "order_processing")];
    assert_eq!(metrics.value("flowhost_runs_started_total", &order), 2.0);
    for status in ["completed", "compensated"] {
        let labels = [("workflow", "order_processing"), ("status", status)];
        assert_eq!(
            metrics.value("flowhost_runs_ended_total", &labels),
            1.0,
            "{status}"
        );
    }
    for gauge in ["in_flight", "queued", "sleeping", "waiting"] {
        assert_eq!(
            metrics.value(&format!("flowhost_runs_{gauge}"), &[]),
            0.0,
            "{gauge}"
        );
    }
    let attempts = "flowhost_step_attempt_duration_seconds";
    let declined = [
        ("step", "process_payment"),
        ("direction", "execute"),
        ("outcome", "fatal"),
    ];
    assert_eq!(metrics.observations(attempts, &declined), 1);
    let undone = [
        ("step", "reserve_inventory"),
        ("direction", "compensate"),
        ("outcome", "ok"),
    ];
    assert_eq!(metrics.observations(attempts, &undone), 1);
    assert_eq!(
        metrics.observations(attempts, &[("step", "create_order")]),
        1
    );

    let calls = "flowhost_plugin_calls_total";
    let refused = [
        ("plugin", "payment"),
        ("export", "execute"),
        ("outcome", "error"),
    ];
    assert_eq!(metrics.value(calls, &refused), 1.0);
    let handled = [
        ("plugin", "notify"),
        ("export", "handle"),
        ("outcome", "error"),
    ];
    assert_eq!(metrics.value(calls, &handled), 3.0);
    assert!(metrics.observations("flowhost_plugin_call_duration_seconds", &[]) >= 10);

    // One call for user 7 (a 503, retried, then a 200); the second order found the user in
    // the cache the first one filled.
    let users = [("service", "users")];
    assert_eq!(
        metrics.value(
            "flowhost_service_calls_total",
            &[("service", "users"), ("status", "200")]
        ),
        1.0
    );
    assert_eq!(metrics.value("flowhost_service_calls_total", &users), 1.0);
    assert_eq!(metrics.value("flowhost_service_retries_total", &users), 1.0);
    assert_eq!(
        metrics.observations("flowhost_service_call_duration_seconds", &users),
        1
    );
    assert_eq!(
        metrics.value(
            "flowhost_service_calls_total",
            &[("service", "notifications"), ("status", "500")]
        ),
        3.0
    );
    assert_eq!(metrics.value("flowhost_cache_misses_total", &[]), 1.0);
    assert_eq!(metrics.value("flowhost_cache_hits_total", &[]), 1.0);

    let notify = [("subscription", "notify-customer")];
    let outcome = |o| [("subscription", "notify-customer"), ("outcome", o)];
    assert_eq!(
        metrics.value("flowhost_deliveries_total", &outcome("retry")),
        2.0
    );
    assert_eq!(
        metrics.value("flowhost_deliveries_total", &outcome("dead")),
        1.0
    );
    assert_eq!(metrics.value("flowhost_dead_letters_total", &notify), 1.0);
    // order.confirmed and the two lifecycle events, at least.
    assert!(metrics.value("flowhost_events_relayed_total", &[]) >= 3.0);
    assert!(metrics.observations("flowhost_relay_lag_seconds", &[]) >= 3);
    assert_eq!(metrics.value("flowhost_outbox_depth", &[]), 0.0);

    assert!(metrics.observations("flowhost_store_flush_duration_seconds", &[]) >= 2);
    assert!(metrics.observations("flowhost_store_flush_batch_size", &[]) >= 2);
    let starts = [
        ("method", "POST"),
        ("route", "/v1/workflows/{workflow}/runs"),
        ("status", "200"),
    ];
    assert_eq!(metrics.value("flowhost_http_requests_total", &starts), 2.0);
    assert_eq!(
        metrics.value("flowhost_admission_rejections_total", &[]),
        0.0
    );
    // Both runs ended: nothing pins a version; the gauge is there for each plugin.
    assert_eq!(
        metrics.value("flowhost_pinned_runs", &[("plugin", "payment")]),
        0.0
    );
    assert_eq!(metrics.samples("flowhost_pinned_runs", &[]).count(), 6);
    assert_eq!(metrics.value("flowhost_build_info", &[]), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn pins_and_waiting_runs_show_while_runs_wait() {
    let server = Server::start(&crate::support::with_plugins(
        r#"
[plugins.noop]
path = "{NOOP}"
[workflows.nap]
steps = [{ name = "a", plugin = "noop" }, { name = "nap", sleep = "1h" }]
[workflows.parked]
steps = [{ name = "a", plugin = "noop" }, { name = "wait", await = { signal = "go", timeout = "1h" } }]
"#,
    ))
    .await;
    for (workflow, count) in [("nap", 3), ("parked", 2)] {
        for _ in 0..count {
            let (status, _) = server
                .post(
                    &format!("/v1/workflows/{workflow}/runs"),
                    &serde_json::json!({}),
                )
                .await;
            assert_eq!(status, 202);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = Metrics::scrape(&server.url).await;
        // A run is counted as resting a moment before its driver gives its slot back, so
        // the three gauges settle together rather than in one scrape.
        let (sleeping, waiting, in_flight) = (
            metrics.value("flowhost_runs_sleeping", &[]),
            metrics.value("flowhost_runs_waiting", &[]),
            metrics.value("flowhost_runs_in_flight", &[]),
        );
        if (sleeping, waiting, in_flight) == (3.0, 2.0, 0.0) {
            assert_eq!(
                metrics.value("flowhost_pinned_runs", &[("plugin", "noop")]),
                5.0
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sleeping {sleeping}, waiting {waiting}, in flight {in_flight}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_can_be_turned_off() {
    let server = Server::start(&format!(
        "{}\n[telemetry]\nmetrics = false\n",
        crate::support::with_plugins(TWO_STEPS)
    ))
    .await;
    let response = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let problem: serde_json::Value = response.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("telemetry.metrics"),
        "{problem}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_says_what_it_checked() {
    let host = InProcess::start(TWO_STEPS).await;
    let (status, ready) = host.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "ready");
    let checks: Vec<&str> = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["ok"], true, "{c}");
            c["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(checks, ["store", "plugins", "transport"]);
    assert_eq!(ready["checks"][1]["detail"], "1 of 1 plugins loaded");

    // The disk fails: the host is not ready, and says why; it is still alive.
    host.faults.fail(usize::MAX, |op| matches!(op, Op::Flush));
    let (status, ready) = host.get("/readyz").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["status"], "not_ready");
    assert_eq!(ready["checks"][0]["ok"], false);
    assert!(
        ready["checks"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("flush"),
        "{ready}"
    );
    assert_eq!(ready["checks"][1]["ok"], true);
    let (status, alive) = host.get("/healthz").await;
    assert_eq!((status, alive["status"].as_str()), (200, Some("ok")));
    assert_eq!(alive["checks"][0]["name"], "process");

    host.faults.clear();
    let (status, _) = host.get("/readyz").await;
    assert_eq!(status, 200);
}
