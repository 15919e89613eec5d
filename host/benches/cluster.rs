//! Several nodes on one PostgreSQL database: durable saga throughput and CPU per saga next
//! to one node on sled measured in the same run, then how long a `kill -9`ed node's runs
//! wait before another node takes them.
//!
//! ```sh
//! CARGO_TARGET_DIR=target cargo bench --bench cluster
//! BENCH_SECONDS=10 BENCH_ROUNDS=3 cargo bench --bench cluster      # longer, more rounds
//! BENCH_TAKEOVER_RUNS=0 cargo bench --bench cluster                # throughput only
//! BENCH_SETUPS=pg1 BENCH_ROUNDS=1 BENCH_SECONDS=20 BENCH_TAKEOVER_RUNS=0 \
//!     cargo bench --bench cluster                                  # one setup, e.g. under perf
//! ```
//!
//! Every node is a `flowhost serve` process of the release binary this bench is built with
//! (`CARGO_BIN_EXE_flowhost`), on loopback, with the configuration of
//! `examples/bench/flowhost.toml` (workflow `noop5`: five steps of the no-op plugin,
//! `max-concurrent-runs = 64`), telemetry as `serve` sets it up by default, `RUST_LOG=warn`,
//! and a data directory of its own (its compiled-code cache; sled's run store for the
//! sled node). Processes rather than [`flowhost::run`] in this process, as `sagas.rs` does:
//! three nodes in one process would share one tokio runtime and one allocator, which three
//! machines do not, and their CPU could not be told apart from the load generator's. Here
//! each node's CPU is its process's, read from `/proc/<pid>/stat`, and the load generator's
//! is this process's.
//!
//! **1. Throughput.** The load generator of `sagas.rs` (`common/load.rs`): `BENCH_CLIENTS`
//! (default 16) HTTP/1.1 keep-alive connections, each posting
//! `/v1/workflows/noop5/runs?wait=10s` back to back for a 1 s warm-up and then
//! `BENCH_SECONDS` (default 5) measured seconds; a request counts if it started in the
//! window, and succeeds if it answered 200 with a completed run. Three setups, each in
//! fresh processes (and, on PostgreSQL, a fresh scratch database on the server
//! `FLOWHOST_TEST_POSTGRES` names, default the machine's):
//!
//! - **sled, 1 node**: the baseline, the store `sagas.rs` measures;
//! - **PostgreSQL, 1 node**: `[store] kind = "postgres"`, `pool-size = BENCH_PG_POOL`
//!   (default 16);
//! - **PostgreSQL, 3 nodes**: three such nodes on one database (each its own `node-id`,
//!   port and pool), client `i` on node `i % 3`. A run is driven by the node that started
//!   it, so each node drives its clients' runs.
//!
//! The setups (`BENCH_SETUPS`, default `sled,pg1,pg3`) alternate `BENCH_ROUNDS` (default 2) times, so that a drift of the machine's
//! load hits each alike; the summary takes medians. Per measurement it prints sagas/s
//! (successful requests over the window), p50/p99/max latency (send to the answer's last
//! byte), errors, and **CPU per saga**: the user+system CPU over the window of the flowhost
//! processes, of PostgreSQL, and of this process (the load generator), each divided by the
//! sagas counted. PostgreSQL's is the sum over the backends connected to the scratch
//! database plus its shared processes (postmaster, WAL writer, checkpointer, background
//! writer, autovacuum), read from `/proc` before and after; backends of other databases
//! are left out, though their work reaches the shared processes. It also prints how busy
//! the whole machine was (`/proc/stat`, in cores): other work on it shows there. On
//! PostgreSQL, also the transactions committed and rows written per saga in the database,
//! from `pg_stat_database` (approximate: backends report them up to a second late). The issue's
//! target, at least 1,500 durable five-step sagas/s for one node on PostgreSQL, is checked
//! against the median.
//!
//! **2. Takeover.** Three nodes on a fresh database with `[cluster] lease = BENCH_LEASE`
//! (default 2 s) and `claim-batch = BENCH_CLAIM_BATCH` (default 100). `BENCH_TAKEOVER_RUNS`
//! (default 300) runs of workflow `held` (a no-op step, a durable sleep as long as the
//! lease, a no-op step) start on node 1, which then gets `kill -9` while they sleep. The
//! bench polls the database every 10 ms: for each run, the time from the kill until
//! `runs.owner` names another node (the claim, under a new epoch) and until the run
//! completed there (its timer, due by then, fires on the new owner). It prints p50/p99/max
//! of both, next to the lease, how long the victim's lease still had to run at the kill
//! (by PostgreSQL's clock, which leases are measured by), and the claims by node and by
//! 250 ms after the kill: the runs move at most `claim-batch` per node per pass, a pass
//! every third of the lease. Expected: takeover ≈ what remained of the lease (between
//! two thirds of it and all of it) plus up to a third of it until the next pass, plus a
//! third per further batch.
//!
//! What limits one node on PostgreSQL: PostgreSQL, not the node. `perf record -a` over a
//! `BENCH_SETUPS=pg1` run put half the machine's samples in `postgres` processes (a third
//! of them in the kernel: loopback sockets, WAL writes), a quarter in the node's tokio
//! workers, 2% in the load generator. With both cores busy, less PostgreSQL work per saga
//! is what raises the figure on this machine. A saga now costs about 5.3 committed
//! transactions: its creation, its end saved with its lifecycle event in one statement,
//! and its five journal entries written with other runs' ([`flowhost::store::postgres`]
//! batches them), the flushes and the relay's statements shared by many sagas; and
//! PostgreSQL plans each statement once per connection. (It was 11 before the relay
//! batched its statements, a `?wait` stopped reading the new run back, and the end's
//! event stopped being a statement of its own; 7.5 before the journal's batches. Planning
//! anew at each execution, PostgreSQL's custom plans, was a fifth of its backends' CPU.) What is
//! left is mostly executing them: `pg_stat_statements` puts the run's end (0.23 ms, nine
//! indexes of `runs` updated), its journal entries (0.2 ms) and its creation (0.16 ms)
//! first. To see that on a PostgreSQL of your own with `pg_stat_statements` loaded, point
//! `FLOWHOST_TEST_POSTGRES` at it.
//!
//! It fails (exit status 1) if a throughput measurement's errors exceed 1%, or a held run
//! is not taken over and completed within a minute after the kill.
//!
//! Caveats, printed too: the load generator, every node and PostgreSQL share this machine's
//! cores (two on the machine this was written on, with other builds running), so the
//! figures are lower bounds of what a node would do alone, and the ratios are the point.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use flowhost::store::postgres::ScratchDatabase;
use hyper::{Method, StatusCode};

