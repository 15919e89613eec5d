//! Recorded workflows (`record = true`): each plugin attempt's input, service calls and
//! events in the journal, with no secret in it, on the real binary and the `probe` plugin.

use serde_json::{Value, json};

use crate::server::Server;
use crate::support::echo_service;

const TOKEN: &str = "s3cret-token-value-0123";

fn config(echo: &str) -> String {
    format!(
        r#"
[services.echo]
urls = ["{echo}"]
retries = 0
token-env = "ECHO_SERVICE_TOKEN"
[plugins.probe]
path = "{probe}"
services = ["echo"]
publish = ["order.*"]
[workflows.recorded]
record = true
steps = [{{ name = "call", plugin = "probe" }}, {{ name = "publish", plugin = "probe" }}]
[workflows.plain]
steps = [{{ name = "call", plugin = "probe" }}]
"#,
        probe = flowhost_test_artifacts::PROBE
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_run_keeps_each_attempts_input_calls_and_events_and_no_secret() {
    let echo = echo_service().await;
    let server = Server::start_with_env(&config(&echo), &[("ECHO_SERVICE_TOKEN", TOKEN)]).await;
    let input = json!({
        "service": "echo", "method": "post", "path": "/pay", "body": "{\"amount\":5}",
        "headers": [["x-api-key", "k-123"], ["x-trace", "t"]],
        "topic": "order.paid", "data": "{\"n\":1}",
    });
    let (status, run) = server
        .post("/v1/workflows/recorded/runs?wait=20s", &input)
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "completed", "{run}");
    let id = run["id"].as_str().unwrap();
    let (_, journal) = server.get(&format!("/v1/runs/{id}/journal")).await;
    let attempts = journal["attempts"].as_array().unwrap();

    let called = &attempts[0]["recording"];
    assert_eq!(called["input"], input, "{journal}");
    let call = &called["calls"][0];
    assert_eq!(
        (&call["service"], &call["method"], &call["path"]),
        (&json!("echo"), &json!("POST"), &json!("/pay")),
        "{journal}"
    );
    assert_eq!(call["body"]["text"], "{\"amount\":5}");
    // The plugin's headers, less the one that may carry a secret.
    assert_eq!(call["headers"], json!([["x-trace", "t"]]), "{journal}");
    assert_eq!(call["result"]["kind"], "response", "{journal}");
    assert_eq!(call["result"]["status"], 200);
    // The echo service sends the request's headers back, the host's token among them:
    // the recording has it blanked.
    let echoed: Value =
        serde_json::from_str(call["result"]["body"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(echoed["headers"]["authorization"], "Bearer [redacted]");
    assert_eq!(echoed["headers"]["x-trace"], "t");
    // (The step's output is what the plugin made of the answer: the recording adds no
    // secret to the journal that the plugin did not put there itself.)
    assert!(!called["calls"].to_string().contains(TOKEN), "{journal}");

    let published = &attempts[1]["recording"];
    assert_eq!(
        published["events"],
        json!([{ "topic": "order.paid", "data": "{\"n\":1}" }]),
        "{journal}"
    );
    assert!(published.get("calls").is_none(), "{journal}");

    // A workflow that does not record keeps none of it.
    let (status, run) = server
        .post("/v1/workflows/plain/runs?wait=20s", &input)
        .await;
    assert_eq!(status, 200, "{run}");
    let id = run["id"].as_str().unwrap();
    let (_, journal) = server.get(&format!("/v1/runs/{id}/journal")).await;
    assert!(
        journal["attempts"][0].get("recording").is_none(),
        "{journal}"
    );
}
