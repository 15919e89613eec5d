//! Durable timers: 10,000 sleeping runs.
//!
//! `cargo bench --bench timers` starts flowhost, the real binary (release build), in a
//! process of its own, with a workflow of one `sleep-until` step, and measures first the
//! idle host alone (the baseline: resident memory, CPU over a quiet window). Then it starts
//! `BENCH_RUNS` runs (default 10,000), each due at a time of its own spread over
//! `BENCH_SPREAD` seconds (default 20) that begins 15 s after the last start, and measures
//! the host again while every run sleeps: memory and CPU against the baseline. It kills the
//! host (`kill -9`) while they sleep, starts it again over the same data, and lets every run
//! fire: each must complete, once (one `started` and one `ok` entry in the journals of a
//! sample), and its lateness — when it ended against when it was due, from the run's own
//! `ended_at` — is reported as p50, p99 and max. It exits 1 if a run is missing or fired
//! twice.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::json;

#[path = "common/http.rs"]
mod http;
#[path = "common/process.rs"]
mod process;
use http::Connection;
use process::{Flowhost, env_or};

/// Connections that start the runs.
const STARTERS: usize = 16;
/// How long the quiet windows last in which CPU is measured.
const QUIET: Duration = Duration::from_secs(5);

fn main() -> anyhow::Result<()> {
    let runs: usize = env_or("BENCH_RUNS", 10_000)?;
    let spread: u64 = env_or("BENCH_SPREAD", 20)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench(runs, Duration::from_secs(spread)))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn bench(runs: usize, spread: Duration) -> anyhow::Result<()> {
    let data = tempfile::Builder::new()
        .prefix("flowhost-bench-timers-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let mut host = start_host(data.path(), runs).await?;
    let (idle_rss, idle_cpu) = quiet(&host).await?;

    // Every run is due after the last has started: the starts do not disturb the firings.
    let started = Instant::now();
    let first_due = now_ms() + 15_000 + runs as u64 / 2;
    let spread_ms = spread.as_millis() as u64;
    let due = move |i: usize| first_due + i as u64 * spread_ms / runs as u64;
    let mut starters = Vec::new();
    for s in 0..STARTERS {
        let address = host.address;
        let mine: Vec<usize> = (s..runs).step_by(STARTERS).collect();
        starters.push(tokio::spawn(async move {
            let mut connection = Connection::new(address);
            for i in mine {
                let at = chrono::DateTime::from_timestamp_millis(due(i) as i64).unwrap();
                let body = json!({"id": format!("nap-{i}"), "at": at.to_rfc3339()}).to_string();
                let (status, answer) = connection
                    .send(Method::POST, "/v1/workflows/nap/runs", Bytes::from(body))
                    .await
                    .map_err(anyhow::Error::msg)?;
                ensure!(
                    status == StatusCode::ACCEPTED,
                    "start {i}: {status} {answer:?}"
                );
            }
            anyhow::Ok(())
        }));
    }
    for starter in starters {
        starter.await??;
    }
    let start_time = started.elapsed();
    // Asleep: no task, no instance. Measured while they all sleep.
    let (asleep_rss, asleep_cpu) = quiet(&host).await?;
    ensure!(
        now_ms() < first_due,
        "the starts took too long: runs fired before the measurements"
    );
    host.kill();
    let restarted = Instant::now();
    let mut host = start_host(data.path(), runs).await?;
    let restart_time = restarted.elapsed();
    ensure!(
        now_ms() < first_due,
        "the restart took too long: runs fired before it was up"
    );

    // Wait for every run to end, then read when each ended.
    let deadline = Instant::now()
        + Duration::from_millis(first_due - now_ms())
        + spread
        + Duration::from_secs(60);
    let ended = loop {
        let ended = ended(&host).await?;
        if ended.len() == runs {
            break ended;
        }
        ensure!(
            Instant::now() < deadline,
            "only {} of {runs} runs ended",
            ended.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut lateness: Vec<i64> = ended
        .iter()
        .map(|(i, ended_ms)| *ended_ms as i64 - due(*i) as i64)
        .collect();
    lateness.sort_unstable();
    ensure!(lateness[0] >= 0, "a run fired {} ms early", -lateness[0]);
    // Once each: one start and one end in the journal, for a sample across the spread.
    for i in (0..runs).step_by((runs / 100).max(1)) {
        let journal = host.get(&format!("/v1/runs/nap-{i}/journal")).await?;
        let outcomes: Vec<&str> = journal["attempts"]
            .as_array()
            .context("a journal")?
            .iter()
            .map(|a| a["outcome"].as_str().unwrap_or_default())
            .collect();
        ensure!(outcomes == ["started", "ok"], "nap-{i}: {outcomes:?}");
    }
    host.kill();

    let percentile = |p: f64| lateness[((lateness.len() - 1) as f64 * p) as usize];
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "durable timers: {runs} runs asleep, due over {} s",
        spread.as_secs()
    );
    println!(
        "  started in {:.1} s ({:.0} starts/s)",
        start_time.as_secs_f64(),
        runs as f64 / start_time.as_secs_f64()
    );
    println!(
        "  RSS idle host {:.1} MiB, with {runs} asleep {:.1} MiB (+{:.1} MiB, {:.0} bytes a run)",
        mib(idle_rss),
        mib(asleep_rss),
        mib(asleep_rss.saturating_sub(idle_rss)),
        (asleep_rss.saturating_sub(idle_rss) * 1024) as f64 / runs as f64
    );
    println!(
        "  CPU over {} s: idle host {:.2}%, with {runs} asleep {:.2}%",
        QUIET.as_secs(),
        idle_cpu,
        asleep_cpu
    );
    println!(
        "  kill -9 while asleep, restart up in {:.2} s",
        restart_time.as_secs_f64()
    );
    println!(
        "  firing lateness after the restart: p50 {} ms, p99 {} ms, max {} ms; every run once (sampled journals)",
        percentile(0.5),
        percentile(0.99),
        lateness[lateness.len() - 1]
    );
    Ok(())
}

/// The host: one `sleep-until` step, room for every run.
async fn start_host(dir: &std::path::Path, runs: usize) -> anyhow::Result<Flowhost> {
    let config = format!(
        r#"[server]
max-pending-runs = {pending}
[workflows.nap]
steps = [{{ name = "nap", sleep-until = "context.at" }}]
"#,
        pending = runs.max(4096) * 2,
    );
    Flowhost::start(dir, &config).await
}

/// Resident memory (KiB) after a quiet window, and the CPU the host used in it (% of one
/// core).
async fn quiet(host: &Flowhost) -> anyhow::Result<(u64, f64)> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = host.cpu_ticks()?;
    tokio::time::sleep(QUIET).await;
    let used = host.cpu_ticks()? - before;
    // Clock ticks are 1/100 s on Linux.
    let percent = used as f64 / (QUIET.as_secs_f64() * 100.0) * 100.0;
    Ok((host.rss_kib()?, percent))
}

/// Each ended run's number and when it ended (ms since the epoch).
async fn ended(host: &Flowhost) -> anyhow::Result<Vec<(usize, u64)>> {
    host.runs("workflow=nap&status=completed")
        .await?
        .iter()
        .map(|run| {
            let i = run["id"]
                .as_str()
                .and_then(|id| id.strip_prefix("nap-"))
                .context("an id")?
                .parse()?;
            let at = chrono::DateTime::parse_from_rfc3339(
                run["ended_at"].as_str().context("ended_at")?,
            )?;
            Ok((i, at.timestamp_millis() as u64))
        })
        .collect()
}
