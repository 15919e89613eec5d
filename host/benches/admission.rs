//! Admission under overload: twenty times the host's capacity for 30 s.
//!
//! `cargo bench --bench admission` starts, on loopback:
//!
//! - a **slow service** in this process: `GET /slow` answers `{}` after 20 ms, so each run
//!   holds its slot for a service call's time, as real steps do;
//! - **flowhost**, the real binary (`serve`, release build) in a process of its own, so that
//!   its memory can be read alone, with `max-concurrent-runs = 8` and
//!   `max-pending-runs = 32`: a capacity of 40 runs in the host at once, and a workflow of
//!   one probe step that calls the slow service.
//!
//! Then `BENCH_CLIENTS` clients (default 800: 20 × the capacity), each with its own
//! keep-alive connection, start runs back to back for `BENCH_SECONDS` (default 30), without
//! `?wait` and without honouring `Retry-After` (the worst a client can do). Every answer must
//! be 202 (accepted) or 429 (refused); every accepted run must then complete; the host's
//! resident memory (`VmRSS`, sampled every 100 ms) must stay under [`RSS_BOUND_MIB`]. The
//! baseline is the same host's memory when idle, measured first in the same run. It prints
//! the answers by status, the throughput of accepted runs, how long the backlog took to
//! drain, and RSS idle, peak and at the end; it exits 1 if any check fails.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::Value;

#[path = "common/http.rs"]
mod http;
#[path = "common/process.rs"]
mod process;
use http::Connection;
use process::{Flowhost, env_or, rss_kib};

/// What the host may hold in memory under this load, at most.
const RSS_BOUND_MIB: u64 = 256;
/// Runs driven at once.
const SLOTS: usize = 8;
/// Runs waiting for a slot.
const PENDING: usize = 32;
/// How long a call to the slow service takes.
const SERVICE_DELAY: Duration = Duration::from_millis(20);
/// The run's context: the probe's `call` arguments.
const BODY: &str = r#"{"service":"slow","method":"get","path":"/slow"}"#;
/// The route the clients post to.
const PATH: &str = "/v1/workflows/slow/runs";

fn main() -> anyhow::Result<()> {
    let seconds: u64 = env_or("BENCH_SECONDS", 30)?;
    let clients: usize = env_or("BENCH_CLIENTS", 20 * (SLOTS + PENDING))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench(Duration::from_secs(seconds), clients))
}