#[path = "common/http.rs"]
mod http;
#[path = "common/load.rs"]
mod load;
#[path = "common/process.rs"]
mod process;
use http::Connection;
use load::{Report, Window, ms};
use process::{Flowhost, cpu_ticks, env_or};

/// Warm-up before each measurement: connections open, plugins instantiated, pools filled.
const WARM_UP: Duration = Duration::from_secs(1);
/// Share of errors above which the benchmark fails.
const MAX_ERROR_RATE: f64 = 0.01;
/// The issue's target: durable five-step sagas per second, one node on PostgreSQL.
const TARGET_RPS: f64 = 1_500.0;
/// Clock ticks per second of `/proc` CPU times (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;
/// How often the takeover measurement looks at the runs' owners.
const POLL: Duration = Duration::from_millis(10);
/// How long held runs may take to be taken over and complete after the kill.
const TAKEOVER_DEADLINE: Duration = Duration::from_secs(60);

fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("loadgen")
        .enable_all()
        .build()?;
    runtime.block_on(bench(&settings))
}

async fn bench(settings: &Settings) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").ok();
    let load = load.as_deref().and_then(|l| l.split_whitespace().next());
    println!(
        "cluster: durable noop5 sagas on one node on sled, one node on PostgreSQL and three nodes on one PostgreSQL database; then takeover after kill -9"
    );
    println!(
        "command: cargo bench --bench cluster  (BENCH_SETUPS={} BENCH_SECONDS={} BENCH_CLIENTS={} BENCH_ROUNDS={} BENCH_PG_POOL={} BENCH_TAKEOVER_RUNS={} BENCH_LEASE={} BENCH_CLAIM_BATCH={})",
        settings
            .setups
            .iter()
            .map(|s| s.key())
            .collect::<Vec<_>>()
            .join(","),
        settings.seconds.as_secs_f64(),
        settings.clients,
        settings.rounds,
        settings.pool,
        settings.takeover_runs,
        settings.lease,
        settings.claim_batch,
    );
    println!(
        "machine: {cores} cores (1-min load average {} before start), shared by the load generator (this process), the flowhost processes and PostgreSQL",
        load.unwrap_or("n/a")
    );
    println!(
        "nodes: `flowhost serve` processes of this build's release binary, examples/bench/flowhost.toml (noop5, max-concurrent-runs 64), telemetry on (serve's default), RUST_LOG=warn"
    );
    println!(
        "load: {} clients (hyper HTTP/1.1, keep-alive, back to back), {WARM_UP:?} warm-up, {:?} measured, loopback; with 3 nodes, client i on node i % 3",
        settings.clients, settings.seconds
    );
    println!();
    println!(
        "{:<22} {:>8} {:>10} {:>10} {:>10} {:>20} | {:>32} {:>8} | {:>7} {:>9}",
        "",
        "sagas/s",
        "p50",
        "p99",
        "max",
        "errors",
        "CPU/saga: flowhost  postgres  loadgen",
        "machine",
        "tx/saga",
        "rows/saga"
    );
    let mut measured: Vec<(Setup, Figures)> = Vec::new();
    for round in 1..=settings.rounds {
        for &setup in &settings.setups {
            let figures = measure(setup, settings)
                .await
                .with_context(|| format!("measuring {}", setup.name()))?;
            figures.print(&format!("{} #{round}", setup.name()));
            measured.push((setup, figures));
        }
    }
    let median = |setup: Setup, of: fn(&Figures) -> f64| {
        let mut values: Vec<f64> = measured
            .iter()
            .filter(|(s, _)| *s == setup)
            .map(|(_, f)| of(f))
            .collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    println!();
    println!(
        "{:<22} {:>8} {:>10} {:>10} | {:>13} {:>9} {:>9} {:>9} | {:>8}",
        "medians",
        "sagas/s",
        "p50",
        "p99",
        "CPU/saga: all",
        "flowhost",
        "postgres",
        "loadgen",
        "vs sled"
    );
    let measured_setup = |setup| settings.setups.contains(&setup);
    let sled_rps = measured_setup(Setup::Sled).then(|| median(Setup::Sled, |f| f.rps));
    for &setup in &settings.setups {
        let rps = median(setup, |f| f.rps);
        println!(
            "{:<22} {:>8.0} {:>7.3} ms {:>7.3} ms | {:>10.0} us {:>6.0} us {:>6.0} us {:>6.0} us | {:>8}",
            setup.name(),
            rps,
            median(setup, |f| f.p50_ms),
            median(setup, |f| f.p99_ms),
            median(setup, |f| f.flowhost_us + f.postgres_us + f.loadgen_us),
            median(setup, |f| f.flowhost_us),
            median(setup, |f| f.postgres_us),
            median(setup, |f| f.loadgen_us),
            sled_rps.map_or("-".into(), |sled| format!("{:.2}", rps / sled)),
        );
    }
    if measured_setup(Setup::Postgres1) && measured_setup(Setup::Postgres3) {
        let (one, three) = (
            median(Setup::Postgres1, |f| f.rps),
            median(Setup::Postgres3, |f| f.rps),
        );
        println!(
            "PostgreSQL, 3 nodes / 1 node: {:.2} in throughput, on the same cores",
            three / one
        );
    }
    if measured_setup(Setup::Postgres1) {
        let one = median(Setup::Postgres1, |f| f.rps);
        println!(
            "issue's target, >= {TARGET_RPS} durable five-step sagas/s for one node on PostgreSQL: {one:.0}: {}",
            if one >= TARGET_RPS { "met" } else { "NOT met" }
        );
    }
    println!(
        "caveat: one machine runs the nodes, PostgreSQL and the load generator; 'machine' is how many cores were busy (all processes, others' too)"
    );
    for (setup, figures) in &measured {
        ensure!(
            figures.error_rate <= MAX_ERROR_RATE,
            "{}: {:.2}% of requests failed",
            setup.name(),
            100.0 * figures.error_rate
        );
    }
    if settings.takeover_runs > 0 {
        println!();
        takeover(settings).await?;
    }
    Ok(())
}

