//! Events to waiting runs: matched resumes per second with 10,000 runs parked.
//!
//! `cargo bench --bench awaits` starts flowhost, the real binary (release build), with a
//! workflow whose one step awaits `payment.settled` with `match = "event.data.order_id ==
//! context.order_id"`, and parks `BENCH_RUNS` runs (default 10,000), one per order. Then
//! `BENCH_CLIENTS` clients (default 16) publish one settlement per order
//! (`POST /v1/events/payment.settled`), in a random order, and the bench waits until every
//! run has completed with its own order's amount. It prints how long the publishing and the
//! resuming took and the matched resumes per second, next to the baseline of the same host
//! publishing the same number of events that no run awaits; it exits 1 if a run resumed with
//! another order's event or did not resume.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::ensure;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::json;

#[path = "common/http.rs"]
mod http;
#[path = "common/process.rs"]
mod process;
use http::Connection;
use process::{Flowhost, env_or};

fn main() -> anyhow::Result<()> {
    let runs: usize = env_or("BENCH_RUNS", 10_000)?;
    let clients: usize = env_or("BENCH_CLIENTS", 16)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench(runs, clients))
}

/// Sends `POST path` with each body of `bodies` from `clients` connections at once.
async fn send_all(
    address: SocketAddr,
    clients: usize,
    path: &'static str,
    bodies: Vec<String>,
    expect: StatusCode,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mine: Vec<String> = bodies.iter().skip(c).step_by(clients).cloned().collect();
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::new(address);
            for body in mine {
                let (status, answer) = connection
                    .send(Method::POST, path, Bytes::from(body))
                    .await
                    .map_err(anyhow::Error::msg)?;
                ensure!(status == expect, "{path}: {status} {answer:?}");
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed())
}

async fn bench(runs: usize, clients: usize) -> anyhow::Result<()> {
    let data = tempfile::Builder::new()
        .prefix("flowhost-bench-awaits-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let host = start_host(data.path(), runs).await?;
    let address = host.address;
    // Baseline: as many events on a topic no run awaits.
    let unawaited: Vec<String> = (0..runs)
        .map(|i| json!({"order_id": format!("o-{i}"), "amount": i}).to_string())
        .collect();
    let baseline = send_all(
        address,
        clients,
        "/v1/events/payment.other",
        unawaited,
        StatusCode::ACCEPTED,
    )
    .await?;

    let starts: Vec<String> = (0..runs)
        .map(|i| json!({"id": format!("settle-{i}"), "order_id": format!("o-{i}")}).to_string())
        .collect();
    let parking = send_all(
        address,
        clients,
        "/v1/workflows/settle/runs",
        starts,
        StatusCode::ACCEPTED,
    )
    .await?;
    // Every run parked before the first settlement.
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(&host, "running").await? < runs {
        ensure!(Instant::now() < deadline, "the runs did not all park");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // One settlement per order, shuffled by a fixed stride.
    let stride = 7919 % runs.max(1);
    let settlements: Vec<String> = (0..runs)
        .map(|n| (n * stride.max(1)) % runs)
        .map(|i| json!({"order_id": format!("o-{i}"), "amount": i}).to_string())
        .collect();
    let resumed_from = Instant::now();
    let publishing = send_all(
        address,
        clients,
        "/v1/events/payment.settled",
        settlements,
        StatusCode::ACCEPTED,
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while count(&host, "completed").await? < runs {
        ensure!(
            Instant::now() < deadline,
            "only {} of {runs} runs resumed",
            count(&host, "completed").await?
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resuming = resumed_from.elapsed();
    // Each with its own order's amount.
    for i in (0..runs).step_by((runs / 200).max(1)) {
        let run = host.get(&format!("/v1/runs/settle-{i}")).await?;
        ensure!(
            run["context"]["amount"] == json!(i),
            "settle-{i} took another order's event: {run}"
        );
    }
    println!("events to waiting runs: {runs} runs parked on payment.settled, matched by order id");
    println!(
        "  baseline: {runs} events no run awaits published in {:.2} s ({:.0}/s)",
        baseline.as_secs_f64(),
        runs as f64 / baseline.as_secs_f64()
    );
    println!("  parked {runs} runs in {:.2} s", parking.as_secs_f64());
    println!(
        "  {runs} settlements published in {:.2} s ({:.0}/s); every run resumed with its own in {:.2} s: {:.0} matched resumes/s",
        publishing.as_secs_f64(),
        runs as f64 / publishing.as_secs_f64(),
        resuming.as_secs_f64(),
        runs as f64 / resuming.as_secs_f64()
    );
    Ok(())
}

/// The host: one await of `payment.settled`, matched by order id; room for every run.
async fn start_host(dir: &std::path::Path, runs: usize) -> anyhow::Result<Flowhost> {
    let config = format!(
        r#"[server]
max-pending-runs = {pending}
[workflows.settle]
steps = [{{ name = "settled", await = {{ topic = "payment.settled", match = "event.data.order_id == context.order_id" }} }}]
"#,
        pending = runs.max(4096) * 2,
    );
    Flowhost::start(dir, &config).await
}

/// How many runs of `settle` are in `status`.
async fn count(host: &Flowhost, status: &str) -> anyhow::Result<usize> {
    Ok(host
        .runs(&format!("workflow=settle&status={status}"))
        .await?
        .len())
}
