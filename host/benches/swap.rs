//! Zero-drop hot swap: runs started under load while a plugin is swapped 20 times.
//!
//! `cargo bench --bench swap` starts [`flowhost::run`] in this process on loopback, with
//! workflow `w` (three steps of the test plugin `marked`, which answers each step with its
//! version's mark, `v1` or `v2`) and a fresh data directory under `CARGO_TARGET_TMPDIR`.
//! `BENCH_CLIENTS` (default 16) clients start runs back to back
//! (`POST /v1/workflows/w/runs?wait=10s`, reqwest, keep-alive):
//!
//! 1. **baseline**: for `BENCH_SECONDS` (default 3) with no swap;
//! 2. **swapping**: while an admin client pushes `BENCH_SWAPS` (default 20) new versions
//!    (`PUT /v1/plugins/marked`, each a new component: `marked-v2` and `marked-v1` in turn,
//!    with a custom section numbering it, so that every swap uploads, validates, compiles
//!    and stores a version the host has never seen), one every `BENCH_SWAP_EVERY` (default
//!    150 ms).
//!
//! 3. **watch**: `BENCH_WATCHES` (default 5) times, a new variant of the component is
//!    written to the configured file (a new file renamed over it, as a build does), and the
//!    time until `GET /v1/plugins/marked` shows it current is measured (polled every 5 ms):
//!    the local development loop, which should take under a second.
//!
//! A request fails unless it answers 200 with the run `completed` and every step's mark
//! that of the version the run is pinned to (`plugins.marked` in the answer). For each swap
//! it reports how long the `PUT` took, and, relative to the moment the `PUT` answered: the
//! latest start of a request whose run got an older version (at or below 0 ms means every
//! run started after the answer used the new version), and when the first answer on the new
//! version arrived. It exits with status 1 if any request failed or any run started more
//! than 100 ms after a `PUT` answered got an older version.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

/// The allocator `flowhost serve` uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TOKEN: &str = "bench-admin-token-0123456789";
/// How late after a `PUT` answered a run may still get the old version: the issue's bound.
const SWAP_BOUND: Duration = Duration::from_millis(100);

/// One request's record.
struct Sample {
    started: Instant,
    answered: Instant,
    /// The digest the run is pinned to; none for a failed request.
    digest: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let env = |name: &str, default: u64| -> anyhow::Result<u64> {
        std::env::var(name)
            .map_or(Ok(default), |v| v.parse())
            .with_context(|| format!("{name} must be a whole number"))
    };
    let clients = env("BENCH_CLIENTS", 16)? as usize;
    let seconds = Duration::from_secs(env("BENCH_SECONDS", 3)?);
    let swaps = env("BENCH_SWAPS", 20)? as u32;
    let every = Duration::from_millis(env("BENCH_SWAP_EVERY", 150)?);
    let watches = env("BENCH_WATCHES", 5)? as u32;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let data = tempfile::Builder::new()
        .prefix("flowhost-bench-swap-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    runtime.block_on(async move {
        let v1 = std::fs::read(flowhost_test_artifacts::MARKED_V1)?;
        let v2 = std::fs::read(flowhost_test_artifacts::MARKED_V2)?;
        let file = data.path().join("plugin/marked.wasm");
        std::fs::create_dir_all(data.path().join("plugin"))?;
        std::fs::write(&file, &v1)?;
        let url = start(data.path(), &file).await?;
        // Mark by digest: v1 and every variant of it mark `v1`.
        let marks = Arc::new(std::sync::Mutex::new(vec![(digest(&v1), "v1")]));
        println!("swap: runs started under load while plugin `marked` is swapped");
        println!(
            "command: cargo bench --bench swap  (BENCH_CLIENTS={clients} BENCH_SECONDS={} BENCH_SWAPS={swaps} BENCH_SWAP_EVERY={})",
            seconds.as_secs(),
            every.as_millis()
        );
        println!(
            "load: {clients} clients starting runs of a 3-step workflow back to back (POST ?wait=10s), loopback, one process, {} cores",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        println!();

        let baseline = drive(&url, clients, marks.clone(), async {
            tokio::time::sleep(seconds).await;
            Ok(())
        })
        .await?;
        let admin = reqwest::Client::new();
        let swapping = drive(&url, clients, marks.clone(), async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut answered = Vec::new();
            for n in 0..swaps {
                let (base, mark) = if n % 2 == 0 { (&v2, "v2") } else { (&v1, "v1") };
                let wasm = variant(base, n);
                let new = digest(&wasm);
                marks.lock().unwrap().push((new.clone(), mark));
                let sent = Instant::now();
                let response = admin
                    .put(format!("{url}/v1/plugins/marked?version=swap-{n}"))
                    .bearer_auth(TOKEN)
                    .body(wasm)
                    .send()
                    .await?;
                let status = response.status();
                let at = Instant::now();
                ensure!(status == 201, "swap {n}: {status}: {}", response.text().await?);
                answered.push((new, sent, at));
                tokio::time::sleep(every).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            Ok(answered)
        })
        .await?;

        report("baseline", &baseline.0, baseline.2);
        report("swapping", &swapping.0, swapping.2);
        println!(
            "throughput while swapping / baseline: {:.2}",
            rate(&swapping.0, swapping.2) / rate(&baseline.0, baseline.2)
        );
        println!();
        let worst = swap_report(&swapping.0, &swapping.1);
        println!();
        let watch = watch_report(&url, &file, &v1, watches).await?;
        let failures = baseline.0.iter().chain(&swapping.0).filter(|s| s.digest.is_none()).count();
        println!();
        println!(
            "failed requests: {failures} of {}",
            baseline.0.len() + swapping.0.len()
        );
        ensure!(failures == 0, "{failures} requests failed");
        ensure!(
            watch <= Duration::from_secs(1),
            "a rebuilt file took {watch:?} to go live"
        );
        ensure!(
            worst <= SWAP_BOUND.as_secs_f64() * 1000.0,
            "a run started {worst:.1} ms after a PUT answered got an older version"
        );
        Ok(())
    })
}

