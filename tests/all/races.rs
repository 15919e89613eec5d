//! Clients that race: the same start sent by eight clients at once, eight retries of one
//! run at once, more starts than the host has room for. The real binary on loopback; each
//! test names the finding of issue 10 it covers.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::Barrier;

use crate::server::{Server, Services, order};
use crate::support::{TWO_STEPS, with_plugins};

/// Every run the host lists, across pages.
async fn all_runs(server: &Server) -> Vec<Value> {
    let mut runs = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = server.get(&format!("/v1/runs?limit=500{cursor}")).await;
        assert_eq!(status, 200, "{page}");
        runs.extend(page["runs"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return runs,
        }
    }
}

/// Runs `n` requests made by `request`, all sent at the same moment; their answers, in order.
pub async fn at_once<T, F>(n: usize, request: impl Fn(usize) -> F) -> Vec<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (barrier, request) = (barrier.clone(), request(i));
            tokio::spawn(async move {
                barrier.wait().await;
                request.await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

/// Sends one start per (client, request) with `CLIENTS` clients, all clients sending
/// request `i` at the same moment; returns, per request, the run each client got.
pub async fn race<const CLIENTS: usize>(
    requests: usize,
    start: impl Fn(&reqwest::Client, usize) -> reqwest::RequestBuilder + Send + Sync + 'static,
) -> Vec<Vec<Value>> {
    let start = Arc::new(start);
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (start, barrier) = (start.clone(), barrier.clone());
            let client = reqwest::Client::new();
            tokio::spawn(async move {
                let mut runs = Vec::new();
                for i in 0..requests {
                    barrier.wait().await;
                    let response = start(&client, i).send().await.unwrap();
                    let status = response.status().as_u16();
                    let run: Value = response.json().await.unwrap();
                    assert!(matches!(status, 200 | 202), "{status}: {run}");
                    runs.push(run);
                }
                runs
            })
        })
        .collect();
    let mut answers = Vec::new();
    for client in clients {
        answers.push(client.await.unwrap());
    }
    (0..requests)
        .map(|i| answers.iter().map(|runs| runs[i].clone()).collect())
        .collect()
}

/// The ids of `runs`, once each.
pub fn ids(runs: &[Value]) -> HashSet<&str> {
    runs.iter().map(|run| run["id"].as_str().unwrap()).collect()
}

/// Finding 1: eight clients starting a run with the same `Idempotency-Key` at the same
/// moment, 200 keys: some keys got two runs. One key (or one `"id"`) must give one run, and
/// every answer must name it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_clients_sending_one_start_at_once_get_one_run_and_all_name_it() {
    let server = Server::start(&with_plugins(TWO_STEPS)).await;
    let url = format!("{}/v1/workflows/two/runs", server.url);
    let keyed = race::<8>(200, move |client, i| {
        client
            .post(&url)
            .header("Idempotency-Key", format!("checkout-{i}"))
            .json(&json!({ "n": i }))
    })
    .await;
    let url = format!("{}/v1/workflows/two/runs?wait=5s", server.url);
    let chosen = race::<8>(50, move |client, i| {
        client
            .post(&url)
            .json(&json!({ "id": format!("client-{i}") }))
    })
    .await;
    for (i, answers) in keyed.iter().enumerate() {
        assert_eq!(ids(answers).len(), 1, "key checkout-{i}: {answers:?}");
    }
    for (i, answers) in chosen.iter().enumerate() {
        assert_eq!(
            ids(answers),
            HashSet::from([format!("client-{i}").as_str()])
        );
        // Each waited for the end, the one that started it and the seven repeats alike.
        for run in answers {
            assert_eq!(run["status"], "completed", "{run}");
        }
    }
    let runs = all_runs(&server).await;
    assert_eq!(runs.len(), 250, "one run per key and per id");
    let inputs: HashSet<String> = runs.iter().map(|r| r["context"]["n"].to_string()).collect();
    assert_eq!(
        inputs.len(),
        201,
        "each keyed start once, the id starts without `n`"
    );
    for run in &runs {
        let finished = server.until_terminal(run["id"].as_str().unwrap()).await;
        assert_eq!(finished["status"], "completed", "{finished}");
    }
}

