//! Faults the host must survive, injected into a real host's store: a flush or a write that
//! fails, a panic in the middle of a run. Each test names the finding of issue 10 it
//! covers; each failed before the fix it tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flowhost::model::{Outcome, RunStatus};
use flowhost::store::faults::Op;
use serde_json::{Value, json};

use crate::events::Transport;
use crate::inprocess::InProcess;
use crate::support::TWO_STEPS;

/// Starts `two` with `key` as its `Idempotency-Key`, waiting for it to end.
async fn start_with_key(host: &InProcess, key: &str) -> reqwest::Response {
    host.client
        .post(format!("{}/v1/workflows/two/runs?wait=10s", host.url))
        .header("Idempotency-Key", key)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
}

/// Polls `path` until `ready` holds for its JSON answer, for up to 20 s.
async fn until(host: &InProcess, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = host.get(path).await;
        if ready(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{path} never got there: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn runs(page: &Value) -> &Vec<Value> {
    page["runs"].as_array().unwrap()
}

/// Finding 7: a run whose creation flush failed was never driven until a restart, and a
/// client's retry got that stranded run back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_flush_on_create_answers_503_and_leaves_nothing_a_retry_gets_stuck_on() {
    let host = InProcess::start(TWO_STEPS).await;
    host.faults.fail(1, |op| matches!(op, Op::Flush));
    let refused = start_with_key(&host, "order-7").await;
    assert_eq!(refused.status().as_u16(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let problem: Value = refused.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("flush"),
        "{problem}"
    );
    let (_, page) = host.get("/v1/runs").await;
    assert!(runs(&page).is_empty(), "nothing was stored: {page}");

    let retried = start_with_key(&host, "order-7").await;
    assert_eq!(retried.status().as_u16(), 200);
    let run: Value = retried.json().await.unwrap();
    assert_eq!(run["status"], "completed", "{run}");
}

/// Deliver 4: a failed journal write stops the run cleanly; the run is taken up again by
/// itself after a pause (the store may be back), as a restart would take it up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_journal_write_halts_the_run_and_it_goes_on_by_itself() {
    let host = InProcess::start(TWO_STEPS).await;
    host.faults.fail(
        1,
        |op| matches!(op, Op::AppendJournal { run, .. } if run.journaled == 1),
    );
    let (status, run) = host.post("/v1/workflows/two/runs", &json!({})).await;
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/runs/{id}");
    until(&host, &path, |run| run["steps"][0]["status"] == "completed").await;
    // Step `b` ran, but its entry was never written: the run stops there.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, stopped) = host.get(&path).await;
    assert_eq!(stopped["status"], "running", "{stopped}");
    assert_eq!(stopped["steps"][1]["attempts"], 0, "{stopped}");

    let run = host.until_terminal(&id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        run["steps"][1]["attempts"], 1,
        "the lost attempt ran again as itself"
    );
}

/// Finding 9: a panic inside a run's task was swallowed and left the run stuck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_an_attempt_fails_the_attempt_as_a_trap_would_and_the_run_goes_on() {
    let host = InProcess::start(TWO_STEPS).await;
    host.faults.panic(
        1,
        |op| matches!(op, Op::AppendJournal { run, .. } if run.journaled == 0),
    );
    let (status, run) = host
        .post("/v1/workflows/two/runs?wait=20s", &json!({}))
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["steps"][0]["attempts"], 2, "{run}");
    let (_, journal) = host
        .get(&format!("/v1/runs/{}/journal", run["id"].as_str().unwrap()))
        .await;
    let first = &journal["attempts"][0];
    assert_eq!(first["outcome"], "host", "{journal}");
    assert!(
        first["error"].as_str().unwrap().contains("panicked"),
        "{journal}"
    );
}

/// Finding 9, outside an attempt: a panic while a run ends leaves it to be taken up again,
/// not stuck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_while_a_run_ends_is_caught_and_the_run_ends_later() {
    let host = InProcess::start(TWO_STEPS).await;
    host.faults.panic(
        1,
        |op| matches!(op, Op::Save(run) if run.status == RunStatus::Completed),
    );
    let (status, run) = host
        .post("/v1/workflows/two/runs?wait=20s", &json!({}))
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["steps"][1]["attempts"], 1, "no step ran twice: {run}");
}

/// A run that compensates, and a workflow its end triggers.
const ANNOUNCED: &str = r#"
[plugins.probe]
path = "{PROBE}"
[plugins.noop]
path = "{NOOP}"
[workflows.a]
steps = [{ name = "echo", plugin = "probe" }, { name = "fail", plugin = "probe" }]
[workflows.b]
trigger = "flowhost.run.compensated"
steps = [{ name = "one", plugin = "noop" }]
"#;

