//! Every capability from a real plugin (`probe`), each grant denied.

use serde_json::{Value, json};

use crate::support::{LogCapture, echo_service, host};

fn probe_config(service_url: &str) -> String {
    format!(
        r#"
        [services.echo]
        urls = ["{service_url}"]
        retries = 0
        [services.other]
        urls = ["{service_url}"]

        [plugins.probe]
        path = "{{PROBE}}"
        services = ["echo"]
        publish = ["order.*"]
        [plugins.probe.config]
        region = "eu-west"

        [plugins.stranger]
        path = "{{PROBE}}"

        [plugins.sharer]
        path = "{{PROBE}}"
        cache-namespace = "probe"
        "#
    )
}

#[tokio::test]
async fn services_calls_carry_the_runs_ids_and_respect_grants() {
    let url = echo_service().await;
    let host = host(&probe_config(&url));

    let out = host
        .ok(
            "probe",
            "call",
            json!({"service": "echo", "method": "post", "path": "/pay", "body": "{}",
            "headers": [["idempotency-key", "line-2"], ["x-trace", "t"]]}),
        )
        .await;
    let response: Value = serde_json::from_str(out["ok"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(out["ok"]["status"], 200);
    assert_eq!(response["method"], "POST");
    assert_eq!(response["path"], "/pay");
    assert_eq!(response["headers"]["x-request-id"], "run-1");
    assert_eq!(
        response["headers"]["idempotency-key"],
        "run-1:call:execute/line-2"
    );
    assert_eq!(response["headers"]["x-trace"], "t");

    let out = host
        .ok(
            "probe",
            "call",
            json!({"service": "echo", "method": "get", "path": "/x?status=404"}),
        )
        .await;
    assert_eq!(out["err"]["kind"], "http");
    assert_eq!(out["err"]["status"], 404);

    let out = host
        .ok(
            "probe",
            "call",
            json!({"service": "other", "method": "get", "path": "/"}),
        )
        .await;
    assert_eq!(out["err"]["kind"], "denied", "{out}");
    let out = host
        .ok(
            "probe",
            "call",
            json!({"service": "ghost", "method": "get", "path": "/"}),
        )
        .await;
    assert_eq!(out["err"]["kind"], "unknown-service", "{out}");
    let out = host
        .ok(
            "stranger",
            "call",
            json!({"service": "echo", "method": "get", "path": "/"}),
        )
        .await;
    assert_eq!(
        out["err"]["kind"], "denied",
        "a plugin without grants reaches nothing: {out}"
    );
}

#[tokio::test]
async fn cache_survives_across_calls_and_is_namespaced() {
    let host = host(&probe_config("http://127.0.0.1:9"));
    let out = host
        .ok(
            "probe",
            "cache_set",
            json!({"key": "user:1", "value": "ada"}),
        )
        .await;
    assert_eq!(out, json!({"ok": null}));
    let out = host
        .ok("probe", "cache_get", json!({"key": "user:1"}))
        .await;
    assert_eq!(
        out["value"], "ada",
        "a fresh instance sees what the last one stored"
    );
    let out = host
        .ok("stranger", "cache_get", json!({"key": "user:1"}))
        .await;
    assert_eq!(
        out["value"],
        Value::Null,
        "another plugin's namespace is apart"
    );
    let out = host
        .ok("sharer", "cache_get", json!({"key": "user:1"}))
        .await;
    assert_eq!(
        out["value"], "ada",
        "a configured shared namespace is shared"
    );

    host.ok("probe", "cache_delete", json!({"key": "user:1"}))
        .await;
    let out = host
        .ok("probe", "cache_get", json!({"key": "user:1"}))
        .await;
    assert_eq!(out["value"], Value::Null);

    host.ok(
        "probe",
        "cache_set",
        json!({"key": "brief", "value": "x", "ttl_ms": 50}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(120)).await;
    let out = host.ok("probe", "cache_get", json!({"key": "brief"})).await;
    assert_eq!(out["value"], Value::Null, "expired");

    let out = host
        .ok("probe", "cache_set", json!({"key": "", "value": "x"}))
        .await;
    assert_eq!(out["err"]["kind"], "invalid-key");
    let big = "x".repeat(2 * 1024 * 1024);
    let out = host
        .ok("probe", "cache_set", json!({"key": "big", "value": big}))
        .await;
    assert_eq!(out["err"]["kind"], "too-large");
}

#[tokio::test]
async fn published_events_reach_the_sink_only_from_successful_calls() {
    let host = host(&probe_config("http://127.0.0.1:9"));
    let out = host
        .ok(
            "probe",
            "publish",
            json!({"topic": "order.confirmed", "data": "{\"order_id\":\"o-1\"}", "key": "o-1"}),
        )
        .await;
    let id = out["ok"].as_str().expect("an event id").to_owned();
    let events = host.sink.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id, id);
    assert_eq!(events[0].topic, "order.confirmed");
    assert_eq!(events[0].source, "plugin/probe");
    assert_eq!(events[0].correlation_id.as_deref(), Some("run-1"));
    assert_eq!(events[0].key.as_deref(), Some("o-1"));
    assert_eq!(events[0].data, "{\"order_id\":\"o-1\"}");

    for (topic, data, kind) in [
        ("user.created", "{}", "denied"),
        ("order..x", "{}", "invalid-topic"),
        ("order.x", "{not json", "invalid-data"),
    ] {
        let out = host
            .ok("probe", "publish", json!({"topic": topic, "data": data}))
            .await;
        assert_eq!(out["err"]["kind"], kind, "{topic} {data}: {out}");
    }
    let out = host
        .ok(
            "stranger",
            "publish",
            json!({"topic": "order.x", "data": "{}"}),
        )
        .await;
    assert_eq!(out["err"]["kind"], "denied");

    let failed = host
        .execute(
            "probe",
            "publish_then_fail",
            json!({"topic": "order.confirmed", "data": "{}"}),
        )
        .await
        .unwrap();
    assert!(failed.is_err(), "the step fails");
    assert_eq!(
        host.sink.events().len(),
        1,
        "a failed attempt's events are dropped"
    );
}

#[tokio::test]
async fn config_is_the_plugins_own() {
    let host = host(&probe_config("http://127.0.0.1:9"));
    assert_eq!(
        host.ok("probe", "config", json!({"key": "region"})).await["value"],
        "eu-west"
    );
    assert_eq!(
        host.ok("probe", "config", json!({"key": "missing"})).await["value"],
        Value::Null
    );
    assert_eq!(
        host.ok("stranger", "config", json!({"key": "region"}))
            .await["value"],
        Value::Null
    );
}

#[tokio::test]
async fn logs_carry_plugin_run_and_step() {
    let host = host(&probe_config("http://127.0.0.1:9"));
    let logs = LogCapture::start();
    host.ok(
        "probe",
        "log",
        json!({"level": "warn", "message": "inventory low"}),
    )
    .await;
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("inventory low"))
        .expect("the line is logged");
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains("plugin=\"probe\"") || line.contains("plugin=probe"),
        "{line}"
    );
    assert!(line.contains("run-1"), "{line}");
    assert!(
        line.contains("step=\"log\"") || line.contains("step=log"),
        "{line}"
    );
}

