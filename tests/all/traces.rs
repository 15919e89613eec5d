//! OpenTelemetry: one trace from the HTTP trigger through the run, its steps, its service
//! calls, the event a step published, the event's delivery over NATS JetStream and its
//! handler, exported over OTLP to a receiver on loopback that decodes what it gets; and the
//! mock services saw the trace's `traceparent` on every call.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::Value;

use crate::server::{Server, Services, order};

/// A span as the receiver decoded it.
#[derive(Debug, Clone)]
struct Span {
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    kind: i32,
    service: String,
    attributes: BTreeMap<String, String>,
}

/// An OTLP/HTTP (protobuf) trace receiver on loopback: what an OpenTelemetry collector's
/// `otlp` receiver does, keeping every span it decodes.
struct Receiver {
    url: String,
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: Bytes| {
                let kept = kept.clone();
                async move {
                    let request = ExportTraceServiceRequest::decode(body)
                        .expect("an OTLP ExportTraceServiceRequest");
                    let mut kept = kept.lock().unwrap();
                    for resource in request.resource_spans {
                        let service = resource
                            .resource
                            .iter()
                            .flat_map(|r| &r.attributes)
                            .find(|a| a.key == "service.name")
                            .and_then(|a| a.value.as_ref())
                            .map(text)
                            .unwrap_or_default();
                        for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                            kept.push(Span {
                                trace_id: hex::encode(&span.trace_id),
                                span_id: hex::encode(&span.span_id),
                                parent: hex::encode(&span.parent_span_id),
                                name: span.name,
                                kind: span.kind,
                                service: service.clone(),
                                attributes: span
                                    .attributes
                                    .iter()
                                    .map(|a| {
                                        (
                                            a.key.clone(),
                                            a.value.as_ref().map(text).unwrap_or_default(),
                                        )
                                    })
                                    .collect(),
                            });
                        }
                    }
                    (
                        [("content-type", "application/x-protobuf")],
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, spans }
    }

    /// The spans of trace `trace_id` received so far.
    fn trace(&self, trace_id: &str) -> Vec<Span> {
        let spans = self.spans.lock().unwrap();
        spans
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }
}

