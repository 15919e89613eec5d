//! Durable sagas end to end: the real binary, the example plugins, the example's mock
//! services, and the ledger as the witness of what happened.

use serde_json::{Value, json};

use crate::server::{Server, Services, order};

/// How many records of `kind` (`reservations`, `payments`, `orders`) are in `state` in a
/// ledger (or one order's ledger).
pub fn count(ledger: &Value, kind: &str, state: &str) -> usize {
    ledger[kind][state].as_array().map_or(0, Vec::len)
}

pub fn step<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name}: {run}"))
}

async fn setup() -> (Services, Server) {
    let services = Services::start().await;
    let server = Server::start(&services.config()).await;
    (services, server)
}

#[tokio::test]
async fn an_order_completes() {
    let (services, server) = setup().await;
    let (status, run) = server
        .post(
            "/v1/workflows/order_processing/runs?wait=30s",
            &order("o-1", 7, 50.0),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "completed", "{run}");
    assert!(run["context"]["user"]["name"].is_string(), "{run}");
    assert!(run["context"]["payment_id"].is_string(), "{run}");
    for step in run["steps"].as_array().unwrap() {
        assert_eq!(step["status"], "completed");
        assert_eq!(step["attempts"], 1);
    }
    let ledger = services.order("o-1").await;
    assert_eq!(count(&ledger, "orders", "active"), 1, "{ledger}");
    assert_eq!(count(&ledger, "payments", "captured"), 1, "{ledger}");
    assert_eq!(count(&ledger, "reservations", "active"), 2, "{ledger}");
}

#[tokio::test]
async fn a_declined_payment_compensates_and_leaves_nothing_behind() {
    let (services, server) = setup().await;
    let (status, run) = server
        .post(
            "/v1/workflows/order_processing/runs?wait=30s",
            &order("o-2", 7, 5000.0),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "compensated", "{run}");
    assert_eq!(run["error"]["step"], "process_payment", "{run}");
    assert_eq!(step(&run, "process_payment")["status"], "failed");
    assert_eq!(
        step(&run, "process_payment")["attempts"],
        1,
        "a fatal error is not retried"
    );
    assert_eq!(step(&run, "reserve_inventory")["status"], "compensated");
    assert_eq!(
        step(&run, "validate_user")["status"],
        "completed",
        "nothing to undo"
    );
    assert_eq!(step(&run, "create_order")["status"], "pending");
    let ledger = services.order("o-2").await;
    assert_eq!(count(&ledger, "reservations", "active"), 0, "{ledger}");
    assert_eq!(count(&ledger, "reservations", "released"), 2, "{ledger}");
    assert_eq!(count(&ledger, "payments", "captured"), 0, "{ledger}");
    assert_eq!(count(&ledger, "orders", "active"), 0, "{ledger}");
}