/// Finding 4: the lifecycle event was written before the terminal record; a flush between
/// the two and a crash gave a second event with a new id, and the workflow it triggers ran
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_ends_twice_across_a_crash_announces_its_end_once() {
    let mut host = InProcess::start(ANNOUNCED).await;
    // The record of the end is never written; everything before it is.
    host.faults.fail(
        1,
        |op| matches!(op, Op::Save(run) if run.status == RunStatus::Compensated),
    );
    let context = json!({ "kind": "fatal", "message": "no" });
    let (status, run) = host.post("/v1/workflows/a/runs", &context).await;
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/runs/{id}");
    until(&host, &path, |run| {
        run["steps"][0]["status"] == "compensated"
    })
    .await;
    // The relay looks every 20 ms; give it many chances to release what it must not.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, triggered) = host.get("/v1/runs?workflow=b").await;
    assert!(
        runs(&triggered).is_empty(),
        "announced before it was recorded: {triggered}"
    );

    host.restart().await;
    assert_eq!(host.until_terminal(&id).await["status"], "compensated");
    let page = until(&host, "/v1/runs?workflow=b&status=completed", |page| {
        !runs(page).is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, again) = host.get("/v1/runs?workflow=b").await;
    assert_eq!(
        runs(&again).len(),
        1,
        "one end, one announcement: {again} {page}"
    );
    assert_eq!(runs(&again)[0]["context"]["run_id"], id.as_str());
}

/// The `forward` handler on `order.placed`, and a workflow run per event it forwards: the
/// runs count the handler's deliveries.
fn forwarding(transport: &str) -> String {
    format!(
        r#"
{transport}
[plugins.forward]
path = "{{FORWARD}}"
publish = ["forwarded.#"]
[plugins.noop]
path = "{{NOOP}}"
[subscriptions.forward]
topic = "order.placed"
handler = "forward"
retry = {{ attempts = 5, initial-backoff = "50ms", max-backoff = "200ms" }}
[workflows.seen]
trigger = "forwarded.#"
steps = [{{ name = "one", plugin = "noop" }}]
"#
    )
}

/// Finding 5: events a handler published were written but not flushed before the broker
/// message was acknowledged, so a crash then lost them. Now the flush comes first, and if it
/// fails the message is not acknowledged: it is delivered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_flush_of_a_handlers_events_means_no_ack_and_the_event_comes_again() {
    let transport = Transport::Nats.section("handler_flush").await;
    let host = InProcess::start(&forwarding(&transport)).await;
    let published = Arc::new(AtomicBool::new(false));
    let armed = published.clone();
    host.faults.observe(move |op| {
        if let Op::OutboxPut(entries) = op
            && entries.iter().any(|e| e.event.source == "plugin/forward")
        {
            published.store(true, Ordering::SeqCst);
        }
    });
    // The first flush after the handler's events are written fails.
    host.faults.fail(1, move |op| {
        matches!(op, Op::Flush) && armed.load(Ordering::SeqCst)
    });
    let (status, event) = host
        .post("/v1/events/order.placed", &json!({ "order_id": "o-1" }))
        .await;
    assert_eq!(status, 202, "{event}");
    let page = until(&host, "/v1/runs?workflow=seen&status=completed", |page| {
        runs(page).len() >= 2
    })
    .await;
    for run in runs(&page) {
        assert_eq!(run["context"]["original"], event["id"], "{page}");
    }
}

/// An audit handler that fails every delivery, and gives up after one attempt.
fn failing(transport: &str) -> String {
    format!(
        r#"
{transport}
[plugins.audit]
path = "{{AUDIT_LOG}}"
[subscriptions.audit]
topic = "audit.#"
handler = "audit"
retry = {{ attempts = 1, initial-backoff = "50ms", max-backoff = "200ms" }}
"#
    )
}

/// Finding 5, for dead letters: the dead letter was written but not flushed before the
/// broker message was terminated. Now a failed flush means no `term`: the message comes
/// again, and it is given up on, durably, then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_durable_before_the_broker_lets_go_of_the_message() {
    let transport = Transport::Nats.section("dead_letter_flush").await;
    let host = InProcess::start(&failing(&transport)).await;
    // Every flush fails from the first burial to the second: the first burial's own
    // flush among them, whatever other flush (the relay's) comes first under load.
    let buried = Arc::new(AtomicUsize::new(0));
    let armed = buried.clone();
    host.faults.observe(move |op| {
        if matches!(op, Op::Bury(_)) {
            buried.fetch_add(1, Ordering::SeqCst);
        }
    });
    host.faults.fail(usize::MAX, move |op| {
        matches!(op, Op::Flush) && armed.load(Ordering::SeqCst) == 1
    });
    let (status, _) = host
        .post("/v1/events/audit.login", &json!({ "fail": true }))
        .await;
    assert_eq!(status, 202);
    let letters = until(&host, "/v1/dead-letters", |page| {
        page["dead_letters"]
            .as_array()
            .is_some_and(|letters| !letters.is_empty())
    })
    .await;
    let letters = letters["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(
        letters[0]["attempts"], 2,
        "given up on a second time, after the message came again: {letters:?}"
    );
}