/// An attribute's value as text.
fn text(value: &opentelemetry_proto::tonic::common::v1::AnyValue) -> String {
    match &value.value {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// What the mock services remember of the `traceparent` of each request.
async fn traced(services: &Services) -> Value {
    reqwest::get(format!("{}/admin/traces", services.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread")]
async fn one_trace_runs_from_the_trigger_through_steps_services_and_a_delivery_over_nats() {
    let receiver = Receiver::start().await;
    let services = Services::start().await;
    let stream = "TEST_TRACES";
    let client = async_nats::connect("nats://127.0.0.1:4222")
        .await
        .expect("NATS is up");
    let _ = async_nats::jetstream::new(client)
        .delete_stream(stream)
        .await;
    let config = format!(
        "{}\n[events.transport]\nkind = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\nstream = \"{stream}\"\n\n[telemetry]\notlp-endpoint = \"{}\"\nservice-name = \"flowhost-test\"\n",
        services.config(),
        receiver.url
    );
    let mut server = Server::start(&config).await;

    let response = server
        .client
        .post(format!(
            "{}/v1/workflows/order_processing/runs?wait=30s",
            server.url
        ))
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .json(&order("o-trace", 7, 50.0))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let run: Value = response.json().await.unwrap();
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["trace_id"], TRACE_ID);
    // The confirmation's delivery calls the notifications service.
    let deadline = Instant::now() + Duration::from_secs(30);
    while services.ledger().await["notifications"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        assert!(Instant::now() < deadline, "{}", services.ledger().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A clean stop exports what is buffered.
    let (_, clean) = server.terminate();
    assert!(clean, "{}", server.log());

    let deadline = Instant::now() + Duration::from_secs(10);
    let spans = loop {
        let spans = receiver.trace(TRACE_ID);
        if spans.iter().any(|s| s.name.starts_with("handle ")) || Instant::now() > deadline {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert!(spans.iter().all(|s| s.service == "flowhost-test"));
    let by_id: BTreeMap<&str, &Span> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let one = |name: &str| -> &Span {
        let found: Vec<&Span> = spans.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "{name} in {names:#?}");
        found[0]
    };
    let parent_of = |span: &Span| -> &Span {
        by_id
            .get(span.parent.as_str())
            .unwrap_or_else(|| panic!("{}'s parent is not in the trace: {names:#?}", span.name))
    };

    // The trigger's request continues the caller's trace (OTel kind 2 = server).
    let http = one("POST /v1/workflows/{workflow}/runs");
    assert_eq!(http.parent, CALLER_SPAN);
    assert_eq!(http.kind, 2);
    // Each step attempt is a child of the request that started the run.
    for step in [
        "validate_user",
        "reserve_inventory",
        "process_payment",
        "create_order",
        "send_confirmation",
    ] {
        let attempt = one(&format!("execute {step}"));
        assert_eq!(attempt.parent, http.span_id, "{step}");
        assert_eq!(attempt.attributes["outcome"], "ok", "{step}");
        assert_eq!(attempt.attributes["workflow"], "order_processing", "{step}");
        assert_eq!(
            attempt.attributes["run_id"],
            run["id"].as_str().unwrap(),
            "{step}"
        );
    }
    // Each service call (kind 3 = client) is a child of its step's attempt.
    let calls: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name.starts_with("call "))
        .collect();
    for call in &calls {
        assert_eq!(call.kind, 3);
        let caller = parent_of(call);
        assert!(
            caller.name.starts_with("execute ") || caller.name.starts_with("handle "),
            "{} under {}",
            call.attributes["service"],
            caller.name
        );
    }
    let services_called: Vec<&str> = calls
        .iter()
        .map(|c| c.attributes["service"].as_str())
        .collect();
    for service in ["users", "inventory", "payments", "orders", "notifications"] {
        assert!(
            services_called.contains(&service),
            "{service}: {services_called:?}"
        );
    }
    // The event the last step published (kind 4 = producer), its delivery through NATS on
    // (kind 5 = consumer), and the handler under that, which calls the notification service.
    let publish = one("publish order.confirmed");
    assert_eq!(publish.kind, 4);
    assert_eq!(parent_of(publish).name, "execute send_confirmation");
    let delivery = one("deliver to notify-customer");
    assert_eq!(delivery.kind, 5);
    assert_eq!(delivery.parent, publish.span_id);
    assert_eq!(delivery.attributes["topic"], "order.confirmed");
    let handler = one("handle notify");
    assert_eq!(handler.parent, delivery.span_id);
    assert!(
        calls
            .iter()
            .any(|c| c.attributes["service"] == "notifications" && c.parent == handler.span_id)
    );

    // The services saw the trace on every call, each with its call's own span id.
    let traced = traced(&services).await;
    let seen = traced["requests"].as_array().unwrap();
    let routes: Vec<&str> = seen.iter().map(|r| r["route"].as_str().unwrap()).collect();
    for route in [
        "users",
        "reservations",
        "payments",
        "orders",
        "notifications",
    ] {
        assert!(routes.contains(&route), "{route}: {traced}");
    }
    for request in seen {
        let traceparent = request["traceparent"].as_str().unwrap();
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts[1], TRACE_ID, "{traceparent}");
        assert!(by_id[parts[2]].name.starts_with("call "), "{traceparent}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_without_a_caller_starts_a_trace_of_its_own() {
    let receiver = Receiver::start().await;
    let config = format!(
        "{}\n[telemetry]\notlp-endpoint = \"{}\"\n",
        crate::support::with_plugins(crate::support::TWO_STEPS),
        receiver.url
    );
    let mut server = Server::start(&config).await;
    let (status, run) = server
        .post("/v1/workflows/two/runs?wait=30s", &serde_json::json!({}))
        .await;
    assert_eq!(status, 200);
    let trace_id = run["trace_id"].as_str().expect("a trace id").to_owned();
    assert_ne!(trace_id, TRACE_ID);
    server.terminate();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let spans = receiver.trace(&trace_id);
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        if ["execute a", "execute b"].iter().all(|n| names.contains(n)) {
            let root = spans.iter().find(|s| s.name.starts_with("POST ")).unwrap();
            assert!(root.parent.is_empty(), "the request is the trace's root");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{names:?} all: {:#?}",
            receiver
                .spans
                .lock()
                .unwrap()
                .iter()
                .map(|s| (s.name.clone(), s.trace_id.clone(), s.parent.clone()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A schedule's firing has no caller to continue: the run is the root of a trace of its
/// own, with all its steps in it (not a new trace per step).
#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_run_is_one_trace() {
    let receiver = Receiver::start().await;
    let config = format!(
        r#"{}
[workflows.tick]
schedule = "* * * * * *"
steps = [{{ name = "a", plugin = "noop" }}, {{ name = "b", plugin = "noop" }}]
[telemetry]
otlp-endpoint = "{}"
"#,
        crate::support::with_plugins(crate::support::TWO_STEPS),
        receiver.url
    );
    let mut server = Server::start(&config).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let run = loop {
        let (_, page) = server
            .get("/v1/runs?workflow=tick&status=completed&limit=1")
            .await;
        if let Some(run) = page["runs"].as_array().and_then(|runs| runs.first()) {
            break run.clone();
        }
        assert!(Instant::now() < deadline, "no firing completed: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let trace_id = run["trace_id"].as_str().expect("a trace id").to_owned();
    server.terminate();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let spans = receiver.trace(&trace_id);
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        if ["run tick", "execute a", "execute b"]
            .iter()
            .all(|n| names.contains(n))
        {
            let root = spans.iter().find(|s| s.name == "run tick").unwrap();
            assert!(root.parent.is_empty(), "the run is the trace's root");
            break;
        }
        assert!(Instant::now() < deadline, "{names:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("flowhost.toml");
    std::fs::write(
        &config,
        format!(
            "data-dir = {:?}\n{}",
            crate::support::SHARED_DATA_DIR,
            crate::support::with_plugins(crate::support::TWO_STEPS)
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_flowhost"))
        .args(["--log-format", "json", "check", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let loaded = lines
        .iter()
        .find(|line| line["fields"]["message"] == "configuration loaded")
        .expect("the configuration's line");
    assert_eq!(loaded["level"], "INFO");
    assert!(
        loaded["fields"]["config"]
            .as_str()
            .unwrap()
            .contains("workflows=[two]")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_exporter_the_callers_trace_is_passed_on_unchanged() {
    let services = Services::start().await;
    let server = Server::start(&services.config()).await;
    let caller = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let response = server
        .client
        .post(format!(
            "{}/v1/workflows/order_processing/runs?wait=30s",
            server.url
        ))
        .header("traceparent", &caller)
        .json(&order("o-pass", 7, 50.0))
        .send()
        .await
        .unwrap();
    let run: Value = response.json().await.unwrap();
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["trace_id"], TRACE_ID);
    // No span of ours reaches a backend, so none is named as a parent: the services see the
    // caller's own context.
    let traced = traced(&services).await;
    let seen = traced["requests"].as_array().unwrap();
    assert!(seen.len() >= 4, "{traced}");
    for request in seen {
        assert_eq!(request["traceparent"], caller.as_str(), "{traced}");
    }
    // Without a caller's context there is no trace to pass on.
    let (_, run) = server
        .post(
            "/v1/workflows/order_processing/runs?wait=30s",
            &order("o-none", 7, 50.0),
        )
        .await;
    assert_eq!(run["status"], "completed", "{run}");
    assert!(run.get("trace_id").is_none(), "{run}");
}