/// Starts the host on a free port; its base URL.
async fn start(data: &std::path::Path, file: &std::path::Path) -> anyhow::Result<String> {
    let toml = format!(
        r#"data-dir = {data:?}
admin-token = "{TOKEN}"
[registry]
keep-versions = 50
[server]
max-concurrent-runs = 64
[plugins.marked]
path = {:?}
[workflows.w]
steps = [{{ name = "a", plugin = "marked" }}, {{ name = "b", plugin = "marked" }}, {{ name = "c", plugin = "marked" }}]
"#,
        file
    );
    let config = flowhost::Config::from_toml(&toml)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        if let Err(e) = flowhost::run(listener, config, std::future::pending()).await {
            eprintln!("flowhost stopped: {e:#}");
        }
    });
    let client = reqwest::Client::new();
    for _ in 0..600 {
        if client.get(format!("{url}/healthz")).send().await.is_ok() {
            return Ok(url);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("flowhost did not come up")
}

/// Runs `clients` clients until `admin` is done; the samples, what `admin` returned and
/// how long the clients ran.
async fn drive<T>(
    url: &str,
    clients: usize,
    marks: Arc<std::sync::Mutex<Vec<(String, &'static str)>>>,
    admin: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(Vec<Sample>, T, Duration)> {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let began = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (url, samples, stop, marks) =
            (url.to_owned(), samples.clone(), stop.clone(), marks.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut mine = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                let answer = client
                    .post(format!("{url}/v1/workflows/w/runs?wait=10s"))
                    .json(&json!({ "order_id": "o-1" }))
                    .send()
                    .await;
                let run: Option<Value> = match answer {
                    Ok(response) if response.status() == 200 => response.json().await.ok(),
                    _ => None,
                };
                let digest = run.and_then(|run| verified(&run, &marks.lock().unwrap()));
                mine.push(Sample {
                    started,
                    answered: Instant::now(),
                    digest,
                });
            }
            samples.lock().await.extend(mine);
        }));
    }
    let admin = admin.await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in tasks {
        task.await?;
    }
    let took = began.elapsed();
    let samples = std::mem::take(&mut *samples.lock().await);
    Ok((samples, admin?, took))
}

/// The digest a completed run is pinned to, if every step's mark is that version's.
fn verified(run: &Value, marks: &[(String, &str)]) -> Option<String> {
    let digest = run["plugins"]["marked"].as_str()?;
    let mark = marks.iter().find(|(d, _)| d == digest)?.1;
    let ok =
        run["status"] == "completed" && ["a", "b", "c"].iter().all(|s| run["context"][s] == mark);
    ok.then(|| digest.to_owned())
}

fn rate(samples: &[Sample], took: Duration) -> f64 {
    samples.len() as f64 / took.as_secs_f64()
}

