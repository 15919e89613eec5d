//! Child workflows end to end on the real binary and the example's services: a step runs a
//! child run and ends with it; a failure after it undoes the child; a cancel reaches the
//! child; a kill between the child's end and the parent's step loses nothing.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::sagas::{count, step};
use crate::server::{Server, Services, order};
use crate::workflows::example_table;

/// The order saga with the order made by a child run of `fulfilment`, and a last step that
/// fails when the input says `fail_late`.
fn config(services: &Services) -> String {
    let retry = "retry = { attempts = 3, initial-backoff = \"10ms\", max-backoff = \"50ms\" }";
    format!(
        r#"{}
[plugins.probe]
path = "{probe}"
[workflows.fulfilment]
steps = [{{ name = "create_order", plugin = "order", {retry} }}]
[workflows.ordered]
steps = [
    {{ name = "validate_user", plugin = "validate_user", compensate = false }},
    {{ name = "reserve_inventory", plugin = "inventory", {retry} }},
    {{ name = "process_payment", plugin = "payment", {retry} }},
    {{ name = "fulfil", workflow = "fulfilment" }},
    {{ name = "fail#late", plugin = "probe", compensate = false, when = "context.fail_late" }},
]
"#,
        services.config(),
        probe = flowhost_test_artifacts::PROBE,
    )
}

/// An order; `fail_late` makes the step after the child fail for good.
fn input(order_id: &str, fail_late: bool) -> Value {
    let mut input = order(order_id, 7, 20.0);
    input["fail_late"] = fail_late.into();
    input["kind"] = "fatal".into();
    input["message"] = "failed after the child".into();
    input
}

/// Polls run `id` until `done` holds of it (404 reads as null).
async fn until(server: &Server, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, run) = server.get(&format!("/v1/runs/{id}")).await;
        if done(&run) {
            return run;
        }
        assert!(Instant::now() < deadline, "never: {run}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_child_run_completes_its_step_and_the_two_link_to_each_other() {
    let services = Services::start().await;
    let server = Server::start(&config(&services)).await;
    let (status, run) = server
        .post("/v1/workflows/ordered/runs?wait=30s", &input("o-k1", false))
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "completed", "{run}");
    let id = run["id"].as_str().unwrap();
    let child_id = format!("{id}.fulfil");
    assert_eq!(step(&run, "fulfil")["child"], child_id.as_str(), "{run}");
    assert_eq!(step(&run, "fail#late")["status"], "skipped", "{run}");
    // The child's output is under the step's name.
    assert!(
        run["context"]["fulfil"]["order_status"].is_string(),
        "{run}"
    );
    let (status, child) = server.get(&format!("/v1/runs/{child_id}")).await;
    assert_eq!(status, 200, "{child}");
    assert_eq!(child["status"], "completed", "{child}");
    assert_eq!(child["parent"], id, "{child}");
    assert_eq!(child["workflow"], "fulfilment", "{child}");
    let ledger = services.order("o-k1").await;
    assert_eq!(count(&ledger, "orders", "active"), 1, "{ledger}");
}

#[tokio::test]
async fn a_failed_child_fails_its_step_and_the_parent_compensates() {
    let services = Services::start().await;
    let server = Server::start(&config(&services)).await;
    // The orders service refuses the order: the child fails, with nothing of its own to
    // undo.
    services.fail("orders", 1, 400).await;
    let (status, run) = server
        .post("/v1/workflows/ordered/runs?wait=30s", &input("o-k2", false))
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "compensated", "{run}");
    assert_eq!(run["error"]["step"], "fulfil", "{run}");
    let message = run["error"]["message"].as_str().unwrap();
    assert!(message.contains("child run"), "{message}");
    let child_id = format!("{}.fulfil", run["id"].as_str().unwrap());
    let (_, child) = server.get(&format!("/v1/runs/{child_id}")).await;
    assert_eq!(child["status"], "failed", "{child}");
    let ledger = services.order("o-k2").await;
    assert_eq!(count(&ledger, "payments", "captured"), 0, "{ledger}");
    assert_eq!(count(&ledger, "reservations", "active"), 0, "{ledger}");
}

#[tokio::test]
async fn a_failure_after_the_child_undoes_the_child_with_the_rest() {
    let services = Services::start().await;
    let server = Server::start(&config(&services)).await;
    let (status, run) = server
        .post("/v1/workflows/ordered/runs?wait=30s", &input("o-k3", true))
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "compensated", "{run}");
    assert_eq!(run["error"]["step"], "fail#late", "{run}");
    assert_eq!(step(&run, "fulfil")["status"], "compensated", "{run}");
    let child_id = format!("{}.fulfil", run["id"].as_str().unwrap());
    let (_, child) = server.get(&format!("/v1/runs/{child_id}")).await;
    assert_eq!(child["status"], "compensated", "{child}");
    assert_eq!(
        step(&child, "create_order")["status"],
        "compensated",
        "{child}"
    );
    let ledger = services.order("o-k3").await;
    assert_eq!(count(&ledger, "orders", "active"), 0, "{ledger}");
    assert_eq!(count(&ledger, "payments", "captured"), 0, "{ledger}");
    assert_eq!(count(&ledger, "reservations", "active"), 0, "{ledger}");
}

