//! What keeps the host bounded in time and space: capped step outputs, retention of finished
//! runs and dead letters, and backoffs that wait in the store instead of in a task. Each test
//! names the finding of issue 10 it covers.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::inprocess::InProcess;
use crate::server::{Server, Services, order};

/// Finding 8: a step's output had no size cap; it went into the context of every later
/// step and into the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_over_the_cap_fails_the_step_for_good_with_a_clear_error() {
    let host = InProcess::start(
        r#"
[runtime]
max-output-bytes = 1000
[plugins.probe]
path = "{PROBE}"
[workflows.big]
steps = [{ name = "echo", plugin = "probe" }]
"#,
    )
    .await;
    let (_, small) = host
        .post("/v1/workflows/big/runs?wait=10s", &json!({ "pad": "x" }))
        .await;
    assert_eq!(small["status"], "completed", "{small}");
    let (_, big) = host
        .post(
            "/v1/workflows/big/runs?wait=10s",
            &json!({ "pad": "x".repeat(2000) }),
        )
        .await;
    assert_eq!(big["status"], "failed", "{big}");
    let error = big["error"]["message"].as_str().unwrap();
    assert!(error.contains("max-output-bytes (1000)"), "{error}");
    assert_eq!(
        big["steps"][0]["attempts"], 1,
        "not retried: it would not shrink"
    );
}

/// Polls until `check` holds, for up to 20 s.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "{what} never happened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Finding 8: finished runs, their journals and dead letters were never deleted.
#[tokio::test]
async fn retention_deletes_finished_runs_and_dead_letters_and_keeps_what_an_operator_needs() {
    let services = Services::start().await;
    let config = format!(
        "{}\n[retention]\nruns = \"1s\"\ndead-letters = \"1s\"\ninterval = \"200ms\"\n",
        services.config()
    );
    let server = Server::start(&config).await;
    let start = |key: &'static str, order_id: &str| {
        server
            .client
            .post(format!(
                "{}/v1/workflows/order_processing/runs?wait=30s",
                server.url
            ))
            .header("Idempotency-Key", key)
            .json(&order(order_id, 7, 20.0))
            .send()
    };
    let done: Value = start("kept-a-second", "ret-1")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    // A run waiting for an operator, and a notification given up on.
    services.fail("orders", 1, 400).await;
    services.fail("refunds", 1000, 503).await;
    services.fail("notifications", 1000, 503).await;
    let (_, stuck) = server
        .post(
            "/v1/workflows/order_processing/runs?wait=30s",
            &order("ret-2", 7, 20.0),
        )
        .await;
    assert_eq!(stuck["status"], "compensation_failed", "{stuck}");
    server
        .post(
            "/v1/events/order.confirmed",
            &json!({ "order_id": "ret-3" }),
        )
        .await;
    eventually("a dead letter", async || {
        let (_, page) = server.get("/v1/dead-letters").await;
        !page["dead_letters"].as_array().unwrap().is_empty()
    })
    .await;

    let done_path = format!("/v1/runs/{}", done["id"].as_str().unwrap());
    eventually("the finished run's deletion", async || {
        server.get(&done_path).await.0 == 404
    })
    .await;
    eventually("the dead letter's deletion", async || {
        let (_, page) = server.get("/v1/dead-letters").await;
        page["dead_letters"].as_array().unwrap().is_empty()
    })
    .await;
    let (status, kept) = server
        .get(&format!("/v1/runs/{}", stuck["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        (status, kept["status"].clone()),
        (200, json!("compensation_failed"))
    );
    // Logged once the pass is over, which may be after its deletions show.
    eventually("the retention pass's log line", async || {
        server.log().contains("retention deleted")
    })
    .await;
    // The deleted run's key is free again.
    services.fail("orders", 0, 400).await;
    let again: Value = start("kept-a-second", "ret-4")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(again["id"], done["id"], "{again}");
}

/// A payment that fails once, retried once after exactly three seconds.
fn slow_retry(services: &Services) -> String {
    let config = services.config();
    let start = config.find("[workflows.order_processing]").unwrap();
    format!(
        r#"{}
[workflows.pay]
steps = [{{ name = "process_payment", plugin = "payment", retry = {{ attempts = 2, initial-backoff = "3s", max-backoff = "3s", jitter = 0 }} }}]
"#,
        &config[..start]
    )
}

/// Finding 10: a retry's backoff was an in-memory sleep that started over after a restart.
/// Now its due time comes from the journal: after `kill -9` the run waits only for what is
/// left.
#[tokio::test]
async fn a_backoff_interrupted_by_a_crash_waits_only_for_what_is_left() {
    let services = Services::start().await;
    let mut server = Server::start(&slow_retry(&services)).await;
    services.fail("payments", 1, 503).await;
    let (status, run) = server
        .post("/v1/workflows/pay/runs", &order("late-1", 7, 20.0))
        .await;
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    let journal = format!("/v1/runs/{id}/journal");
    eventually("the first attempt's failure", async || {
        let (_, journal) = server.get(&journal).await;
        !journal["attempts"].as_array().unwrap().is_empty()
    })
    .await;
    // Killed half-way through the backoff; starting it over would add this much.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill();
    server.restart().await;
    let run = server.until_terminal(&id).await;
    assert_eq!(run["status"], "completed", "{run}");
    let (_, journal) = server.get(&journal).await;
    let attempts = journal["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{journal}");
    let waited =
        attempts[1]["started_ms"].as_u64().unwrap() - attempts[0]["ended_ms"].as_u64().unwrap();
    assert!(
        (3000..4200).contains(&waited),
        "the second attempt came {waited} ms after the first ended"
    );
}

/// Deliver 3: a run waiting out a backoff holds no task and no slot, so with one slot, five
/// runs that each wait after their first attempt all make that attempt at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_waiting_out_a_backoff_hold_no_slot() {
    let host = InProcess::start(
        r#"
[server]
max-concurrent-runs = 1
max-pending-runs = 10
[plugins.probe]
path = "{PROBE}"
[workflows.patient]
steps = [{ name = "fail", plugin = "probe", retry = { attempts = 2, initial-backoff = "30s", max-backoff = "30s" } }]
"#,
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (status, run) = host
            .post(
                "/v1/workflows/patient/runs",
                &json!({ "kind": "retryable", "message": "later" }),
            )
            .await;
        assert_eq!(status, 202, "{run}");
        ids.push(run["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        let path = format!("/v1/runs/{id}");
        eventually("every run's first attempt", async || {
            host.get(&path).await.1["steps"][0]["attempts"] == 1
        })
        .await;
    }
}