/// A store and number of nodes measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    Sled,
    Postgres1,
    Postgres3,
}

impl Setup {
    /// By the names `BENCH_SETUPS` lists.
    fn parse(name: &str) -> anyhow::Result<Self> {
        Ok(match name.trim() {
            "sled" => Setup::Sled,
            "pg1" => Setup::Postgres1,
            "pg3" => Setup::Postgres3,
            other => bail!("BENCH_SETUPS: {other:?} is none of sled, pg1, pg3"),
        })
    }

    /// Its name in `BENCH_SETUPS`.
    fn key(self) -> &'static str {
        match self {
            Setup::Sled => "sled",
            Setup::Postgres1 => "pg1",
            Setup::Postgres3 => "pg3",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Setup::Sled => "sled, 1 node",
            Setup::Postgres1 => "PostgreSQL, 1 node",
            Setup::Postgres3 => "PostgreSQL, 3 nodes",
        }
    }

    fn nodes(self) -> usize {
        match self {
            Setup::Sled | Setup::Postgres1 => 1,
            Setup::Postgres3 => 3,
        }
    }
}

/// One measurement's figures.
struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    report: Report,
    error_rate: f64,
    /// CPU per saga of the flowhost processes, PostgreSQL and the load generator, µs.
    flowhost_us: f64,
    postgres_us: f64,
    loadgen_us: f64,
    /// Cores the whole machine kept busy over the window.
    machine_cores: f64,
    /// Per saga, on PostgreSQL: transactions committed and rows written (inserted, updated
    /// or deleted) in the database, as its statistics tell (which backends report up to a
    /// second late: approximate).
    commits: Option<f64>,
    rows: Option<f64>,
}

