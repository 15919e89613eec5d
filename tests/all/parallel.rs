//! Parallel branches end to end on the real binary and the example's services: branches run
//! at once, each from the context before the fork, their outputs under their names; a
//! branch failing for good stops the others and every branch is undone; a kill halfway
//! through a branch ends as it would have without one.

use serde_json::Value;

use crate::sagas::{count, step};
use crate::server::{Server, Services, order};

/// The order saga with the reservation and the payment as two branches of one step, and
/// a second step in the stock branch: the probe's call to the users service, which the
/// run's input describes ([`input`]).
fn forked(services: &Services, max_parallel: Option<u32>) -> String {
    let retry = "retry = { attempts = 3, initial-backoff = \"10ms\", max-backoff = \"50ms\" }";
    let max = max_parallel.map_or(String::new(), |m| format!(", max-parallel = {m}"));
    format!(
        r#"{}
[plugins.probe]
path = "{probe}"
services = ["users"]
[workflows.forked]
steps = [
    {{ name = "validate_user", plugin = "validate_user", compensate = false }},
    {{ name = "hold", parallel = [
        {{ name = "stock", steps = [
            {{ name = "reserve_inventory", plugin = "inventory", {retry} }},
            {{ name = "call#stock", plugin = "probe", compensate = false }},
        ] }},
        [ {{ name = "process_payment", plugin = "payment", {retry} }} ],
    ]{max} }},
    {{ name = "create_order", plugin = "order", {retry} }},
]
"#,
        services.config(),
        probe = flowhost_test_artifacts::PROBE,
    )
}

/// An order, with what the probe's call needs.
fn input(order_id: &str, total: f64) -> Value {
    let mut input = order(order_id, 7, total);
    input["service"] = "users".into();
    input["method"] = "GET".into();
    input["path"] = "/users/7".into();
    input
}

/// The journal's entries of run `id`.
async fn journal(server: &Server, id: &str) -> Vec<Value> {
    let (_, journal) = server.get(&format!("/v1/runs/{id}/journal")).await;
    journal["attempts"].as_array().unwrap().clone()
}

/// The first `execute` entry of `name` that ended `ok`.
fn executed<'a>(journal: &'a [Value], name: &str) -> &'a Value {
    journal
        .iter()
        .find(|e| e["step"] == name && e["direction"] == "execute" && e["outcome"] == "ok")
        .unwrap_or_else(|| panic!("{name} never executed: {journal:?}"))
}

/// Whether the two journal entries' attempts overlapped in time.
fn overlapped(a: &Value, b: &Value) -> bool {
    let span = |e: &Value| {
        (
            e["started_ms"].as_u64().unwrap(),
            e["ended_ms"].as_u64().unwrap(),
        )
    };
    let ((a0, a1), (b0, b1)) = (span(a), span(b));
    a0 < b1 && b0 < a1
}

#[tokio::test]
async fn branches_run_at_once_and_merge_their_outputs_under_their_names() {
    let services = Services::start().await;
    let server = Server::start(&forked(&services, None)).await;
    // Each call takes 200 ms, so attempts made at once overlap for sure.
    services.delay(200).await;
    let (status, run) = server
        .post("/v1/workflows/forked/runs?wait=30s", &input("o-p1", 20.0))
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "completed", "{run}");
    let id = run["id"].as_str().unwrap();
    let journal = journal(&server, id).await;
    let reserve = executed(&journal, "reserve_inventory");
    let payment = executed(&journal, "process_payment");
    assert!(overlapped(reserve, payment), "{reserve} then {payment}");
    assert_eq!(reserve["branch"], "stock");
    assert_eq!(payment["branch"], "process_payment");
    assert_eq!(step(&run, "call#stock")["branch"], "stock", "{run}");
    assert_eq!(step(&run, "hold")["status"], "completed", "{run}");
    // Each branch's output under its name; nothing of them at the top.
    let context = &run["context"];
    assert!(context["stock"].is_object(), "{context}");
    assert!(context["process_payment"].is_object(), "{context}");
    assert!(context.get("payment_id").is_none(), "{context}");
    let ledger = services.order("o-p1").await;
    assert_eq!(count(&ledger, "reservations", "active"), 2, "{ledger}");
    assert_eq!(count(&ledger, "payments", "captured"), 1, "{ledger}");
    assert_eq!(count(&ledger, "orders", "active"), 1, "{ledger}");
}