#[tokio::test]
async fn a_cancel_while_the_child_runs_cancels_the_child_too() {
    let services = Services::start().await;
    let server = Server::start(&config(&services)).await;
    services.delay(300).await;
    let (status, run) = server
        .post("/v1/workflows/ordered/runs", &input("o-k4", false))
        .await;
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    let child_id = format!("{id}.fulfil");
    until(&server, &child_id, |child| child["status"] == "running").await;
    let (status, answer) = server
        .post(&format!("/v1/runs/{id}/cancel"), &serde_json::json!({}))
        .await;
    assert_eq!(status, 202, "{answer}");
    let run = server.until_terminal(&id).await;
    assert_eq!(run["status"], "cancelled", "{run}");
    // Cancelled; or, when the cancel came as its last step ended, completed and then
    // compensated by the parent's undo.
    let child = server.until_terminal(&child_id).await;
    assert!(
        child["status"] == "cancelled" || child["status"] == "compensated",
        "{child}"
    );
    let ledger = services.order("o-k4").await;
    assert_eq!(count(&ledger, "orders", "active"), 0, "{ledger}");
    assert_eq!(count(&ledger, "payments", "captured"), 0, "{ledger}");
    assert_eq!(count(&ledger, "reservations", "active"), 0, "{ledger}");
}

#[tokio::test]
async fn a_kill_between_the_childs_end_and_the_parents_step_loses_nothing() {
    let services = Services::start().await;
    let mut server = Server::start(&config(&services)).await;
    services.delay(200).await;
    let (status, run) = server
        .post("/v1/workflows/ordered/runs", &input("o-k5", false))
        .await;
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    let child_id = format!("{id}.fulfil");
    // Killed as soon as the child is seen completed: before or just after the parent
    // took the end up.
    until(&server, &child_id, |child| child["status"] == "completed").await;
    server.kill();
    server.restart().await;
    let run = server.until_terminal(&id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(step(&run, "fulfil")["status"], "completed", "{run}");
    let ledger = services.order("o-k5").await;
    assert_eq!(count(&ledger, "orders", "active"), 1, "{ledger}");
    assert_eq!(count(&ledger, "payments", "captured"), 1, "{ledger}");
    assert_eq!(count(&ledger, "reservations", "active"), 2, "{ledger}");
}

/// The example's `order_shipped`, `shipping` and `nightly_reconcile` against `services`.
fn example(services: &Services) -> String {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/order-processing/flowhost.toml"
    ))
    .unwrap();
    let tables: Vec<&str> = [
        "[workflows.order_shipped]",
        "[workflows.shipping]",
        "[workflows.nightly_reconcile]",
    ]
    .iter()
    .map(|header| example_table(&example, header))
    .collect();
    format!(
        "{}\n[plugins.reconcile]\npath = \"{}\"\nservices = [\"orders\"]\npublish = [\"ledger.*\"]\n{}",
        services.config(),
        flowhost_test_artifacts::RECONCILE,
        tables.join("\n")
    )
}

#[tokio::test]
async fn the_example_ships_through_a_child_and_reconciles_the_ledger() {
    let services = Services::start().await;
    let server = Server::start(&example(&services)).await;
    let (status, run) = server
        .post(
            "/v1/workflows/order_shipped/runs?wait=30s",
            &order("o-x1", 7, 20.0),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "completed", "{run}");
    let child_id = step(&run, "ship")["child"].as_str().unwrap().to_owned();
    let (_, child) = server.get(&format!("/v1/runs/{child_id}")).await;
    assert_eq!(child["status"], "completed", "{child}");
    assert_eq!(child["workflow"], "shipping", "{child}");
    let ledger = services.order("o-x1").await;
    assert_eq!(count(&ledger, "orders", "active"), 1, "{ledger}");

    // A reservation no order owns, made behind the sagas' back: the nightly check finds it.
    let stray = reqwest::Client::new()
        .post(format!("{}/reservations", services.url))
        .json(&serde_json::json!({ "order_id": "o-stray", "product_id": "p-1", "quantity": 1 }))
        .send()
        .await
        .unwrap();
    assert!(stray.status().is_success(), "{}", stray.status());
    let (status, night) = server
        .post(
            "/v1/workflows/nightly_reconcile/runs?wait=30s",
            &serde_json::json!({ "scheduled_at": "2026-12-01T02:00:00Z" }),
        )
        .await;
    assert_eq!(status, 200, "{night}");
    assert_eq!(night["status"], "completed", "{night}");
    let context = &night["context"];
    assert_eq!(
        context["stray_reservations"],
        serde_json::json!(["o-stray"]),
        "{night}"
    );
    assert_eq!(context["stray_payments"], serde_json::json!([]), "{night}");
    assert_eq!(context["orders"], 1, "{night}");
}
