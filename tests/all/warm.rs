//! A run's warm instance: consecutive calls of one plugin share an instance; another plugin,
//! a failed call or `clear` starts a fresh one; every call sees its own ids, and a failed
//! call's events never reach the next one.

use flowhost::CallError;
use flowhost::bindings::types::{StepError, StepInfo};
use flowhost::model::PublishedEvent;
use flowhost::runtime::{CallOptions, Direction, WarmInstance};
use serde_json::{Value, json};

use crate::support::{Host, echo_service, host, info};

fn config(service_url: &str) -> String {
    format!(
        r#"
        [services.echo]
        urls = ["{service_url}"]
        retries = 0

        [plugins.probe]
        path = "{{PROBE}}"
        services = ["echo"]
        publish = ["order.*"]

        [plugins.twin]
        path = "{{PROBE}}"
        "#
    )
}

/// Executes `step` of `plugin` in `warm`, parsing the JSON it returns.
async fn call(
    host: &Host,
    warm: &mut WarmInstance,
    plugin: &str,
    info: &StepInfo,
    ctx: Value,
) -> Result<Result<Value, StepError>, CallError> {
    Ok(call_publishing(host, warm, plugin, info, ctx).await?.0)
}

/// As [`call`], with the events the call handed back.
async fn call_publishing(
    host: &Host,
    warm: &mut WarmInstance,
    plugin: &str,
    info: &StepInfo,
    ctx: Value,
) -> Result<(Result<Value, StepError>, Vec<PublishedEvent>), CallError> {
    let plugin = host.registry.get(plugin).expect("plugin is configured");
    let answer = host
        .runtime
        .call_step_in(
            warm,
            plugin,
            Direction::Execute,
            info,
            &ctx.to_string(),
            CallOptions::default(),
        )
        .await?;
    let result = answer
        .result
        .map(|json| serde_json::from_str(&json).expect("the plugin returns JSON"));
    Ok((result, answer.events))
}

/// How many calls the instance that served this one has served.
async fn calls(host: &Host, warm: &mut WarmInstance, plugin: &str) -> u64 {
    let out = call(host, warm, plugin, &info("calls"), json!({}))
        .await
        .unwrap()
        .unwrap();
    out["calls"].as_u64().unwrap()
}

#[tokio::test]
async fn consecutive_calls_of_one_plugin_share_an_instance() {
    let url = echo_service().await;
    let host = host(&config(&url));
    let mut warm = WarmInstance::default();
    assert_eq!(calls(&host, &mut warm, "probe").await, 1);
    assert_eq!(calls(&host, &mut warm, "probe").await, 2, "reused");
    assert_eq!(
        calls(&host, &mut WarmInstance::default(), "probe").await,
        1,
        "another run's calls get their own instance"
    );
    assert_eq!(calls(&host, &mut warm, "twin").await, 1, "another plugin");
    assert_eq!(calls(&host, &mut warm, "probe").await, 1, "not the old one");
    warm.clear();
    assert_eq!(calls(&host, &mut warm, "probe").await, 1, "cleared");
}

#[tokio::test]
async fn a_reused_instance_serves_each_call_with_that_calls_ids() {
    let url = echo_service().await;
    let host = host(&config(&url));
    let mut warm = WarmInstance::default();
    let request = json!({"service": "echo", "method": "post", "path": "/pay"});
    for (run, step) in [("run-1", "pay"), ("run-2", "refund")] {
        let info = StepInfo {
            run_id: run.into(),
            workflow: "tests".into(),
            step: "call".into(),
            attempt: 1,
            idempotency_key: format!("{run}:{step}:execute"),
        };
        let out = call(&host, &mut warm, "probe", &info, request.clone())
            .await
            .unwrap()
            .unwrap();
        let echoed: Value = serde_json::from_str(out["ok"]["body"].as_str().unwrap()).unwrap();
        assert_eq!(
            echoed["headers"]["idempotency-key"],
            format!("{run}:{step}:execute")
        );
        assert_eq!(echoed["headers"]["x-request-id"], run);
    }
    assert_eq!(
        calls(&host, &mut warm, "probe").await,
        3,
        "one instance served all three"
    );
}

#[tokio::test]
async fn a_failed_attempt_keeps_the_instance_but_not_its_events() {
    let host = host(&config("http://127.0.0.1:9"));
    let mut warm = WarmInstance::default();
    let event = json!({"topic": "order.confirmed", "data": "{}"});
    let (failed, events) = call_publishing(
        &host,
        &mut warm,
        "probe",
        &info("publish_then_fail"),
        event.clone(),
    )
    .await
    .unwrap();
    assert!(matches!(failed, Err(StepError::Retryable(_))), "{failed:?}");
    assert!(events.is_empty(), "the failed attempt's event is dropped");
    assert_eq!(
        calls(&host, &mut warm, "probe").await,
        2,
        "a plugin error is an answer"
    );
    let (ok, events) = call_publishing(&host, &mut warm, "probe", &info("publish"), event)
        .await
        .unwrap();
    assert!(ok.is_ok());
    assert_eq!(events.len(), 1, "only the successful call's own event");
    assert!(
        host.sink.events().is_empty(),
        "handed back, not released: the engine releases them with the step's result"
    );
}

#[tokio::test]
async fn a_trap_takes_its_instance_with_it() {
    let host = host(&config("http://127.0.0.1:9"));
    let mut warm = WarmInstance::default();
    assert_eq!(calls(&host, &mut warm, "probe").await, 1);
    let trapped = call(&host, &mut warm, "probe", &info("trap"), json!({})).await;
    assert!(
        matches!(trapped, Err(CallError::Trap { .. })),
        "{trapped:?}"
    );
    assert_eq!(
        calls(&host, &mut warm, "probe").await,
        1,
        "a fresh instance"
    );
}
