//! The step kinds and run controls of real processes, end to end on the real binary: durable
//! sleeps, conditions, cancellation, awaits of signals and events, schedules; the example's
//! services as the witness of what was done and undone.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::races::at_once;
use crate::sagas::{count, step};
use crate::server::{Server, Services, order};
use crate::support::with_plugins;

/// Polls run `id` until step `name` is `status`.
pub async fn until_step(server: &Server, id: &str, name: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, run) = server.get(&format!("/v1/runs/{id}")).await;
        if step(&run, name)["status"] == status {
            return run;
        }
        assert!(Instant::now() < deadline, "{name} never {status}: {run}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The journal's entries for `step`, as (direction, outcome).
async fn entries(server: &Server, id: &str, name: &str) -> Vec<(String, String)> {
    let (_, journal) = server.get(&format!("/v1/runs/{id}/journal")).await;
    journal["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["step"] == name)
        .map(|a| {
            (
                a["direction"].as_str().unwrap().to_owned(),
                a["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The order saga with a sleep of `sleep` between payment and order.
fn order_with_sleep(services: &Services, sleep: &str) -> String {
    services.config().replacen(
        "{ name = \"create_order\"",
        &format!("{{ name = \"cool_off\", sleep = \"{sleep}\" }},\n    {{ name = \"create_order\""),
        1,
    )
}

#[tokio::test]
async fn a_sleep_holds_no_task_and_fires_once_after_a_kill() {
    let config = with_plugins(
        r#"
[plugins.noop]
path = "{NOOP}"
[workflows.nap]
steps = [
    { name = "a", plugin = "noop" },
    { name = "nap", sleep = "1500ms" },
    { name = "b", plugin = "noop" },
]
"#,
    );
    let mut server = Server::start(&config).await;
    let started = Instant::now();
    let (status, run) = server.post("/v1/workflows/nap/runs", &json!({})).await;
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    let run = until_step(&server, &id, "nap", "waiting").await;
    assert_eq!(run["status"], "running", "{run}");
    assert_eq!(step(&run, "b")["status"], "pending");
    // Killed while asleep: the restart finds the due time in the journal.
    server.kill();
    server.restart().await;
    let run = server.until_terminal(&id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "woke early"
    );
    assert_eq!(
        entries(&server, &id, "nap").await,
        [
            ("execute".into(), "started".into()),
            ("execute".into(), "ok".into())
        ],
        "the sleep began once and ended once"
    );
    assert_eq!(entries(&server, &id, "b").await.len(), 1);
}

#[tokio::test]
async fn a_false_condition_skips_a_step_and_a_broken_one_fails_the_run() {
    let config = with_plugins(
        r#"
[plugins.noop]
path = "{NOOP}"
[workflows.gifts]
steps = [
    { name = "a", plugin = "noop" },
    { name = "gift", plugin = "noop", when = "context.total > 100" },
    { name = "b", plugin = "noop" },
]
"#,
    );
    let server = Server::start(&config).await;
    let (_, small) = server
        .post("/v1/workflows/gifts/runs?wait=10s", &json!({"total": 20}))
        .await;
    assert_eq!(small["status"], "completed", "{small}");
    assert_eq!(step(&small, "gift")["status"], "skipped", "{small}");
    assert_eq!(step(&small, "gift")["attempts"], 0);
    assert_eq!(step(&small, "b")["status"], "completed");
    let (_, large) = server
        .post("/v1/workflows/gifts/runs?wait=10s", &json!({"total": 200}))
        .await;
    assert_eq!(step(&large, "gift")["status"], "completed", "{large}");
    // `total` missing: the condition cannot be evaluated, which fails its step for good.
    let (_, broken) = server
        .post("/v1/workflows/gifts/runs?wait=10s", &json!({}))
        .await;
    assert_eq!(broken["status"], "compensated", "{broken}");
    assert_eq!(broken["error"]["step"], "gift", "{broken}");
    let error = broken["error"]["message"].as_str().unwrap();
    assert!(error.starts_with("when: "), "{error}");
    assert_eq!(step(&broken, "a")["status"], "compensated");
}

#[tokio::test]
async fn a_typo_in_a_condition_is_refused_at_start_naming_the_step() {
    let config = with_plugins(
        r#"
[plugins.noop]
path = "{NOOP}"
[workflows.gifts]
steps = [{ name = "gift", plugin = "noop", when = "context.total >" }]
"#,
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flowhost.toml");
    std::fs::write(&file, format!("data-dir = {:?}\n{config}", dir.path())).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_flowhost"))
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("workflows.gifts.steps.gift.when") && stderr.contains("not a valid CEL"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_cancel_while_asleep_compensates_at_once_and_repeats_are_harmless() {
    let services = Services::start().await;
    let server = Server::start(&order_with_sleep(&services, "1h")).await;
    let (_, run) = server
        .post(
            "/v1/workflows/order_processing/runs",
            &order("o-c1", 7, 20.0),
        )
        .await;
    let id = run["id"].as_str().unwrap().to_owned();
    until_step(&server, &id, "cool_off", "waiting").await;
    let before = Instant::now();
    // Eight clients cancel at once: every one is answered with the cancelled run, and the
    // payment is refunded once.
    let url = format!("{}/v1/runs/{id}/cancel", server.url);
    let answers = at_once(8, |_| {
        let request = server.client.post(url.clone()).send();
        async move {
            let response = request.await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    })
    .await;
    for (status, run) in &answers {
        assert_eq!(*status, 202, "{run}");
        assert!(
            ["compensating", "cancelled"].contains(&run["status"].as_str().unwrap()),
            "{run}"
        );
    }
    let run = server.until_terminal(&id).await;
    assert!(
        before.elapsed() < Duration::from_secs(30),
        "waited for the sleep"
    );
    assert_eq!(run["status"], "cancelled", "{run}");
    assert_eq!(run["error"]["message"], "cancelled");
    assert_eq!(step(&run, "cool_off")["status"], "cancelled", "{run}");
    assert_eq!(step(&run, "process_payment")["status"], "compensated");
    assert_eq!(step(&run, "create_order")["status"], "pending");
    let ledger = services.order("o-c1").await;
    assert_eq!(count(&ledger, "payments", "refunded"), 1, "{ledger}");
    assert_eq!(count(&ledger, "reservations", "released"), 2, "{ledger}");
    assert_eq!(count(&ledger, "orders", "active"), 0, "{ledger}");
    let undone = entries(&server, &id, "process_payment").await;
    assert_eq!(undone.iter().filter(|(d, _)| d == "compensate").count(), 1);
    // Once more, after the end: the same answer.
    let (status, again) = server
        .post(&format!("/v1/runs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!((status, again["status"].as_str()), (202, Some("cancelled")));
}

#[tokio::test]
async fn a_cancel_lets_the_attempt_in_flight_finish_then_undoes_it() {
    let services = Services::start().await;
    let server = Server::start(&services.config()).await;
    // Every service call takes 300 ms: the cancel lands while a step is in flight.
    services.delay(300).await;
    let (_, run) = server
        .post(
            "/v1/workflows/order_processing/runs",
            &order("o-c2", 7, 20.0),
        )
        .await;
    let id = run["id"].as_str().unwrap().to_owned();
    until_step(&server, &id, "validate_user", "completed").await;
    let (status, cancelled) = server
        .post(&format!("/v1/runs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 202, "{cancelled}");
    let run = server.until_terminal(&id).await;
    assert_eq!(run["status"], "cancelled", "{run}");
    // The reservation that was in flight completed, and was released.
    let ledger = services.order("o-c2").await;
    assert_eq!(count(&ledger, "reservations", "active"), 0, "{ledger}");
    assert_eq!(count(&ledger, "payments", "captured"), 0, "{ledger}");
    assert_eq!(step(&run, "create_order")["status"], "pending", "{run}");
}

#[tokio::test]
async fn a_cancel_of_an_ended_or_unknown_run_is_refused() {
    let services = Services::start().await;
    let server = Server::start(&services.config()).await;
    let (_, run) = server
        .post(
            "/v1/workflows/order_processing/runs?wait=30s",
            &order("o-c3", 7, 20.0),
        )
        .await;
    assert_eq!(run["status"], "completed");
    let id = run["id"].as_str().unwrap();
    let (status, problem) = server
        .post(&format!("/v1/runs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("is completed"),
        "{problem}"
    );
    let (status, _) = server.post("/v1/runs/nope/cancel", &json!({})).await;
    assert_eq!(status, 404);
    let (_, still) = server.get(&format!("/v1/runs/{id}")).await;
    assert_eq!(still["status"], "completed");
}

/// Workflow `approval`: a step, an await of signal `approved` (of `timeout`, with
/// `extra` keys), a step.
fn approval(timeout: &str, extra: &str) -> String {
    with_plugins(&format!(
        r#"
[plugins.noop]
path = "{{NOOP}}"
[workflows.approval]
steps = [
    {{ name = "a", plugin = "noop" }},
    {{ name = "approve", await = {{ signal = "approved", timeout = "{timeout}" }} {extra} }},
    {{ name = "b", plugin = "noop" }},
]
[workflows.early]
steps = [
    {{ name = "nap", sleep = "400ms" }},
    {{ name = "approve", await = {{ signal = "approved" }} }},
]
"#
    ))
}

#[tokio::test]
async fn a_signal_resumes_a_parked_run_after_a_kill_and_only_once() {
    let mut server = Server::start(&approval("1h", "")).await;
    let (_, run) = server.post("/v1/workflows/approval/runs", &json!({})).await;
    let id = run["id"].as_str().unwrap().to_owned();
    until_step(&server, &id, "approve", "waiting").await;
    server.kill();
    server.restart().await;
    let (status, problem) = server
        .post(&format!("/v1/runs/{id}/signals/rejected"), &json!({}))
        .await;
    assert_eq!(status, 409, "no step awaits it: {problem}");
    let (status, answer) = server
        .post(
            &format!("/v1/runs/{id}/signals/approved"),
            &json!({"by": "ana"}),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let run = server.until_terminal(&id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["context"]["by"], "ana");
    assert_eq!(
        entries(&server, &id, "approve").await,
        [
            ("execute".into(), "started".into()),
            ("execute".into(), "ok".into())
        ]
    );
    let (status, _) = server
        .post(&format!("/v1/runs/{id}/signals/approved"), &json!({}))
        .await;
    assert_eq!(status, 409, "a completed run takes no signal");
}

#[tokio::test]
async fn a_signal_sent_before_the_step_is_kept_for_it() {
    let server = Server::start(&approval("1h", "")).await;
    let (_, run) = server.post("/v1/workflows/early/runs", &json!({})).await;
    let id = run["id"].as_str().unwrap().to_owned();
    let (status, answer) = server
        .post(&format!("/v1/runs/{id}/signals/approved"), &json!("yes"))
        .await;
    assert_eq!(status, 202, "{answer}");
    let run = server.until_terminal(&id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        run["context"]["approve"], "yes",
        "a value that is not an object goes under the step's name"
    );
}

#[tokio::test]
async fn an_await_that_times_out_fails_and_compensates_unless_it_continues() {
    let server = Server::start(&approval("300ms", "")).await;
    let (_, run) = server
        .post("/v1/workflows/approval/runs?wait=10s", &json!({}))
        .await;
    assert_eq!(run["status"], "compensated", "{run}");
    assert_eq!(run["error"]["step"], "approve");
    assert!(
        run["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out waiting for signal `approved`")
    );
    assert_eq!(step(&run, "a")["status"], "compensated");
    let server = Server::start(&approval("300ms", ", on-timeout = \"continue\"")).await;
    let (_, run) = server
        .post("/v1/workflows/approval/runs?wait=10s", &json!({}))
        .await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(step(&run, "b")["status"], "completed");
}

/// Workflow `settle`: waits for `payment.settled` of its order, keeping early ones when
/// `buffer`.
pub fn settlement(buffer: bool) -> String {
    with_plugins(&format!(
        r#"
[plugins.noop]
path = "{{NOOP}}"
[workflows.settle]
steps = [
    {{ name = "a", plugin = "noop" }},
    {{ name = "nap", sleep = "300ms" }},
    {{ name = "settled", await = {{ topic = "payment.settled", match = "event.data.order_id == context.order_id", timeout = "1m", buffer = {buffer} }} }},
]
"#
    ))
}

#[tokio::test]
async fn an_event_resumes_only_the_run_it_matches_even_after_a_kill() {
    let mut server = Server::start(&settlement(false)).await;
    let mut ids = Vec::new();
    for order in ["o-1", "o-2"] {
        let (_, run) = server
            .post("/v1/workflows/settle/runs", &json!({"order_id": order}))
            .await;
        ids.push(run["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        until_step(&server, id, "settled", "waiting").await;
    }
    server.kill();
    server.restart().await;
    let (status, _) = server
        .post(
            "/v1/events/payment.settled",
            &json!({"order_id": "o-2", "amount": 12}),
        )
        .await;
    assert_eq!(status, 202);
    let second = server.until_terminal(&ids[1]).await;
    assert_eq!(second["status"], "completed", "{second}");
    assert_eq!(second["context"]["amount"], 12);
    let (_, first) = server.get(&format!("/v1/runs/{}", ids[0])).await;
    assert_eq!(step(&first, "settled")["status"], "waiting", "{first}");
    server
        .post(
            "/v1/events/payment.settled",
            &json!({"order_id": "o-1", "amount": 7}),
        )
        .await;
    let first = server.until_terminal(&ids[0]).await;
    assert_eq!(first["context"]["amount"], 7, "{first}");
}

#[tokio::test]
async fn an_early_event_is_kept_only_when_the_step_says_buffer() {
    for buffer in [true, false] {
        let server = Server::start(&settlement(buffer)).await;
        let (_, run) = server
            .post("/v1/workflows/settle/runs", &json!({"order_id": "o-9"}))
            .await;
        let id = run["id"].as_str().unwrap().to_owned();
        until_step(&server, &id, "nap", "waiting").await;
        server
            .post("/v1/events/payment.settled", &json!({"order_id": "o-9"}))
            .await;
        until_step(
            &server,
            &id,
            "settled",
            if buffer { "completed" } else { "waiting" },
        )
        .await;
        if !buffer {
            // Give a wrongly kept event time to show.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let (_, run) = server.get(&format!("/v1/runs/{id}")).await;
            assert_eq!(step(&run, "settled")["status"], "waiting", "{run}");
        } else {
            // The step's end and the run's are two saves: wait for the second.
            let run = server.until_terminal(&id).await;
            assert_eq!(run["status"], "completed", "{run}");
        }
    }
}

/// Workflow `tick`: one no-op step every second, with `catch_up`.
fn ticking(catch_up: &str) -> String {
    with_plugins(&format!(
        r#"
[plugins.noop]
path = "{{NOOP}}"
[workflows.tick]
schedule = "* * * * * *"
catch-up = "{catch_up}"
steps = [{{ name = "a", plugin = "noop" }}]
"#
    ))
}

/// The times (ms) of the `tick@<time>` runs, sorted, each once.
async fn ticks(server: &Server) -> Vec<u64> {
    let (_, page) = server.get("/v1/runs?workflow=tick&limit=500").await;
    let mut times: Vec<u64> = page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| {
            let id = run["id"].as_str().unwrap();
            let time = id.strip_prefix("tick@").unwrap();
            assert_eq!(run["context"]["scheduled_at"], time);
            chrono::DateTime::parse_from_rfc3339(time)
                .unwrap()
                .timestamp_millis() as u64
        })
        .collect();
    times.sort_unstable();
    let count = times.len();
    times.dedup();
    assert_eq!(times.len(), count, "a firing ran twice");
    times
}

#[tokio::test]
async fn a_schedule_fires_each_time_once_and_catches_up_after_a_kill() {
    let mut server = Server::start(&ticking("all")).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while ticks(&server).await.len() < 3 {
        assert!(Instant::now() < deadline, "no ticks");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.kill();
    // Down for a while: with catch-up = "all", each missed second gets its run.
    tokio::time::sleep(Duration::from_secs(12)).await;
    server.restart().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let times = ticks(&server).await;
    let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|gap| *gap == 1000),
        "a second was skipped: {gaps:?}"
    );
    assert!(times.len() >= 16, "{times:?}");
    let (_, page) = server
        .get("/v1/runs?workflow=tick&status=completed&limit=500")
        .await;
    assert!(page["runs"].as_array().unwrap().len() >= times.len() - 2);
}

#[tokio::test]
async fn without_catch_up_the_seconds_missed_while_down_are_skipped() {
    let mut server = Server::start(&ticking("none")).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while ticks(&server).await.is_empty() {
        assert!(Instant::now() < deadline, "no ticks");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.kill();
    // The firings due while it was down were missed.
    tokio::time::sleep(Duration::from_secs(12)).await;
    server.restart().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let times = ticks(&server).await;
    let longest = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    assert!(longest >= 10_000, "nothing was skipped: {times:?}");
}

#[tokio::test]
async fn eight_signals_at_once_resume_two_awaits_with_two_of_them_each_once() {
    let config = with_plugins(
        r#"
[plugins.noop]
path = "{NOOP}"
[workflows.twice]
steps = [
    { name = "first", await = { signal = "ok" } },
    { name = "second", await = { signal = "ok" } },
    { name = "b", plugin = "noop" },
]
"#,
    );
    let server = Server::start(&config).await;
    let (_, run) = server.post("/v1/workflows/twice/runs", &json!({})).await;
    let id = run["id"].as_str().unwrap().to_owned();
    until_step(&server, &id, "first", "waiting").await;
    let url = format!("{}/v1/runs/{id}/signals/ok", server.url);
    let answers = at_once(8, |i| {
        let request = server.client.post(url.clone()).json(&json!(i)).send();
        async move { request.await.unwrap().status().as_u16() }
    })
    .await;
    // Each is kept (202) while a step ahead awaits `ok`; once both took theirs, 409.
    assert!(
        answers.iter().all(|s| matches!(s, 202 | 409)),
        "{answers:?}"
    );
    assert!(
        answers.iter().filter(|s| **s == 202).count() >= 2,
        "{answers:?}"
    );
    let run = server.until_terminal(&id).await;
    assert_eq!(run["status"], "completed", "{run}");
    let (first, second) = (&run["context"]["first"], &run["context"]["second"]);
    assert!(
        first.is_u64() && second.is_u64() && first != second,
        "{run}"
    );
    for step in ["first", "second"] {
        let oks = entries(&server, &id, step)
            .await
            .into_iter()
            .filter(|(_, outcome)| outcome == "ok")
            .count();
        assert_eq!(oks, 1, "{step} took one signal");
    }
}

#[tokio::test]
async fn a_cancel_racing_a_signal_ends_one_way_and_never_both() {
    let services = Services::start().await;
    let config = services.config().replacen(
        "{ name = \"create_order\"",
        "{ name = \"approve\", await = { signal = \"approved\" } },\n    { name = \"create_order\"",
        1,
    );
    let server = Server::start(&config).await;
    let mut ids = Vec::new();
    for n in 0..8 {
        let (_, run) = server
            .post(
                "/v1/workflows/order_processing/runs",
                &order(&format!("o-r{n}"), 7, 20.0),
            )
            .await;
        ids.push(run["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        until_step(&server, id, "approve", "waiting").await;
    }
    // For each run, a cancel and a signal sent at the same moment.
    let answers = at_once(16, |i| {
        let id = &ids[i / 2];
        let path = if i % 2 == 0 {
            format!("{}/v1/runs/{id}/cancel", server.url)
        } else {
            format!("{}/v1/runs/{id}/signals/approved", server.url)
        };
        let request = server.client.post(path).json(&json!({})).send();
        async move { request.await.unwrap().status().as_u16() }
    })
    .await;
    assert!(
        answers.iter().all(|s| matches!(s, 202 | 409)),
        "{answers:?}"
    );
    for (n, id) in ids.iter().enumerate() {
        let run = server.until_terminal(id).await;
        let ledger = services.order(&format!("o-r{n}")).await;
        match run["status"].as_str().unwrap() {
            "cancelled" => {
                assert_eq!(count(&ledger, "payments", "refunded"), 1, "{ledger}");
                assert_eq!(count(&ledger, "orders", "active"), 0, "{ledger}");
            }
            "completed" => {
                assert_eq!(answers[2 * n], 409, "the cancel came too late and said so");
                assert_eq!(count(&ledger, "payments", "refunded"), 0, "{ledger}");
                assert_eq!(count(&ledger, "orders", "active"), 1, "{ledger}");
            }
            other => panic!("{id} ended {other}: {run}"),
        }
    }
}

/// The example's `order_settled` workflow against `services`: the order saga that waits for
/// the payment service's `payment.settled` after the capture, for up to `timeout`.
fn order_settled(services: &Services, timeout: &str) -> String {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/order-processing/flowhost.toml"
    ))
    .unwrap();
    let workflow = example_table(&example, "[workflows.order_settled]");
    format!(
        "{}\n{}",
        services.config(),
        workflow.replace("timeout = \"1m\"", &format!("timeout = \"{timeout}\""))
    )
}

/// The table `header` of the example's configuration `example`, up to the next table.
pub fn example_table<'a>(example: &'a str, header: &str) -> &'a str {
    let table = &example[example.find(header).unwrap()..];
    let end = table[1..].find("\n[").map_or(table.len(), |i| i + 2);
    &table[..end]
}

#[tokio::test]
async fn the_example_order_waits_for_the_payment_services_settlement() {
    let services = Services::start().await;
    let mut server = Server::start(&order_settled(&services, "1m")).await;
    let webhook = format!("{}/v1/events/payment.settled", server.url);
    let settle = |after_ms: u64| {
        let body = json!({"webhook": webhook, "after_ms": after_ms});
        let url = format!("{}/admin/settlements", services.url);
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success());
        }
    };
    settle(300).await;
    let (status, run) = server
        .post(
            "/v1/workflows/order_settled/runs?wait=30s",
            &order("o-s1", 7, 20.0),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        run["context"]["status"], "settled",
        "the settlement joined the context: {run}"
    );
    assert!(
        run["context"]["payment_id"]
            .as_str()
            .unwrap()
            .starts_with("pay_"),
        "{run}"
    );
    let ledger = services.order("o-s1").await;
    assert_eq!(count(&ledger, "orders", "active"), 1, "{ledger}");
    // Killed while parked: the settlement, sent while the host is down, is retried by the
    // payment service until the host is back, and resumes the run.
    settle(1500).await;
    let (_, run) = server
        .post("/v1/workflows/order_settled/runs", &order("o-s2", 7, 20.0))
        .await;
    let id = run["id"].as_str().unwrap().to_owned();
    until_step(&server, &id, "await_settlement", "waiting").await;
    server.kill();
    server.restart().await;
    let run = server.until_terminal(&id).await;
    assert_eq!(run["status"], "completed", "{run}");
    let ledger = services.order("o-s2").await;
    assert_eq!(count(&ledger, "payments", "captured"), 1, "{ledger}");
    assert_eq!(count(&ledger, "orders", "active"), 1, "{ledger}");
}

#[tokio::test]
async fn an_order_never_settled_refunds_the_payment_when_the_wait_times_out() {
    let services = Services::start().await;
    let server = Server::start(&order_settled(&services, "500ms")).await;
    let (_, run) = server
        .post(
            "/v1/workflows/order_settled/runs?wait=30s",
            &order("o-s3", 7, 20.0),
        )
        .await;
    assert_eq!(run["status"], "compensated", "{run}");
    assert_eq!(run["error"]["step"], "await_settlement");
    let ledger = services.order("o-s3").await;
    assert_eq!(count(&ledger, "payments", "refunded"), 1, "{ledger}");
    assert_eq!(count(&ledger, "reservations", "active"), 0, "{ledger}");
    assert_eq!(count(&ledger, "orders", "active"), 0, "{ledger}");
}

#[tokio::test]
async fn a_cancel_before_a_recovered_run_is_driven_waits_for_its_in_flight_attempt() {
    let services = Services::start().await;
    let config = format!("{}\n[server]\nmax-concurrent-runs = 1\n", services.config());
    let mut server = Server::start(&config).await;
    services.delay(2000).await;
    // `a` runs; `b` waits for the one slot. After the restart `b`, pending, goes first,
    // and `a` waits its turn, recovered but not driven, when the cancel comes.
    let (status, _) = server
        .post(
            "/v1/workflows/order_processing/runs",
            &json!({ "id": "a", "order_id": "o-r1", "user_id": 7, "total_amount": 20.0,
                     "items": [{ "product_id": "p-1", "quantity": 1 }], "payment_method": "card" }),
        )
        .await;
    assert_eq!(status, 202);
    let (status, _) = server
        .post(
            "/v1/workflows/order_processing/runs",
            &order("o-r2", 7, 20.0),
        )
        .await;
    assert_eq!(status, 202);
    // Killed once the payment is taken and before its answer comes, a second later: the
    // journal up to the payment is durable by then (sled writes back within 500 ms), so
    // the crash loses only the attempt in flight.
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&services.order("o-r1").await, "payments", "captured") == 0 {
        assert!(Instant::now() < deadline, "the payment was never taken");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.kill();
    services.delay(100).await;
    server.restart().await;
    let (status, answer) = server.post("/v1/runs/a/cancel", &json!({})).await;
    assert_eq!(status, 202, "{answer}");
    let run = server.until_terminal("a").await;
    assert_eq!(run["status"], "cancelled", "{run}");
    // The payment in flight at the crash was made again (a repeat, by its key), so the
    // compensation knew of it and refunded it.
    let ledger = services.order("o-r1").await;
    let (_, journal) = server.get("/v1/runs/a/journal").await;
    assert_eq!(
        count(&ledger, "payments", "captured"),
        0,
        "{ledger} {journal} {run}"
    );
    assert_eq!(count(&ledger, "reservations", "active"), 0, "{ledger}");
}