impl Figures {
    fn print(&self, name: &str) {
        println!(
            "{name:<22} {:>8.0} {:>10} {:>10} {:>10} {:>20} | {:>17.0} us {:>6.0} us {:>6.0} us {:>8.2} | {:>7} {:>9}",
            self.rps,
            ms(self.report.percentile(50.0)),
            ms(self.report.percentile(99.0)),
            ms(self.report.max()),
            self.report.errors_column(),
            self.flowhost_us,
            self.postgres_us,
            self.loadgen_us,
            self.machine_cores,
            self.commits.map_or("-".into(), |c| format!("{c:.1}")),
            self.rows.map_or("-".into(), |r| format!("{r:.1}")),
        );
        for sample in &self.report.samples {
            println!("{:<22} error: {sample}", "");
        }
    }
}

/// Starts `setup`'s nodes, drives them, and stops them.
async fn measure(setup: Setup, settings: &Settings) -> anyhow::Result<Figures> {
    let database = match setup {
        Setup::Sled => None,
        Setup::Postgres1 | Setup::Postgres3 => Some(ScratchDatabase::create().await),
    };
    let mut dirs = Vec::new();
    let mut nodes = Vec::new();
    for i in 1..=setup.nodes() {
        let dir = scratch_dir()?;
        let mut config = bench_config()?;
        if let Some(database) = &database {
            config.push_str(&postgres(database, settings.pool));
            config.push_str(&format!("\n[cluster]\nnode-id = \"node-{i}\"\n"));
        }
        nodes.push(Flowhost::start(dir.path(), &config).await?);
        dirs.push(dir);
    }
    let targets: Vec<SocketAddr> = nodes.iter().map(|n| n.address).collect();
    let pids: Vec<u32> = nodes.iter().map(Flowhost::pid).collect();
    let database_name = database.as_ref().map(|d| database_name(&d.url).to_owned());
    let stats = match &database {
        Some(database) => Some(sql(&database.url).await?),
        None => None,
    };
    let window = Window::after(WARM_UP, settings.seconds);
    let probe = tokio::spawn(async move {
        tokio::time::sleep_until(window.start.into()).await;
        let before = Cpu::sample(&pids, database_name.as_deref())?;
        let written_before = written(stats.as_ref()).await?;
        tokio::time::sleep_until(window.end.into()).await;
        let after = Cpu::sample(&pids, database_name.as_deref())?;
        let written_after = written(stats.as_ref()).await?;
        let written = written_after
            .zip(written_before)
            .map(|((c1, r1), (c0, r0))| (c1 - c0, r1 - r0));
        anyhow::Ok((after.since(&before), written))
    });
    let report = load::drive(&targets, settings.clients, window).await;
    let (cpu, written) = probe.await.context("the CPU probe panicked")??;
    drop(nodes);
    drop(database);
    let sagas = report.successes().max(1) as f64;
    let per_saga = |ticks: u64| ticks as f64 / TICKS_PER_SECOND / sagas * 1e6;
    Ok(Figures {
        rps: report.rps(),
        p50_ms: report.percentile(50.0).as_secs_f64() * 1e3,
        p99_ms: report.percentile(99.0).as_secs_f64() * 1e3,
        error_rate: report.error_rate(),
        flowhost_us: per_saga(cpu.flowhost),
        postgres_us: per_saga(cpu.postgres),
        loadgen_us: per_saga(cpu.loadgen),
        commits: written.map(|(commits, _)| commits as f64 / sagas),
        rows: written.map(|(_, rows)| rows as f64 / sagas),
        machine_cores: cpu.machine_busy as f64 / cpu.machine_total.max(1) as f64 * cpu.cores,
        report,
    })
}

