//! How long the web console takes to load its pages for a host holding 10,000 runs, next to
//! the same pages for a host holding 10, measured in the same run.
//!
//! `cargo bench --bench console` serves two hosts in this process on loopback, each on a
//! fresh sled store, with workflow `one` (a step of the no-op plugin) whose runs are indexed
//! by `order_id`; it makes `BENCH_RUNS` (default 10,000) runs on the first and 10 on the
//! second, all completed, over HTTP with 16 clients. Then `tests/console/load.mjs` opens each
//! page `BENCH_LOADS` times (default 10) in headless Chromium (Debian's `/usr/bin/chromium`,
//! driven by playwright-core from `target/console`, which the console test installs), each
//! time in a fresh browser context, and times from the navigation's start to the page showing
//! its data: the runs page's first rows, a run's steps, the dashboard's first figures.
//!
//! It prints each page's median and worst load on both hosts and their ratio. The console
//! asks for one page of runs at a time (50), so the ratio is the test of the indexes: a
//! listing that walked every run would grow with the store.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use hyper::Method;
use serde_json::Value;
use tokio::net::TcpListener;

#[path = "common/http.rs"]
mod http;
use http::Connection;

/// The allocator `flowhost serve` uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs of the small host, the baseline.
const FEW: usize = 10;

fn main() -> anyhow::Result<()> {
    let runs: usize = env_or("BENCH_RUNS", 10_000)?;
    let loads: usize = env_or("BENCH_LOADS", 10)?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()?;
    let playwright = root.join("target/console/node_modules/playwright-core");
    ensure!(
        playwright.exists() && Path::new("/usr/bin/chromium").exists(),
        "this bench needs Debian's chromium and playwright-core in target/console: run the console test first (cargo test --test all console)"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dirs = [tempdir()?, tempdir()?];
    let (many, few) = rt.block_on(async {
        let mut many = Host::start(dirs[0].path()).await?;
        let mut few = Host::start(dirs[1].path()).await?;
        let started = Instant::now();
        many.fill(runs).await?;
        let took = started.elapsed();
        few.fill(FEW).await?;
        many.last_run = many.newest_run().await?;
        few.last_run = few.newest_run().await?;
        println!("console: page loads in headless Chromium, a host with {runs} runs next to one with {FEW}");
        println!("command: cargo bench --bench console  (BENCH_RUNS={runs} BENCH_LOADS={loads})");
        println!(
            "made {runs} runs in {took:.1?} ({:.0} runs/s), each loaded {loads} times per page, fresh browser context each",
            runs as f64 / took.as_secs_f64()
        );
        anyhow::Ok((many, few))
    })?;
    let measure = |host: &Host| -> anyhow::Result<Value> {
        let settings = serde_json::json!({
            "url": format!("http://{}", host.address),
            "playwright_core": playwright,
            "run": host.last_run,
            "loads": loads,
        });
        let out = std::process::Command::new("node")
            .arg(root.join("tests/console/load.mjs"))
            .env("FLOWHOST_CONSOLE_LOAD", settings.to_string())
            .output()
            .context("node")?;
        if !out.status.success() {
            bail!("load.mjs failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        Ok(serde_json::from_str(stdout.lines().last().unwrap_or("{}"))?)
    };
    // The hosts serve on the runtime's threads while node drives Chromium.
    let (many_loads, few_loads) = (measure(&many)?, measure(&few)?);
    println!();
    println!(
        "{:<10} {:>16} {:>16} {:>16} {:>16} {:>8}",
        "page", "median (10,000)", "worst (10,000)", "median (10)", "worst (10)", "ratio"
    );
    for page in ["runs", "run", "dashboard"] {
        let (a, b) = (times(&many_loads[page]), times(&few_loads[page]));
        println!(
            "{page:<10} {:>13.0} ms {:>13.0} ms {:>13.0} ms {:>13.0} ms {:>8.2}",
            median(&a),
            a.last().copied().unwrap_or(f64::NAN),
            median(&b),
            b.last().copied().unwrap_or(f64::NAN),
            median(&a) / median(&b),
        );
    }
    rt.block_on(async {
        many.stop().await?;
        few.stop().await
    })?;
    Ok(())
}

fn times(value: &Value) -> Vec<f64> {
    let mut times: Vec<f64> = value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_f64)
        .collect();
    times.sort_by(f64::total_cmp);
    times
}

fn median(sorted: &[f64]) -> f64 {
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .ok()
            .with_context(|| format!("{name}={value:?}: not a number")),
        Err(_) => Ok(default),
    }
}

fn tempdir() -> anyhow::Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new()
        .prefix("flowhost-bench-console-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))?)
}

/// A host served in this process until [`Host::stop`].
struct Host {
    address: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// A run it holds, for the run page.
    last_run: String,
}

impl Host {
    async fn start(data: &Path) -> anyhow::Result<Self> {
        let toml = format!(
            r#"
data-dir = {data:?}
[server]
max-concurrent-runs = 64
[plugins.noop]
path = {noop:?}
[workflows.one]
search = ["order_id"]
steps = [{{ name = "only", plugin = "noop" }}]
"#,
            noop = flowhost_test_artifacts::NOOP,
        );
        let config = flowhost::Config::from_toml(&toml)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(flowhost::run(listener, config, async {
            let _ = stopped.await;
        }));
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut connection = Connection::new(address);
        loop {
            ensure!(!task.is_finished(), "the host stopped while starting");
            if let Ok((status, _)) = connection.send(Method::GET, "/healthz", Bytes::new()).await
                && status.is_success()
            {
                break;
            }
            ensure!(Instant::now() < deadline, "the host did not come up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self {
            address,
            stop,
            task,
            last_run: String::new(),
        })
    }

    /// Makes `count` completed runs, 16 clients at a time.
    async fn fill(&self, count: usize) -> anyhow::Result<()> {
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let clients: Vec<_> = (0..16)
            .map(|_| {
                let next = next.clone();
                let address = self.address;
                tokio::spawn(async move {
                    let mut connection = Connection::new(address);
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= count {
                            return anyhow::Ok(());
                        }
                        let body = format!(r#"{{"order_id":"o-{i}","amount_cents":{i}}}"#);
                        let (status, answer) = connection
                            .send(Method::POST, "/v1/workflows/one/runs?wait=10s", body.into())
                            .await
                            .map_err(anyhow::Error::msg)?;
                        ensure!(
                            status.is_success(),
                            "a start answered {status}: {}",
                            String::from_utf8_lossy(&answer)
                        );
                    }
                })
            })
            .collect();
        for client in clients {
            client.await??;
        }
        Ok(())
    }

    /// The newest run's id.
    async fn newest_run(&self) -> anyhow::Result<String> {
        let (_, body) = Connection::new(self.address)
            .send(Method::GET, "/v1/runs?limit=1", Bytes::new())
            .await
            .map_err(anyhow::Error::msg)?;
        let page: Value = serde_json::from_slice(&body)?;
        page["runs"][0]["id"]
            .as_str()
            .map(str::to_owned)
            .context("the host holds no run")
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await?
    }
}