/// Finding 5, for redelivery: `POST /v1/dead-letters/{id}/redeliver` answered 202 before
/// anything was flushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_that_is_not_durable_is_not_acknowledged() {
    let host = InProcess::start(&failing("")).await;
    host.post("/v1/events/audit.login", &json!({ "fail": true }))
        .await;
    let letters = until(&host, "/v1/dead-letters", |page| {
        page["dead_letters"]
            .as_array()
            .is_some_and(|letters| !letters.is_empty())
    })
    .await;
    let id = letters["dead_letters"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    host.faults.fail(1, |op| matches!(op, Op::Flush));
    let (status, problem) = host
        .post(&format!("/v1/dead-letters/{id}/redeliver"), &json!({}))
        .await;
    assert_eq!(status, 503, "{problem}");
}

/// Deliver 4, the last case: no outcome is recorded as done before it is durable. A
/// journal entry whose write fails is attempted again after a restart, and the failed
/// attempt's events, staged before it, never go out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_whose_entry_was_not_written_publishes_nothing() {
    let config = r#"
[plugins.probe]
path = "{PROBE}"
publish = ["probe.#"]
[plugins.noop]
path = "{NOOP}"
[workflows.publisher]
steps = [{ name = "publish", plugin = "probe" }]
[workflows.listener]
trigger = "probe.said"
steps = [{ name = "one", plugin = "noop" }]
"#;
    let mut host = InProcess::start(config).await;
    host.faults.fail(
        1,
        |op| matches!(op, Op::AppendJournal { entry, .. } if entry.outcome == Outcome::Ok),
    );
    let context = json!({ "topic": "probe.said", "data": r#"{"n":1}"# });
    let (_, run) = host.post("/v1/workflows/publisher/runs", &context).await;
    let id = run["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, heard) = host.get("/v1/runs?workflow=listener").await;
    assert!(runs(&heard).is_empty(), "{heard}");
    host.restart().await;
    assert_eq!(host.until_terminal(&id).await["status"], "completed");
    until(
        &host,
        "/v1/runs?workflow=listener&status=completed",
        |page| runs(page).len() == 1,
    )
    .await;
}

/// A signal whose inbox write fails is refused with 503 and kept nowhere; sent again, it
/// resumes the run once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_inbox_write_refuses_the_signal_and_a_repeat_resumes_the_run() {
    let host = InProcess::start(
        r#"
[plugins.noop]
path = "{NOOP}"
[workflows.approval]
steps = [{ name = "a", plugin = "noop" }, { name = "approve", await = { signal = "approved" } }]
"#,
    )
    .await;
    let (_, run) = host.post("/v1/workflows/approval/runs", &json!({})).await;
    let id = run["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/runs/{id}");
    until(&host, &path, |run| run["steps"][1]["status"] == "waiting").await;
    host.faults.fail(1, |op| matches!(op, Op::Inbox(_)));
    let signal = format!("/v1/runs/{id}/signals/approved");
    let (status, problem) = host.post(&signal, &json!("first")).await;
    assert_eq!(status, 503, "{problem}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, still) = host.get(&path).await;
    assert_eq!(still["steps"][1]["status"], "waiting", "{still}");
    let (status, _) = host.post(&signal, &json!("second")).await;
    assert_eq!(status, 202);
    let run = host.until_terminal(&id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["context"]["approve"], "second");
}

/// A write that fails as an await begins halts the run before it waits; a restart takes
/// it on, it parks, and a signal then resumes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_as_an_await_begins_halts_the_run_and_a_restart_goes_on() {
    let mut host = InProcess::start(
        r#"
[plugins.noop]
path = "{NOOP}"
[workflows.approval]
steps = [{ name = "approve", await = { signal = "approved" } }, { name = "b", plugin = "noop" }]
"#,
    )
    .await;
    host.faults.fail(
        1,
        |op| matches!(op, Op::AppendJournal { entry, .. } if entry.outcome == Outcome::Started),
    );
    let (status, run) = host.post("/v1/workflows/approval/runs", &json!({})).await;
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/runs/{id}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, halted) = host.get(&path).await;
    assert_eq!(halted["steps"][0]["status"], "pending", "{halted}");
    let signal = format!("/v1/runs/{id}/signals/approved");
    host.restart().await;
    until(&host, &path, |run| run["steps"][0]["status"] == "waiting").await;
    let (status, _) = host.post(&signal, &json!({"ok": true})).await;
    assert_eq!(status, 202);
    let run = host.until_terminal(&id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["context"]["ok"], true);
}