/// CPU used so far, in clock ticks.
#[derive(Debug, Clone, Copy)]
struct Cpu {
    /// The flowhost processes.
    flowhost: u64,
    /// PostgreSQL: the backends of the database, and the shared processes.
    postgres: u64,
    /// This process: the load generator.
    loadgen: u64,
    /// The whole machine: busy and all ticks over every core, and the cores.
    machine_busy: u64,
    machine_total: u64,
    cores: f64,
}

impl Cpu {
    fn sample(flowhost: &[u32], database: Option<&str>) -> anyhow::Result<Self> {
        let mut ticks = 0;
        for &pid in flowhost {
            ticks += cpu_ticks(pid)?;
        }
        let (machine_busy, machine_total, cores) = machine()?;
        Ok(Self {
            flowhost: ticks,
            postgres: database.map_or(Ok(0), postgres_ticks)?,
            loadgen: cpu_ticks(std::process::id())?,
            machine_busy,
            machine_total,
            cores,
        })
    }

    fn since(&self, before: &Self) -> Self {
        Self {
            flowhost: self.flowhost.saturating_sub(before.flowhost),
            postgres: self.postgres.saturating_sub(before.postgres),
            loadgen: self.loadgen.saturating_sub(before.loadgen),
            machine_busy: self.machine_busy.saturating_sub(before.machine_busy),
            machine_total: self.machine_total.saturating_sub(before.machine_total),
            cores: self.cores,
        }
    }
}