/// Finding 3: two concurrent `POST /v1/runs/{id}/retry` both passed the check and both drove
/// the run. Now the record's compare-and-swap lets one win; the others get 409. The window
/// is narrow, so forty runs are each retried by eight clients at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_retries_of_one_run_at_once_drive_it_once() {
    const RUNS: usize = 40;
    let services = Services::start().await;
    let server = Server::start(&services.config()).await;
    services.fail("orders", RUNS as u32, 400).await; // create_order fails for good
    services.fail("refunds", 100_000, 503).await; // and so does the refund
    let url = format!("{}/v1/workflows/order_processing/runs?wait=30s", server.url);
    let runs = at_once(RUNS, move |i| {
        let request = reqwest::Client::new()
            .post(&url)
            .json(&order(&format!("r-{i}"), 7, 20.0));
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    })
    .await;
    let ids: Vec<String> = runs
        .iter()
        .map(|run| {
            assert_eq!(run["status"], "compensation_failed", "{run}");
            run["id"].as_str().unwrap().to_owned()
        })
        .collect();
    services.fail("refunds", 0, 503).await;

    let retries: Vec<String> = ids
        .iter()
        .flat_map(|id| std::iter::repeat_n(format!("{}/v1/runs/{id}/retry", server.url), 8))
        .collect();
    let statuses = at_once(retries.len(), move |i| {
        let request = reqwest::Client::new().post(&retries[i]);
        async move { request.send().await.unwrap().status().as_u16() }
    })
    .await;
    for (run, answers) in ids.iter().zip(statuses.chunks(8)) {
        let accepted = answers.iter().filter(|s| **s == 202).count();
        assert_eq!(accepted, 1, "run {run}: {answers:?}");
        assert!(
            answers.iter().all(|s| matches!(s, 202 | 409)),
            "{answers:?}"
        );
    }

    for (i, id) in ids.iter().enumerate() {
        let run = server.until_terminal(id).await;
        assert_eq!(run["status"], "compensated", "{run}");
        let (_, journal) = server.get(&format!("/v1/runs/{id}/journal")).await;
        let undos = |step: &str| {
            journal["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["direction"] == "compensate" && a["step"] == step)
                .count()
        };
        assert_eq!(
            undos("process_payment"),
            4,
            "three failed, one by the one retry: {journal}"
        );
        assert_eq!(undos("reserve_inventory"), 1, "{journal}");
        let ledger = services.order(&format!("r-{i}")).await;
        assert_eq!(
            ledger["payments"]["refunded"].as_array().unwrap().len(),
            1,
            "{ledger}"
        );
    }
}

/// Finding 6: starts beyond `max-concurrent-runs` became waiting tasks without bound, and no
/// start was ever refused. Now past `max-pending-runs` a start answers 429 with
/// `Retry-After`, stores nothing and says so; every accepted run completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn starts_past_the_backlog_are_refused_with_429_and_store_nothing() {
    let services = Services::start().await;
    let config = format!(
        "{}\n[server]\nmax-concurrent-runs = 1\nmax-pending-runs = 2\n",
        services.config()
    );
    let server = Server::start(&config).await;
    services.delay(100).await; // each run takes half a second
    let url = format!("{}/v1/workflows/order_processing/runs", server.url);
    let answers = at_once(8, move |i| {
        let request = reqwest::Client::new()
            .post(&url)
            .json(&order(&format!("a-{i}"), 7, 20.0));
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, retry_after, response.json::<Value>().await.unwrap())
        }
    })
    .await;
    let mut accepted = Vec::new();
    let mut refused = 0;
    for (status, retry_after, body) in answers {
        match status {
            202 => accepted.push(body["id"].as_str().unwrap().to_owned()),
            429 => {
                refused += 1;
                assert_eq!(retry_after.as_deref(), Some("1"), "{body}");
                let detail = body["detail"].as_str().unwrap();
                assert!(
                    detail.contains("max-pending-runs") && detail.contains("nothing was stored"),
                    "{detail}"
                );
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(
        (accepted.len(), refused),
        (3, 5),
        "one running, two waiting"
    );
    assert_eq!(
        all_runs(&server).await.len(),
        3,
        "a refused start stores nothing"
    );
    for id in &accepted {
        assert_eq!(server.until_terminal(id).await["status"], "completed");
    }
    let (status, _) = server
        .post(
            "/v1/workflows/order_processing/runs",
            &order("a-late", 7, 20.0),
        )
        .await;
    assert_eq!(status, 202, "room again once the backlog drained");
}

/// A client that hangs up while its start is being made durable must not leave a stored run
/// that no one drives: a start runs to its end whatever happens to its request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_that_hang_up_half_way_leave_no_run_undriven() {
    let server = Server::start(&with_plugins(TWO_STEPS)).await;
    let impatient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_micros(300))
        .build()
        .unwrap();
    let url = format!("{}/v1/workflows/two/runs", server.url);
    let mut hung_up = 0;
    for i in 0..200 {
        let sent = impatient
            .post(&url)
            .header("Idempotency-Key", format!("impatient-{i}"))
            .json(&json!({}))
            .send()
            .await;
        hung_up += usize::from(sent.is_err());
    }
    assert!(hung_up > 0, "no client hung up: the test proves nothing");
    for run in all_runs(&server).await {
        let finished = server.until_terminal(run["id"].as_str().unwrap()).await;
        assert_eq!(finished["status"], "completed", "{finished}");
    }
}
