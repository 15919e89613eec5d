//! Parallel branches: five branches of a step that takes 100 ms end in about 100 ms, not 500.
//!
//! `cargo bench --bench parallel` starts the example's services in this process, every
//! answer delayed by `BENCH_STEP_MS` (default 100), and flowhost, the real binary (release
//! build), with three workflows of the test plugin `probe`, whose step `call#<n>` is one call
//! to the users service:
//!
//! - `one`: the step once, the baseline: what one step costs;
//! - `sequence`: five such steps one after the other;
//! - `fanned`: one parallel step of five branches, each the step once.
//!
//! It runs each `BENCH_RUNS` times (default 20), one run at a time
//! (`POST /v1/workflows/<name>/runs?wait=30s`), and prints the median and p90 of each,
//! with `fanned` over `one` (about 1 when the branches run at once) and `sequence` over
//! `fanned` (about 5). It exits 1 if a run does not complete.

use std::time::{Duration, Instant};

use anyhow::ensure;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

#[path = "common/http.rs"]
mod http;
#[path = "common/process.rs"]
mod process;
use http::Connection;
use process::{Flowhost, env_or};

const BRANCHES: usize = 5;

fn main() -> anyhow::Result<()> {
    let runs: usize = env_or("BENCH_RUNS", 20)?;
    let step_ms: u64 = env_or("BENCH_STEP_MS", 100)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench(runs, step_ms))
}

async fn bench(runs: usize, step_ms: u64) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let services = listener.local_addr()?;
    tokio::spawn(order_services::run(listener, std::future::pending()));
    let (status, _) = Connection::new(services)
        .send(
            Method::POST,
            "/admin/delay",
            Bytes::from(json!({ "ms": step_ms }).to_string()),
        )
        .await
        .map_err(anyhow::Error::msg)?;
    ensure!(status.is_success(), "the delay was not set: {status}");

    let data = tempfile::Builder::new()
        .prefix("flowhost-bench-parallel-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let host = Flowhost::start(data.path(), &config(services)).await?;
    let mut connection = Connection::new(host.address);
    let mut figures = Vec::new();
    for workflow in ["one", "sequence", "fanned"] {
        let path = format!("/v1/workflows/{workflow}/runs?wait=30s");
        let body = json!({ "service": "users", "method": "GET", "path": "/users/7" });
        let body = Bytes::from(body.to_string());
        // One run first, so that the plugin is compiled and an instance warm.
        let mut times = Vec::with_capacity(runs);
        for n in 0..=runs {
            let started = Instant::now();
            let (status, answer) = connection
                .send(Method::POST, &path, body.clone())
                .await
                .map_err(anyhow::Error::msg)?;
            let took = started.elapsed();
            let run: Value = serde_json::from_slice(&answer)?;
            ensure!(
                status == StatusCode::OK && run["status"] == "completed",
                "{workflow}: {status} {run}"
            );
            if n > 0 {
                times.push(took);
            }
        }
        times.sort();
        figures.push((
            workflow,
            times[times.len() / 2],
            times[times.len() * 9 / 10],
        ));
    }
    println!(
        "parallel branches: {BRANCHES} branches of a step whose service call takes {step_ms} ms, {runs} runs each, one at a time"
    );
    for (workflow, median, p90) in &figures {
        println!(
            "  {workflow:>8}: median {:>6.1} ms, p90 {:>6.1} ms",
            ms(*median),
            ms(*p90)
        );
    }
    let median = |name: &str| ms(figures.iter().find(|f| f.0 == name).expect("measured").1);
    println!(
        "  fanned / one = {:.2} (1 when the branches run at once); sequence / fanned = {:.2} (at most {BRANCHES})",
        median("fanned") / median("one"),
        median("sequence") / median("fanned"),
    );
    Ok(())
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The three workflows of the users service's one call.
fn config(services: std::net::SocketAddr) -> String {
    let step =
        |name: &str| format!(r#"{{ name = "{name}", plugin = "probe", compensate = false }}"#);
    let steps: Vec<String> = (1..=BRANCHES).map(|n| step(&format!("call#{n}"))).collect();
    let branches: Vec<String> = steps.iter().map(|s| format!("[{s}]")).collect();
    format!(
        r#"[services.users]
urls = ["http://{services}"]
retries = 0
[plugins.probe]
path = "{plugin}"
services = ["users"]
[workflows.one]
steps = [{one}]
[workflows.sequence]
steps = [{sequence}]
[workflows.fanned]
steps = [{{ name = "fan_out", parallel = [{branches}] }}]
"#,
        plugin = flowhost_test_artifacts::PROBE,
        one = step("call#1"),
        sequence = steps.join(", "),
        branches = branches.join(", "),
    )
}