/// CPU ticks of PostgreSQL's processes that work for `database`: its backends (whose
/// process title names the database) and the shared ones (postmaster, WAL writer,
/// checkpointer, ...), not the backends of other databases. A backend that exits between
/// two samples takes its ticks with it; the nodes' pools keep theirs open.
fn postgres_ticks(database: &str) -> anyhow::Result<u64> {
    let mut ticks = 0;
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim_end() != "postgres" {
            continue;
        }
        let title = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let title = String::from_utf8_lossy(&title);
        let words: Vec<&str> = title.split([' ', '\0']).collect();
        let ours = words.contains(&database);
        // A client backend's title ends with its client's address: `host(port)` or `[local]`.
        let backend = words
            .iter()
            .any(|w| w.starts_with('[') || (w.ends_with(')') && w.contains('(')));
        if ours || !backend {
            // Gone since the listing: nothing to count.
            ticks += cpu_ticks(pid).unwrap_or(0);
        }
    }
    Ok(ticks)
}

/// The machine's busy and total CPU ticks over all cores (`/proc/stat`), and its cores.
fn machine() -> anyhow::Result<(u64, u64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("an empty /proc/stat")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    // user nice system idle iowait irq softirq steal (guest times are inside user).
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks[3] + ticks[4];
    let cores = stat.lines().filter(|l| l.starts_with("cpu")).count() - 1;
    Ok((total - idle, total, cores as f64))
}

