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
    // With the id the host gave it, which the step returned.
    let id = attempts[1]["output"]["ok"].as_str().unwrap();
    assert_eq!(
        published["events"],
        json!([{ "id": id, "topic": "order.paid", "data": "{\"n\":1}" }]),
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

/// `flowhost replay ARGS` against `server`: exit code, stdout, stderr.
fn replay(server: &Server, args: &[&str]) -> (Option<i32>, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_flowhost"))
        .arg("replay")
        .args(args)
        .args(["--server", &server.url])
        .env("FLOWHOST_ADMIN_TOKEN", crate::swap::TOKEN)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_order_replays_the_same_on_its_own_versions_with_no_network() {
    recorded_order_replays_the_same(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_order_replays_the_same_on_postgres() {
    let database = flowhost::store::postgres::ScratchDatabase::create().await;
    recorded_order_replays_the_same(Some(&database)).await;
}

/// The order saga recorded (on `database`'s store if given, else sled), then each run
/// replayed with the services gone.
async fn recorded_order_replays_the_same(
    database: Option<&flowhost::store::postgres::ScratchDatabase>,
) {
    let services = crate::server::Services::start().await;
    let config = services.config().replace(
        "[workflows.order_processing]\n",
        "[workflows.order_processing]\nrecord = true\n",
    );
    let config = format!("admin-token = {:?}\n{config}", crate::swap::TOKEN);
    let config = match database {
        Some(database) => crate::postgres::on(database, &config),
        None => config,
    };
    let server = Server::start(&config).await;
    // Twice for one user: the second validation reads the user from the cache.
    let mut ids = Vec::new();
    for order_id in ["o-rec-1", "o-rec-2"] {
        let (status, run) = server
            .post(
                "/v1/workflows/order_processing/runs?wait=20s",
                &crate::server::order(order_id, 7, 120.0),
            )
            .await;
        assert_eq!(
            (status, &run["status"]),
            (200, &json!("completed")),
            "{run}"
        );
        ids.push(run["id"].as_str().unwrap().to_owned());
    }
    let (_, journal) = server.get(&format!("/v1/runs/{}/journal", ids[1])).await;
    let validated = &journal["attempts"][0]["recording"];
    assert!(validated["cache"][0]["value"].is_object(), "{journal}");
    assert!(
        validated.get("calls").is_none(),
        "a cache hit calls nothing: {journal}"
    );

    // The services are gone: whatever a replay calls would fail.
    drop(services);
    for id in &ids {
        let (code, out, err) = replay(&server, &[id, "--json"]);
        assert_eq!(code, Some(0), "{out} {err}");
        let report: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["same"], true, "{report}");
        assert_eq!(report["attempts"].as_array().unwrap().len(), 5, "{report}");
    }
    let (code, out, _) = replay(&server, &[&ids[0]]);
    assert_eq!(code, Some(0));
    assert!(out.contains("process_payment execute #1: same"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_on_a_changed_version_shows_where_it_differs() {
    let marks = crate::swap::Marks::start().await;
    let config = crate::swap::config(flowhost_test_artifacts::MARKED_V1, &marks, "")
        .replace("[workflows.w]\n", "[workflows.w]\nrecord = true\n");
    let server = Server::start(&config).await;
    let (status, run) = server
        .post("/v1/workflows/w/runs?wait=20s", &json!({}))
        .await;
    assert_eq!(
        (status, &run["status"]),
        (200, &json!("completed")),
        "{run}"
    );
    let id = run["id"].as_str().unwrap();

    let (code, out, err) = replay(&server, &[id]);
    assert_eq!(code, Some(0), "{out} {err}");
    let v2 = format!("marked={}", flowhost_test_artifacts::MARKED_V2);
    let (code, out, err) = replay(&server, &[id, "--plugin", &v2, "--json"]);
    assert_eq!(code, Some(1), "{out} {err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["same"], false);
    let first = &report["attempts"][0];
    let aspects: Vec<&str> = first["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["aspect"].as_str().unwrap())
        .collect();
    // Its output says v2, and so does the body it posts to the marks service.
    assert_eq!(aspects, ["output", "call"], "{report}");
    assert_eq!(first["differences"][0]["recorded"]["output"]["a"], "v1");
    assert_eq!(first["differences"][0]["replayed"]["output"]["a"], "v2");

    // A run that recorded nothing cannot be replayed, and says why.
    let plain = crate::swap::config(flowhost_test_artifacts::MARKED_V1, &marks, "");
    drop(server);
    let server = Server::start(&plain).await;
    let (_, run) = server
        .post("/v1/workflows/w/runs?wait=20s", &json!({}))
        .await;
    let (code, _, err) = replay(&server, &[run["id"].as_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("record = true"), "{err}");
}

/// `PUT /v1/plugins/payment?QUERY` with `wasm`, as admin.
async fn push_payment(server: &Server, query: &str, wasm: Vec<u8>) -> (u16, Value) {
    crate::swap::admin(
        server,
        reqwest::Method::PUT,
        &format!("/v1/plugins/payment?{query}"),
        Some(wasm),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canary_gate_refuses_a_payment_version_that_charges_a_different_amount() {
    let services = crate::server::Services::start().await;
    let config = services.config().replace(
        "[workflows.order_processing]\n",
        "[workflows.order_processing]\nrecord = true\n",
    );
    let server = Server::start(&format!("admin-token = {:?}\n{config}", crate::swap::TOKEN)).await;
    for (i, total) in [120.0, 80.0, 45.5].into_iter().enumerate() {
        let (status, run) = server
            .post(
                "/v1/workflows/order_processing/runs?wait=20s",
                &crate::server::order(&format!("o-canary-{i}"), 7, total),
            )
            .await;
        assert_eq!(
            (status, &run["status"]),
            (200, &json!("completed")),
            "{run}"
        );
    }
    let current = || async {
        let (_, plugin) =
            crate::swap::admin(&server, reqwest::Method::GET, "/v1/plugins/payment", None).await;
        plugin["current"].as_str().unwrap().to_owned()
    };
    let before = current().await;
    let dir = std::path::Path::new(flowhost_test_artifacts::PROBE)
        .parent()
        .unwrap();
    let surcharge = std::fs::read(dir.join("payment_surcharge.wasm")).unwrap();
    let payment = std::fs::read(dir.join("payment.wasm")).unwrap();

    // 10% more: the POST /payments bodies differ, and so nothing changes.
    let (status, refused) = push_payment(&server, "replay=10", surcharge.clone()).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["replayed"], 3, "{refused}");
    let differing = refused["differences"].as_array().unwrap();
    assert_eq!(differing.len(), 3, "{refused}");
    let call = differing
        .iter()
        .flat_map(|d| d["replayed"]["differences"].as_array().unwrap())
        .find(|d| d["aspect"] == "call")
        .unwrap_or_else(|| panic!("no call difference: {refused}"));
    let body = |side: &str| -> Value {
        serde_json::from_str(call[side]["body"]["text"].as_str().unwrap()).unwrap()
    };
    let (recorded, replayed) = (body("recorded"), body("replayed"));
    let ratio = replayed["amount"].as_f64().unwrap() / recorded["amount"].as_f64().unwrap();
    assert!((ratio - 1.1).abs() < 1e-9, "{recorded} {replayed}");
    assert_eq!(current().await, before);
    // Allowing output differences does not let a different call through.
    let (status, refused) =
        push_payment(&server, "replay=10&replay-allow=outputs", surcharge.clone()).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(current().await, before);

    // The same code under another digest replays the same, and goes live.
    let same = flowhost_test_artifacts::with_custom_section(&payment, b"rebuilt");
    let (status, pushed) = push_payment(&server, "replay=2", same).await;
    assert_eq!(status, 201, "{pushed}");
    assert_eq!(pushed["replayed"], 2, "{pushed}");
    assert_ne!(current().await, before);

    // Bad parameters are refused before anything runs.
    for query in ["replay=0", "replay=101", "replay=3&replay-allow=everything"] {
        let (status, problem) = push_payment(&server, query, surcharge.clone()).await;
        assert_eq!(status, 400, "{query}: {problem}");
    }
}