#[tokio::test]
async fn compensations_run_in_reverse_order() {
    let (services, server) = setup().await;
    services.fail("orders", 1, 400).await; // create_order fails for good
    let (_, run) = server
        .post(
            "/v1/workflows/order_processing/runs?wait=30s",
            &order("o-3", 7, 20.0),
        )
        .await;
    assert_eq!(run["status"], "compensated", "{run}");
    let id = run["id"].as_str().unwrap();
    let (_, journal) = server.get(&format!("/v1/runs/{id}/journal")).await;
    let compensations: Vec<&str> = journal["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["direction"] == "compensate")
        .map(|a| a["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        compensations,
        ["process_payment", "reserve_inventory"],
        "{journal}"
    );
    let ledger = services.order("o-3").await;
    assert_eq!(count(&ledger, "payments", "captured"), 0, "{ledger}");
    assert_eq!(count(&ledger, "payments", "refunded"), 1, "{ledger}");
    assert_eq!(count(&ledger, "reservations", "active"), 0, "{ledger}");
}

#[tokio::test]
async fn transient_failures_are_retried() {
    let (services, server) = setup().await;
    services.fail("payments", 2, 503).await;
    let (_, run) = server
        .post(
            "/v1/workflows/order_processing/runs?wait=30s",
            &order("o-4", 7, 20.0),
        )
        .await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(step(&run, "process_payment")["attempts"], 3, "{run}");
    assert_eq!(
        count(&services.order("o-4").await, "payments", "captured"),
        1
    );
}

#[tokio::test]
async fn a_compensation_that_keeps_failing_stops_until_retried() {
    let (services, server) = setup().await;
    services.fail("orders", 1, 400).await;
    services.fail("refunds", 1000, 503).await;
    let (_, run) = server
        .post(
            "/v1/workflows/order_processing/runs?wait=30s",
            &order("o-5", 7, 20.0),
        )
        .await;
    assert_eq!(run["status"], "compensation_failed", "{run}");
    assert_eq!(run["error"]["step"], "process_payment", "{run}");
    assert_eq!(
        step(&run, "process_payment")["status"],
        "compensation_failed"
    );
    assert_eq!(
        step(&run, "reserve_inventory")["status"],
        "completed",
        "not undone past the failure"
    );
    let id = run["id"].as_str().unwrap();

    services.fail("refunds", 0, 503).await; // the service recovers
    let (status, retried) = server
        .post(&format!("/v1/runs/{id}/retry"), &json!({}))
        .await;
    assert_eq!(status, 202, "{retried}");
    let run = server.until_terminal(id).await;
    assert_eq!(run["status"], "compensated", "{run}");
    let ledger = services.order("o-5").await;
    assert_eq!(count(&ledger, "payments", "refunded"), 1, "{ledger}");
    assert_eq!(count(&ledger, "reservations", "active"), 0, "{ledger}");

    let (status, problem) = server
        .post(&format!("/v1/runs/{id}/retry"), &json!({}))
        .await;
    assert_eq!(
        status, 409,
        "a compensated run has nothing to retry: {problem}"
    );
}

#[tokio::test]
async fn the_same_idempotency_key_starts_one_run() {
    let (services, server) = setup().await;
    let url = format!("{}/v1/workflows/order_processing/runs?wait=30s", server.url);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let response = server
            .client
            .post(&url)
            .header("Idempotency-Key", "checkout-42")
            .json(&order("o-6", 7, 20.0))
            .send()
            .await
            .unwrap();
        let run: Value = response.json().await.unwrap();
        assert_eq!(run["status"], "completed", "{run}");
        ids.push(run["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids[0], ids[1]);
    assert_eq!(
        count(&services.order("o-6").await, "payments", "captured"),
        1,
        "one run, one charge"
    );

    let mut by_id = order("o-7", 7, 20.0);
    by_id["id"] = json!("client-chosen-1");
    let (_, first) = server
        .post("/v1/workflows/order_processing/runs?wait=30s", &by_id)
        .await;
    let (_, second) = server
        .post("/v1/workflows/order_processing/runs?wait=30s", &by_id)
        .await;
    assert_eq!(first["id"], "client-chosen-1");
    assert_eq!(second["id"], "client-chosen-1");
    assert_eq!(second["status"], "completed", "{second}");
    let ledger = services.order("o-7").await;
    assert_eq!(count(&ledger, "payments", "captured"), 1, "{ledger}");
    assert_eq!(count(&ledger, "payments", "refunded"), 0, "{ledger}");
}

#[tokio::test]
async fn malformed_input_gets_a_problem_and_changes_nothing() {
    let (_services, server) = setup().await;
    let post_raw = |path: &str, body: &'static str| {
        let request = server
            .client
            .post(format!("{}{path}", server.url))
            .header("content-type", "application/json");
        async move {
            let response = request.body(body).send().await.unwrap();
            let status = response.status().as_u16();
            let kind = response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_owned();
            let problem: Value = response.json().await.unwrap();
            (status, kind, problem)
        }
    };
    for (path, body, expected) in [
        ("/v1/workflows/order_processing/runs", "{not json", 400),
        ("/v1/workflows/order_processing/runs", "[1, 2]", 400),
        ("/v1/workflows/order_processing/runs", r#"{"id": 5}"#, 400),
        (
            "/v1/workflows/order_processing/runs",
            r#"{"id": "has space"}"#,
            400,
        ),
        ("/v1/workflows/nope/runs", "{}", 404),
        (
            "/v1/workflows/order_processing/runs?wait=forever",
            "{}",
            400,
        ),
        ("/v1/runs/unknown/retry", "{}", 404),
        ("/v1/nothing", "{}", 404),
    ] {
        let (status, kind, problem) = post_raw(path, body).await;
        assert_eq!(status, expected, "{path} {body}: {problem}");
        assert_eq!(kind, "application/problem+json", "{path}");
        assert!(
            problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{problem}"
        );
    }
    let big = format!(r#"{{"pad": "{}"}}"#, "x".repeat(2 * 1024 * 1024));
    // A client of its own: the server closes the connection after refusing the body.
    let response = reqwest::Client::new()
        .post(format!("{}/v1/workflows/order_processing/runs", server.url))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    for (path, expected) in [
        ("/v1/runs/unknown", 404),
        ("/v1/runs?status=bogus", 400),
        ("/v1/runs?limit=0", 400),
        ("/v1/runs?cursor=zz", 400),
    ] {
        let (status, problem) = server.get(path).await;
        assert_eq!(status, expected, "{path}: {problem}");
    }
    let response = server
        .client
        .delete(format!("{}/v1/runs", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let (_, page) = server.get("/v1/runs").await;
    assert_eq!(page["runs"], json!([]), "nothing was started");
}

#[tokio::test]
async fn runs_are_listed_newest_first_with_filters_and_paging() {
    let (_services, server) = setup().await;
    for (i, total) in [20.0, 5000.0, 30.0].iter().enumerate() {
        server
            .post(
                "/v1/workflows/order_processing/runs?wait=30s",
                &order(&format!("l-{i}"), 7, *total),
            )
            .await;
    }
    let (_, page) = server.get("/v1/runs?limit=2").await;
    let orders: Vec<&str> = page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["context"]["order_id"].as_str().unwrap())
        .collect();
    assert_eq!(orders, ["l-2", "l-1"]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, next) = server
        .get(&format!("/v1/runs?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(next["runs"].as_array().unwrap().len(), 1);
    assert_eq!(next["next_cursor"], Value::Null);
    let (_, compensated) = server.get("/v1/runs?status=compensated").await;
    assert_eq!(compensated["runs"].as_array().unwrap().len(), 1);
    let (_, by_workflow) = server
        .get("/v1/runs?workflow=order_processing&status=completed")
        .await;
    assert_eq!(by_workflow["runs"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_crash_loses_nothing_and_charges_nobody_twice() {
    let (services, mut server) = setup().await;
    services.delay(200).await; // every service call takes a while: runs are in flight
    let mut ids = Vec::new();
    for i in 0..200 {
        let total = if i % 5 == 0 { 5000.0 } else { 20.0 }; // every fifth is declined
        let (status, run) = server
            .post(
                "/v1/workflows/order_processing/runs",
                &order(&format!("c-{i}"), 7, total),
            )
            .await;
        assert_eq!(status, 202, "{run}");
        ids.push(run["id"].as_str().unwrap().to_owned());
    }
    server.kill();
    services.delay(0).await;
    server.restart().await;

    let mut completed = 0;
    for (i, id) in ids.iter().enumerate() {
        let run = server.until_terminal(id).await;
        let ledger = services.order(&format!("c-{i}")).await;
        let payments =
            count(&ledger, "payments", "captured") + count(&ledger, "payments", "refunded");
        assert!(payments <= 1, "charged twice: {ledger}");
        match run["status"].as_str().unwrap() {
            "completed" => {
                completed += 1;
                assert_eq!(count(&ledger, "payments", "captured"), 1, "{run} {ledger}");
                assert_eq!(count(&ledger, "orders", "active"), 1, "{ledger}");
            }
            "compensated" => {
                assert_eq!(i % 5, 0, "only declined orders compensate: {run}");
                assert_eq!(count(&ledger, "payments", "captured"), 0, "{ledger}");
                assert_eq!(count(&ledger, "reservations", "active"), 0, "{ledger}");
                assert_eq!(count(&ledger, "orders", "active"), 0, "{ledger}");
            }
            other => panic!("run {id} ended {other}: {run}"),
        }
    }
    assert_eq!(completed, 160);
    let ledger = services.ledger().await;
    assert_eq!(
        count(&ledger, "payments", "captured"),
        completed,
        "captured payments = completed runs"
    );
    assert!(
        server.log().contains("resuming unfinished runs"),
        "the restart resumed runs"
    );
}

#[tokio::test]
async fn sigterm_stops_gracefully_and_unfinished_runs_resume() {
    let services = Services::start().await;
    let config = format!("{}\n[server]\nshutdown-grace = \"2s\"\n", services.config());
    let mut server = Server::start(&config).await;
    services.delay(300).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (status, run) = server
            .post(
                "/v1/workflows/order_processing/runs",
                &order(&format!("t-{i}"), 7, 20.0),
            )
            .await;
        assert_eq!(status, 202, "{run}");
        ids.push(run["id"].as_str().unwrap().to_owned());
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (took, clean) = server.terminate();
    assert!(clean, "exit status: {}", server.log());
    assert!(took < std::time::Duration::from_secs(5), "took {took:?}");
    assert!(server.log().contains("shutting down"), "{}", server.log());

    services.delay(0).await;
    server.restart().await;
    for (i, id) in ids.iter().enumerate() {
        let run = server.until_terminal(id).await;
        assert_eq!(run["status"], "completed", "{run}");
        let ledger = services.order(&format!("t-{i}")).await;
        assert_eq!(count(&ledger, "payments", "captured"), 1, "{ledger}");
    }
}