#[tokio::test]
async fn step_info_reaches_the_plugin_and_step_errors_come_back() {
    use flowhost::bindings::types::StepError;

    let host = host(&probe_config("http://127.0.0.1:9"));
    let out = host.ok("probe", "info", json!({})).await;
    assert_eq!(
        out,
        json!({"run_id": "run-1", "workflow": "tests", "step": "info", "attempt": 1,
               "idempotency_key": "run-1:info:execute"})
    );
    let retry = host
        .execute(
            "probe",
            "fail",
            json!({"kind": "retryable", "message": "busy"}),
        )
        .await
        .unwrap();
    assert!(matches!(retry, Err(StepError::Retryable(m)) if m == "busy"));
    let fatal = host
        .execute("probe", "fail", json!({"kind": "fatal", "message": "no"}))
        .await
        .unwrap();
    assert!(matches!(fatal, Err(StepError::Fatal(m)) if m == "no"));
    let echo = host.ok("probe", "echo", json!({"a": [1, 2]})).await;
    assert_eq!(echo, json!({"a": [1, 2]}));

    let plugin = host.registry.get("probe").unwrap();
    let out = host
        .runtime
        .compensate(plugin, &crate::support::info("echo"), "{}")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out, r#"{"compensated":"echo"}"#);
}

#[tokio::test]
async fn handler_plugins_handle_events() {
    use flowhost::bindings::types::Event;

    let host = host(
        r#"
        [plugins.audit]
        path = "{AUDIT_LOG}"
        [plugins.probe]
        path = "{PROBE}"
        cache-namespace = "audit"
        "#,
    );
    let audit = host.registry.get("audit").unwrap();
    let event = |data: &str| Event {
        id: "evt-1".into(),
        topic: "order.confirmed".into(),
        source: "tests".into(),
        time_ms: 0,
        correlation_id: Some("run-9".into()),
        data: data.into(),
    };
    host.runtime
        .handle(audit, "audit", &event("{}"))
        .await
        .unwrap()
        .unwrap();
    host.runtime
        .handle(audit, "audit", &event("{}"))
        .await
        .unwrap()
        .unwrap();
    let count = host
        .ok(
            "probe",
            "cache_get",
            json!({"key": "count:order.confirmed"}),
        )
        .await;
    assert_eq!(
        count["value"], "2",
        "the handler counted both deliveries: {count}"
    );
    let failed = host
        .runtime
        .handle(audit, "audit", &event(r#"{"fail": true}"#))
        .await
        .unwrap();
    assert_eq!(failed, Err("asked to fail".to_string()));

    let wrong = host
        .runtime
        .execute(audit, &crate::support::info("x"), "{}")
        .await;
    assert!(
        matches!(&wrong, Err(flowhost::CallError::WrongWorld { .. })),
        "a handler has no steps: {wrong:?}"
    );
}