#[tokio::test]
async fn a_branch_failing_for_good_stops_the_others_and_every_branch_is_undone() {
    let services = Services::start().await;
    let server = Server::start(&forked(&services, None)).await;
    services.delay(100).await;
    // A total the payment service declines: the payment branch fails for good while the
    // reservation is made in the other.
    let (status, run) = server
        .post("/v1/workflows/forked/runs?wait=30s", &input("o-p2", 5000.0))
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "compensated", "{run}");
    assert_eq!(run["error"]["step"], "process_payment", "{run}");
    assert_eq!(step(&run, "hold")["status"], "failed", "{run}");
    assert_eq!(
        step(&run, "reserve_inventory")["status"],
        "compensated",
        "{run}"
    );
    assert_eq!(step(&run, "create_order")["status"], "pending", "{run}");
    let ledger = services.order("o-p2").await;
    assert_eq!(count(&ledger, "reservations", "active"), 0, "{ledger}");
    assert_eq!(count(&ledger, "reservations", "released"), 2, "{ledger}");
    assert_eq!(count(&ledger, "payments", "captured"), 0, "{ledger}");
    assert_eq!(count(&ledger, "orders", "active"), 0, "{ledger}");
}

#[tokio::test]
async fn max_parallel_runs_the_branches_one_after_the_other() {
    let services = Services::start().await;
    let server = Server::start(&forked(&services, Some(1))).await;
    services.delay(100).await;
    let (status, run) = server
        .post("/v1/workflows/forked/runs?wait=30s", &input("o-p3", 20.0))
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "completed", "{run}");
    let journal = journal(&server, run["id"].as_str().unwrap()).await;
    let check = executed(&journal, "call#stock");
    let payment = executed(&journal, "process_payment");
    assert!(
        check["ended_ms"].as_u64() <= payment["started_ms"].as_u64(),
        "the second branch began before the first ended: {journal:?}"
    );
}

#[tokio::test]
async fn a_kill_halfway_through_a_branch_ends_as_it_would_have_without_it() {
    let services = Services::start().await;
    let mut server = Server::start(&forked(&services, None)).await;
    // Slow enough that the kill lands with the stock branch half done and the payment in
    // flight or done.
    services.delay(400).await;
    let (status, run) = server
        .post("/v1/workflows/forked/runs", &input("o-p4", 20.0))
        .await;
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    loop {
        let (_, run) = server.get(&format!("/v1/runs/{id}")).await;
        if step(&run, "reserve_inventory")["status"] == "completed" {
            assert_ne!(step(&run, "call#stock")["status"], "completed", "{run}");
            break;
        }
        assert_eq!(run["status"], "running", "{run}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.kill();
    server.restart().await;
    let run = server.until_terminal(&id).await;
    assert_eq!(run["status"], "completed", "{run}");
    // The same ledger as without the kill: the reservation was not made twice, the payment
    // was captured once (its key makes a replayed attempt a repeat).
    let ledger = services.order("o-p4").await;
    assert_eq!(count(&ledger, "reservations", "active"), 2, "{ledger}");
    assert_eq!(count(&ledger, "payments", "captured"), 1, "{ledger}");
    assert_eq!(count(&ledger, "orders", "active"), 1, "{ledger}");
    let journal = journal(&server, &id).await;
    let reserved = journal
        .iter()
        .filter(|e| e["step"] == "reserve_inventory" && e["outcome"] == "ok")
        .count();
    assert_eq!(reserved, 1, "{journal:?}");
}
