//! `flowhost step run` and `flowhost handler run`: one step of a real component, executed
//! and compensated by the binary with no server, against the example's services on
//! loopback; one event handled the same way.

use std::process::Command;

use serde_json::{Value, json};

use crate::sagas::count;
use crate::server::{PLUGIN_DIR, Services, order};

/// `flowhost step run FILE ARGS --json`, with `input` as the context on stdin: the exit
/// code and the report.
fn step_run(file: &str, args: &[&str], input: &Value) -> (Option<i32>, Value) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowhost"))
        .args(["step", "run", file, "--input", "-", "--json"])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout} {}", String::from_utf8_lossy(&output.stderr)));
    (output.status.code(), report)
}

fn plugin(name: &str) -> String {
    format!("{}/{name}.wasm", PLUGIN_DIR.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_runs_and_compensates_here_against_its_services() {
    let services = Services::start().await;
    let payments = format!("payments={}", services.url);
    let context = order("o-step", 7, 120.0);
    let (code, paid) = step_run(
        &plugin("payment"),
        &["--step", "process_payment", "--service", &payments],
        &context,
    );
    assert_eq!(code, Some(0), "{paid}");
    assert_eq!(paid["outcome"], "ok", "{paid}");
    let payment_id = paid["output"]["payment_id"].as_str().unwrap().to_owned();
    let ledger = services.order("o-step").await;
    assert_eq!(count(&ledger, "payments", "captured"), 1, "{ledger}");

    // Compensated with what the run's context would hold by then: refunded.
    let mut context = context;
    context["payment_id"] = json!(payment_id);
    let (code, refunded) = step_run(
        &plugin("payment"),
        &[
            "--step",
            "process_payment",
            "--service",
            &payments,
            "--compensate",
        ],
        &context,
    );
    assert_eq!(code, Some(0), "{refunded}");
    let ledger = services.order("o-step").await;
    assert_eq!(count(&ledger, "payments", "captured"), 0, "{ledger}");

    // A service that answers 503 once: the step sees it (one attempt, no host retries).
    services.fail("payments", 1, 503).await;
    let (code, failed) = step_run(
        &plugin("payment"),
        &["--step", "process_payment", "--service", &payments],
        &order("o-step-2", 7, 10.0),
    );
    assert_eq!(code, Some(1), "{failed}");
    assert_eq!(failed["outcome"], "retryable", "{failed}");
}

#[test]
fn a_steps_events_log_config_and_failures_are_reported() {
    let probe = flowhost_test_artifacts::PROBE;
    let (code, published) = step_run(
        &plugin("send_confirmation"),
        &["--step", "send_confirmation"],
        &order("o-1", 7, 20.0),
    );
    assert_eq!(code, Some(0), "{published}");
    assert_eq!(
        published["events"][0]["topic"], "order.confirmed",
        "{published}"
    );
    assert_eq!(
        published["events"][0]["data"]["order_id"], "o-1",
        "{published}"
    );

    let (code, logged) = step_run(
        probe,
        &["--step", "log"],
        &json!({ "level": "warn", "message": "low stock" }),
    );
    assert_eq!(code, Some(0), "{logged}");
    assert_eq!(
        logged["log"],
        json!([{ "level": "warn", "message": "low stock" }])
    );

    let (_, configured) = step_run(
        probe,
        &[
            "--step",
            "config",
            "--config",
            "region=eu",
            "--config",
            "x=1",
        ],
        &json!({ "key": "region" }),
    );
    assert_eq!(
        configured["output"],
        json!({ "value": "eu" }),
        "{configured}"
    );

    let (code, fatal) = step_run(
        probe,
        &["--step", "fail"],
        &json!({ "kind": "fatal", "message": "declined" }),
    );
    assert_eq!((code, &fatal["outcome"]), (Some(1), &json!("fatal")));
    assert_eq!(fatal["error"], "declined");

    let (code, trapped) = step_run(probe, &["--step", "trap"], &json!({}));
    assert_eq!((code, &trapped["outcome"]), (Some(1), &json!("host error")));

    let (_, info) = step_run(probe, &["--step", "info", "--attempt", "3"], &json!({}));
    assert_eq!(info["output"]["attempt"], 3, "{info}");
    assert_eq!(info["output"]["step"], "info", "{info}");
}

#[test]
fn bad_input_gets_a_clear_error() {
    let probe = flowhost_test_artifacts::PROBE;
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_flowhost"))
            .args(["step", "run"])
            .args(args)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let not_json = dir.path().join("ctx.json");
    std::fs::write(&not_json, "{oops").unwrap();
    let array = dir.path().join("array.json");
    std::fs::write(&array, "[1]").unwrap();
    let not_wasm = dir.path().join("x.wasm");
    std::fs::write(&not_wasm, "nope").unwrap();
    for (args, says) in [
        (
            vec![
                probe,
                "--step",
                "echo",
                "--input",
                not_json.to_str().unwrap(),
            ],
            "not JSON",
        ),
        (
            vec![probe, "--step", "echo", "--input", array.to_str().unwrap()],
            "JSON object",
        ),
        (
            vec![probe, "--step", "echo", "--service", "nourl"],
            "NAME=URL",
        ),
        (vec![probe, "--step", "echo", "--config", "=v"], "KEY=VALUE"),
        (
            vec![not_wasm.to_str().unwrap(), "--step", "echo"],
            "WebAssembly",
        ),
        (vec!["/nonexistent.wasm", "--step", "echo"], "nonexistent"),
    ] {
        let (code, err) = run(&args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn expect_fails_a_step_whose_output_differs() {
    let probe = flowhost_test_artifacts::PROBE;
    let dir = tempfile::tempdir().unwrap();
    let expect = |output: Value| {
        let path = dir.path().join("expected.json");
        std::fs::write(&path, output.to_string()).unwrap();
        path.display().to_string()
    };
    for (expected, code, outcome) in [
        (json!({ "value": "eu" }), Some(0), "ok"),
        (json!({ "value": "us" }), Some(1), "unexpected output"),
    ] {
        let file = expect(expected);
        let (status, report) = step_run(
            probe,
            &[
                "--step",
                "config",
                "--config",
                "region=eu",
                "--expect",
                &file,
            ],
            &json!({ "key": "region" }),
        );
        assert_eq!(
            (status, report["outcome"].as_str()),
            (code, Some(outcome)),
            "{report}"
        );
        if code == Some(1) {
            let error = report["error"].as_str().unwrap();
            assert!(
                error.contains("\"us\"") && error.contains("\"eu\""),
                "{error}"
            );
        }
    }
}

/// `flowhost handler run FILE --event EVENT --json`: the exit code and the report.
fn handler_run(file: &str, event: &Value, args: &[&str]) -> (Option<i32>, Value) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("event.json");
    std::fs::write(&path, event.to_string()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_flowhost"))
        .args(["handler", "run", file, "--json", "--event"])
        .arg(&path)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout} {}", String::from_utf8_lossy(&output.stderr)));
    (output.status.code(), report)
}

#[test]
fn a_handler_runs_here_on_one_event() {
    let audit = plugin("audit_log");
    let (code, handled) = handler_run(
        &audit,
        &json!({ "topic": "order.confirmed", "id": "e-1", "data": { "order_id": "o-1" } }),
        &[],
    );
    assert_eq!(
        (code, &handled["outcome"]),
        (Some(0), &json!("ok")),
        "{handled}"
    );
    let line = handled["log"][0]["message"].as_str().unwrap();
    assert!(line.contains("event e-1 on order.confirmed"), "{handled}");

    let (code, refused) = handler_run(
        &audit,
        &json!({ "topic": "order.confirmed", "data": { "fail": true } }),
        &[],
    );
    assert_eq!(
        (code, &refused["outcome"]),
        (Some(1), &json!("failed")),
        "{refused}"
    );
    assert!(refused["error"].is_string(), "{refused}");

    // A step plugin has no handler to call; an event without a topic is refused up front.
    let (code, wrong) = handler_run(
        flowhost_test_artifacts::PROBE,
        &json!({ "topic": "t", "data": {} }),
        &[],
    );
    assert_eq!(
        (code, &wrong["outcome"]),
        (Some(1), &json!("host error")),
        "{wrong}"
    );
    let dir = tempfile::tempdir().unwrap();
    let no_topic = dir.path().join("event.json");
    std::fs::write(&no_topic, r#"{"data": {}}"#).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_flowhost"))
        .args(["handler", "run", &audit, "--event"])
        .arg(&no_topic)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("`topic`"));
}