fn report(name: &str, samples: &[Sample], took: Duration) {
    if samples.is_empty() {
        println!("{name:<10} no runs");
        return;
    }
    let mut latencies: Vec<Duration> = samples.iter().map(|s| s.answered - s.started).collect();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!(
        "{name:<10} {:>6} runs in {:>5.2} s = {:>7.0} runs/s   p50 {:>7.2?}   p99 {:>7.2?}   max {:>7.2?}",
        samples.len(),
        took.as_secs_f64(),
        rate(samples, took),
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

/// Per swap: how long the PUT took, the latest start of a run on an older version and the
/// first answer on the new one, both relative to the PUT's answer. Returns the worst
/// latest-start, in ms.
fn swap_report(samples: &[Sample], swaps: &[(String, Instant, Instant)]) -> f64 {
    let ms = |later: Instant, earlier: Instant| {
        if later >= earlier {
            (later - earlier).as_secs_f64() * 1000.0
        } else {
            -((earlier - later).as_secs_f64() * 1000.0)
        }
    };
    println!(
        "{:<6} {:>10} {:>26} {:>26}",
        "swap", "PUT took", "last start on older (ms)", "first answer on new (ms)"
    );
    let mut worst = f64::MIN;
    let (mut puts, mut firsts) = (Vec::new(), Vec::new());
    for (n, (digest, sent, answered)) in swaps.iter().enumerate() {
        // Older: any version but this one and those pushed after it.
        let this_or_later: Vec<&String> = swaps[n..].iter().map(|(d, _, _)| d).collect();
        let last_old = samples
            .iter()
            .filter(|s| {
                s.digest
                    .as_ref()
                    .is_some_and(|d| !this_or_later.contains(&d))
            })
            .map(|s| ms(s.started, *answered))
            .fold(f64::MIN, f64::max);
        let first_new = samples
            .iter()
            .filter(|s| s.digest.as_ref() == Some(digest))
            .map(|s| ms(s.answered, *answered))
            .fold(f64::MAX, f64::min);
        worst = worst.max(last_old);
        puts.push((*answered - *sent).as_secs_f64() * 1000.0);
        firsts.push(first_new);
        println!(
            "{n:<6} {:>8.1}ms {:>26.1} {:>26.1}",
            (*answered - *sent).as_secs_f64() * 1000.0,
            last_old,
            first_new
        );
    }
    let max = |v: &[f64]| v.iter().copied().fold(f64::MIN, f64::max);
    println!(
        "PUT max {:.1} ms; latest start of a run on an older version after a PUT answered: {:.1} ms (bound {} ms); first answer on the new version: max {:.1} ms after the PUT answered",
        max(&puts),
        worst,
        SWAP_BOUND.as_millis(),
        max(&firsts)
    );
    worst
}

/// Writes `count` new variants of `wasm` to `file`, each a new file renamed over it, and
/// measures how long each takes to become current. Returns the longest.
async fn watch_report(
    url: &str,
    file: &std::path::Path,
    wasm: &[u8],
    count: u32,
) -> anyhow::Result<Duration> {
    let client = reqwest::Client::new();
    let mut took = Vec::new();
    for n in 0..count {
        let wasm = variant(wasm, 1000 + n);
        let expected = digest(&wasm);
        let tmp = file.with_extension("wasm.tmp");
        std::fs::write(&tmp, &wasm)?;
        let written = Instant::now();
        std::fs::rename(&tmp, file)?;
        loop {
            let plugin: Value = client
                .get(format!("{url}/v1/plugins/marked"))
                .bearer_auth(TOKEN)
                .send()
                .await?
                .json()
                .await?;
            if plugin["current"] == expected.as_str() {
                break;
            }
            ensure!(
                written.elapsed() < Duration::from_secs(30),
                "rebuilt file {n} never went live"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        took.push(written.elapsed());
        // Runs see it too.
        let run: Value = client
            .post(format!("{url}/v1/workflows/w/runs?wait=10s"))
            .json(&json!({}))
            .send()
            .await?
            .json()
            .await?;
        ensure!(run["plugins"]["marked"] == expected.as_str(), "{run}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let max = took.iter().copied().max().unwrap_or_default();
    println!(
        "watch: a rebuilt file went live in {} (max {max:.1?}; includes validating and compiling the new version)",
        took.iter()
            .map(|t| format!("{t:.1?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(max)
}

fn digest(wasm: &[u8]) -> String {
    hex::encode(Sha256::digest(wasm))
}

/// `wasm` with a custom section numbering it: the same code under a new digest.
fn variant(wasm: &[u8], n: u32) -> Vec<u8> {
    flowhost_test_artifacts::with_custom_section(wasm, &n.to_le_bytes())
}