/// `examples/bench/flowhost.toml`, without its `data-dir` (each node gets its own), its
/// paths made absolute; `--listen` overrides its `server.listen`.
fn bench_config() -> anyhow::Result<String> {
    let root = repository_root()?;
    let example = std::fs::read_to_string(root.join("examples/bench/flowhost.toml"))?;
    let config = example
        .lines()
        .filter(|line| !line.starts_with("data-dir"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("../../", &format!("{}/", root.display()));
    // Built by the test artifacts' build script, as this bench is.
    ensure!(
        Path::new(flowhost_test_artifacts::NOOP).exists() && config.contains("noop.wasm"),
        "the no-op plugin is missing: {}",
        flowhost_test_artifacts::NOOP
    );
    Ok(config)
}

fn repository_root() -> anyhow::Result<PathBuf> {
    Ok(Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()?)
}

/// `[store]` on `database`.
fn postgres(database: &ScratchDatabase, pool: usize) -> String {
    format!(
        "\n[store]\nkind = \"postgres\"\nurl = {:?}\npool-size = {pool}\n",
        database.url
    )
}

/// The database's name: the last segment of its URL.
fn database_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// Transactions committed and rows written so far in the database `client` is connected
/// to, by its statistics; None without a database.
async fn written(client: Option<&tokio_postgres::Client>) -> anyhow::Result<Option<(i64, i64)>> {
    let Some(client) = client else {
        return Ok(None);
    };
    let row = client
        .query_one(
            "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted
             FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await?;
    Ok(Some((row.get(0), row.get(1))))
}

fn scratch_dir() -> anyhow::Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new()
        .prefix("flowhost-bench-cluster-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))?)
}

/// A client of `url`, to read the runs' owners.
async fn sql(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Three nodes, `settings.takeover_runs` runs asleep on node 1, node 1 `kill -9`ed: how
/// long each run waits for another node.
async fn takeover(settings: &Settings) -> anyhow::Result<()> {
    let lease = humantime::parse_duration(&settings.lease).context("BENCH_LEASE")?;
    let database = ScratchDatabase::create().await;
    let mut config = bench_config()?;
    config.push_str(&format!(
        r#"
[workflows.held]
steps = [
    {{ name = "a", plugin = "noop" }},
    {{ name = "nap", sleep = {nap:?} }},
    {{ name = "b", plugin = "noop" }},
]
"#,
        nap = settings.lease
    ));
    config.push_str(&postgres(&database, settings.pool));
    let mut dirs = Vec::new();
    let mut nodes = Vec::new();
    for i in 1..=3 {
        let dir = scratch_dir()?;
        let node = format!(
            "{config}\n[cluster]\nnode-id = \"node-{i}\"\nlease = {:?}\nclaim-batch = {}\n",
            settings.lease, settings.claim_batch
        );
        nodes.push(Flowhost::start(dir.path(), &node).await?);
        dirs.push(dir);
    }
    println!(
        "takeover: 3 nodes (lease {}, claim-batch {}), {} runs of `held` (noop, sleep {}, noop) started on node-1, then node-1 killed with SIGKILL",
        settings.lease, settings.claim_batch, settings.takeover_runs, settings.lease
    );

    // Start the runs on node 1, 16 at a time.
    let victim = nodes[0].address;
    let started = Instant::now();
    let starters: Vec<_> = (0..16)
        .map(|client| {
            let count = settings.takeover_runs;
            tokio::spawn(async move {
                let mut connection = Connection::new(victim);
                for i in (client..count).step_by(16) {
                    let body = Bytes::from(format!(r#"{{"i":{i}}}"#));
                    let (status, answer) = connection
                        .send(Method::POST, "/v1/workflows/held/runs", body)
                        .await
                        .map_err(anyhow::Error::msg)?;
                    ensure!(
                        status == StatusCode::ACCEPTED,
                        "starting a held run: {status} {}",
                        String::from_utf8_lossy(&answer)
                    );
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for starter in starters {
        starter.await??;
    }
    let client = sql(&database.url).await?;
    let owned: i64 = client
        .query_one(
            "SELECT count(*) FROM runs WHERE workflow = 'held' AND owner = 'node-1'
             AND status IN ('pending', 'running')",
            &[],
        )
        .await?
        .get(0);
    ensure!(
        owned as usize == settings.takeover_runs,
        "{owned} of {} held runs are node-1's and unfinished before the kill (started in {:?}; lengthen BENCH_LEASE?)",
        settings.takeover_runs,
        started.elapsed()
    );
    let now_ms: i64 = client
        .query_one("SELECT flowhost_now_ms()", &[])
        .await?
        .get(0);
    let expires_ms: i64 = client
        .query_one("SELECT expires_ms FROM nodes WHERE id = 'node-1'", &[])
        .await?
        .get(0);
    let killed = Instant::now();
    nodes[0].kill();
    let remaining = Duration::from_millis((expires_ms - now_ms).max(0) as u64);
    println!(
        "started and asleep on node-1 in {}; at the kill its lease had {} left (by PostgreSQL's clock)",
        ms(started.elapsed() - killed.elapsed()),
        ms(remaining)
    );

    // Poll the owners until every run is another node's and completed.
    let mut claimed: BTreeMap<String, (Duration, String)> = BTreeMap::new();
    let mut completed: BTreeMap<String, Duration> = BTreeMap::new();
    loop {
        let rows = client
            .query(
                "SELECT id, owner, status FROM runs WHERE workflow = 'held'",
                &[],
            )
            .await?;
        let at = killed.elapsed();
        for row in &rows {
            let (id, owner, status): (String, Option<String>, String) =
                (row.get(0), row.get(1), row.get(2));
            let owner = owner.unwrap_or_default();
            if owner != "node-1" && !claimed.contains_key(&id) {
                claimed.insert(id.clone(), (at, owner));
            }
            if status == "completed" {
                completed.entry(id).or_insert(at);
            }
        }
        if completed.len() == settings.takeover_runs && claimed.len() == settings.takeover_runs {
            break;
        }
        if at > TAKEOVER_DEADLINE {
            bail!(
                "{TAKEOVER_DEADLINE:?} after the kill: {} of {} runs taken over, {} completed",
                claimed.len(),
                settings.takeover_runs,
                completed.len()
            );
        }
        tokio::time::sleep(POLL).await;
    }
    let mut claim_times: Vec<Duration> = claimed.values().map(|(at, _)| *at).collect();
    claim_times.sort_unstable();
    let mut done_times: Vec<Duration> = completed.values().copied().collect();
    done_times.sort_unstable();
    let percentile = |times: &[Duration], p: f64| {
        let rank = (p / 100.0 * times.len() as f64).ceil() as usize;
        times[rank.clamp(1, times.len()) - 1]
    };
    let lease_ms = lease.as_secs_f64() * 1e3;
    for (what, times) in [
        ("claimed by another node", &claim_times),
        ("completed there", &done_times),
    ] {
        let (p50, p99, max) = (
            percentile(times, 50.0),
            percentile(times, 99.0),
            percentile(times, 100.0),
        );
        println!(
            "after the kill, {what:<24} p50 {} ({:.2} leases)  p99 {} ({:.2})  max {} ({:.2})",
            ms(p50),
            p50.as_secs_f64() * 1e3 / lease_ms,
            ms(p99),
            p99.as_secs_f64() * 1e3 / lease_ms,
            ms(max),
            max.as_secs_f64() * 1e3 / lease_ms,
        );
    }
    let first = claim_times[0];
    println!(
        "first claim {} after the kill: {} after the victim's lease ran out (a pass comes every {})",
        ms(first),
        ms(first.saturating_sub(remaining)),
        ms(lease / 3)
    );
    let mut by_node: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, owner) in claimed.values() {
        *by_node.entry(owner.as_str()).or_default() += 1;
    }
    let by_node: Vec<String> = by_node
        .iter()
        .map(|(node, count)| format!("{node} {count}"))
        .collect();
    println!("taken over by: {}", by_node.join(", "));
    let mut buckets: BTreeMap<u128, usize> = BTreeMap::new();
    for at in &claim_times {
        *buckets.entry(at.as_millis() / 250).or_default() += 1;
    }
    let buckets: Vec<String> = buckets
        .iter()
        .map(|(bucket, count)| format!("{}-{} ms: {count}", bucket * 250, bucket * 250 + 250))
        .collect();
    println!("claims by time after the kill: {}", buckets.join(", "));
    let journal_epochs: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT run_id FROM journal GROUP BY run_id
             HAVING count(DISTINCT epoch) > 1) moved",
            &[],
        )
        .await?
        .get(0);
    println!(
        "runs whose journal shows two owners (epochs): {journal_epochs} of {}",
        settings.takeover_runs
    );
    drop(nodes);
    drop(dirs);
    Ok(())
}

/// What the environment may override.
struct Settings {
    clients: usize,
    seconds: Duration,
    /// Measurements of each setup.
    rounds: usize,
    /// The setups measured, in order.
    setups: Vec<Setup>,
    /// `[store] pool-size` of each node.
    pool: usize,
    /// Runs asleep on the node that is killed; 0 skips the takeover.
    takeover_runs: usize,
    /// `[cluster] lease` of the takeover's nodes, as written in TOML.
    lease: String,
    /// `[cluster] claim-batch` of the takeover's nodes.
    claim_batch: usize,
}

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        let settings = Self {
            clients: env_or("BENCH_CLIENTS", 16)?,
            seconds: Duration::from_secs_f64(env_or("BENCH_SECONDS", 5.0)?),
            rounds: env_or("BENCH_ROUNDS", 2)?,
            setups: env_or("BENCH_SETUPS", "sled,pg1,pg3".to_owned())?
                .split(',')
                .map(Setup::parse)
                .collect::<anyhow::Result<_>>()?,
            pool: env_or("BENCH_PG_POOL", 16)?,
            takeover_runs: env_or("BENCH_TAKEOVER_RUNS", 300)?,
            lease: env_or("BENCH_LEASE", "2s".to_owned())?,
            claim_batch: env_or("BENCH_CLAIM_BATCH", 100)?,
        };
        ensure!(settings.clients > 0, "BENCH_CLIENTS must be at least 1");
        ensure!(settings.rounds > 0, "BENCH_ROUNDS must be at least 1");
        ensure!(!settings.setups.is_empty(), "BENCH_SETUPS names no setup");
        ensure!(settings.pool > 0, "BENCH_PG_POOL must be at least 1");
        ensure!(
            settings.seconds > Duration::ZERO && settings.seconds <= Duration::from_secs(600),
            "BENCH_SECONDS must be in (0, 600]"
        );
        humantime::parse_duration(&settings.lease)
            .with_context(|| format!("BENCH_LEASE={:?}", settings.lease))?;
        Ok(settings)
    }
}