async fn bench(seconds: Duration, clients: usize) -> anyhow::Result<()> {
    let service = slow_service().await?;
    let data = tempfile::Builder::new()
        .prefix("flowhost-bench-admission-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let mut host = start_host(data.path(), service).await?;
    // Warm: plugins compiled and loaded, pools and caches filled.
    for _ in 0..50 {
        let (status, _) = Connection::new(host.address)
            .send(
                Method::POST,
                &format!("{PATH}?wait=10s"),
                Bytes::from_static(BODY.as_bytes()),
            )
            .await
            .map_err(anyhow::Error::msg)?;
        ensure!(status == StatusCode::OK, "warm-up run: {status}");
    }
    let idle = host.rss_kib()?;

    let capacity = SLOTS + PENDING;
    println!("admission: a host at {}x its capacity", clients / capacity);
    println!(
        "command: cargo bench --bench admission  (BENCH_SECONDS={} BENCH_CLIENTS={clients})",
        seconds.as_secs()
    );
    println!(
        "host: the flowhost binary, max-concurrent-runs {SLOTS}, max-pending-runs {PENDING} (capacity {capacity}); workflow: one probe step calling a service that answers in {SERVICE_DELAY:?}"
    );
    println!(
        "load: {clients} clients, keep-alive, POST {PATH} back to back for {}s, Retry-After not honoured; loopback, one machine",
        seconds.as_secs()
    );
    println!();

    let peak = Arc::new(AtomicU64::new(idle));
    let sampler = {
        let (peak, pid) = (peak.clone(), host.pid());
        tokio::spawn(async move {
            loop {
                if let Ok(rss) = rss_kib(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let started = Instant::now();
    let end = started + seconds;
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(client(host.address, end)))
        .collect();
    let mut tally = Tally::default();
    for task in tasks {
        tally.add(task.await?);
    }
    let loaded = started.elapsed();

    // The backlog drains: every accepted run ends.
    let drain = Instant::now();
    while count(&host, "pending").await? + count(&host, "running").await? > 0 {
        ensure!(
            drain.elapsed() < Duration::from_secs(120),
            "the backlog did not drain"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained = drain.elapsed();
    sampler.abort();
    let completed: HashSet<String> = host
        .runs("status=completed")
        .await?
        .iter()
        .map(|run| run["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    let end_rss = host.rss_kib()?;
    let peak = peak.load(Ordering::Relaxed).max(end_rss);

    let total = tally.accepted.len() + tally.refused + tally.errors;
    println!("answers: {total} in {:.1}s", loaded.as_secs_f64());
    println!(
        "  202 accepted: {:>8}  ({:.0} runs/s)",
        tally.accepted.len(),
        tally.accepted.len() as f64 / loaded.as_secs_f64()
    );
    println!("  429 refused:  {:>8}", tally.refused);
    println!("  other:        {:>8}", tally.errors);
    for sample in &tally.samples {
        println!("    e.g. {sample}");
    }
    let missing = tally
        .accepted
        .iter()
        .filter(|id| !completed.contains(*id))
        .count();
    println!(
        "accepted runs completed: {} of {} (backlog drained in {:.2}s after the load)",
        tally.accepted.len() - missing,
        tally.accepted.len(),
        drained.as_secs_f64()
    );
    println!(
        "host RSS: idle {} MiB (the baseline), peak {} MiB, end {} MiB; bound {RSS_BOUND_MIB} MiB",
        idle / 1024,
        peak / 1024,
        end_rss / 1024
    );
    host.kill();

    ensure!(
        tally.errors == 0,
        "{} answers were neither 202 nor 429",
        tally.errors
    );
    ensure!(tally.refused > 0, "the overload never reached the bound");
    ensure!(missing == 0, "{missing} accepted runs did not complete");
    if peak / 1024 > RSS_BOUND_MIB {
        bail!(
            "the host's RSS reached {} MiB, over {RSS_BOUND_MIB} MiB",
            peak / 1024
        );
    }
    println!(
        "checks: every answer 2xx or 429, every accepted run completed, RSS under the bound: met"
    );
    Ok(())
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    accepted: Vec<String>,
    refused: usize,
    errors: usize,
    samples: Vec<String>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.accepted.extend(other.accepted);
        self.refused += other.refused;
        self.errors += other.errors;
        for sample in other.samples {
            if self.samples.len() < 5 && !self.samples.contains(&sample) {
                self.samples.push(sample);
            }
        }
    }
}

/// One client: starts back to back until `end`.
async fn client(address: SocketAddr, end: Instant) -> Tally {
    let mut connection = Connection::new(address);
    let mut tally = Tally::default();
    while Instant::now() < end {
        let answer = connection
            .send(Method::POST, PATH, Bytes::from_static(BODY.as_bytes()))
            .await;
        match answer {
            Ok((StatusCode::ACCEPTED, body)) => {
                let run: Value = serde_json::from_slice(&body).unwrap_or_default();
                tally
                    .accepted
                    .push(run["id"].as_str().unwrap_or_default().to_owned());
            }
            Ok((StatusCode::TOO_MANY_REQUESTS, _)) => tally.refused += 1,
            Ok((status, body)) => {
                tally.errors += 1;
                tally.samples.push(format!(
                    "{status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(160)])
                ));
            }
            Err(error) => {
                tally.errors += 1;
                tally.samples.push(error);
            }
        }
    }
    tally
}

/// `GET /slow`, answered after [`SERVICE_DELAY`].
async fn slow_service() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/slow",
        axum::routing::get(|| async {
            tokio::time::sleep(SERVICE_DELAY).await;
            "{}"
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(address)
}

/// The host: one probe step that calls the slow service, within the bounds above.
async fn start_host(dir: &std::path::Path, service: SocketAddr) -> anyhow::Result<Flowhost> {
    let config = format!(
        r#"[server]
max-concurrent-runs = {SLOTS}
max-pending-runs = {PENDING}
[services.slow]
urls = ["http://{service}"]
retries = 0
[plugins.probe]
path = {probe:?}
services = ["slow"]
[workflows.slow]
steps = [{{ name = "call", plugin = "probe" }}]
"#,
        probe = flowhost_test_artifacts::PROBE,
    );
    Flowhost::start(dir, &config).await
}

/// How many runs are in `status` (0, or at least 1).
async fn count(host: &Flowhost, status: &str) -> anyhow::Result<usize> {
    let page = host
        .get(&format!("/v1/runs?status={status}&limit=1"))
        .await?;
    Ok(page["runs"].as_array().map_or(0, Vec::len))
}
