//! Events per second from publish to handler done, per transport, next to a baseline
//! measured in the same run.
//!
//! `cargo bench --bench events` starts, in this process and on loopback:
//!
//! - a **sink**: an axum route `POST /notifications` that notes when each notification
//!   arrived (what the `notify` handler calls);
//! - **flowhost** ([`flowhost::run`]) once per transport: `embedded`; `nats` against the
//!   machine's JetStream server at 127.0.0.1:4222 with a stream of its own, deleted first;
//!   `rabbitmq` against the machine's broker at 127.0.0.1:5672, its queue deleted first;
//!   `redis` against the machine's server at 127.0.0.1:6379, its keys deleted first:
//!   the `notify` handler subscribed to `order.confirmed`, its `notifications` service the
//!   sink, durability on.
//!
//! `BENCH_CLIENTS` (default 16) publishers send `BENCH_EVENTS` (default 4,000) events in all
//! with `POST /v1/events/order.confirmed`, back to back; an event is done when its
//! notification reaches the sink. Events/s is events over the time from the first publish to
//! the last arrival; latency is per event, from its publish to its arrival (so it includes
//! the outbox, the flush, the relay, the transport and the handler). The baseline is the
//! same clients posting the same notifications to the sink directly: the floor HTTP and the
//! load generator set. Everything shares this machine's cores.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// The allocator `flowhost serve` uses (see `src/main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The machine's NATS server.
const NATS_URL: &str = "nats://127.0.0.1:4222";
/// The stream the bench uses.
const NATS_STREAM: &str = "FLOWHOST_BENCH";
/// The machine's RabbitMQ.
const RABBITMQ_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The exchange the bench uses; its queue is emptied first.
const RABBITMQ_EXCHANGE: &str = "flowhost_bench";
/// The machine's Redis.
const REDIS_URL: &str = "redis://127.0.0.1:6379";
/// The key prefix the bench uses; its keys are deleted first.
const REDIS_PREFIX: &str = "flowhost-bench";
/// Longest the bench waits for the last event.
const DRAIN: Duration = Duration::from_secs(120);

/// When each notification arrived, by order id.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

fn main() -> anyhow::Result<()> {
    let clients: usize = env("BENCH_CLIENTS", 16)?;
    let events: usize = env("BENCH_EVENTS", 4_000)?;
    ensure!(
        clients > 0 && events >= clients,
        "need events >= clients > 0"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let arrivals = Arrivals::default();
        let sink = sink(arrivals.clone()).await?;
        println!("events: publish to handler done, per transport, next to the sink posted directly");
        println!("command: cargo bench --bench events  (BENCH_CLIENTS={clients} BENCH_EVENTS={events})");
        println!(
            "machine: {} cores; publishers, flowhost, its transport client and the sink share them (one process)",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        println!();
        println!("{:<10} {:>10} {:>10} {:>10} {:>10}", "", "events/s", "p50", "p99", "max");

        let url = format!("http://{sink}/notifications");
        let baseline = drive(&url, "baseline", clients, events, &arrivals).await?;
        baseline.print("baseline");

        for (name, transport) in [
            ("embedded", String::new()),
            (
                "nats",
                format!(
                    "[events.transport]\nkind = \"nats\"\nurl = \"{NATS_URL}\"\nstream = \"{NATS_STREAM}\"\n"
                ),
            ),
            (
                "rabbitmq",
                format!(
                    "[events.transport]\nkind = \"rabbitmq\"\nurl = \"{RABBITMQ_URL}\"\nexchange = \"{RABBITMQ_EXCHANGE}\"\n"
                ),
            ),
            (
                "redis",
                format!(
                    "[events.transport]\nkind = \"redis\"\nurl = \"{REDIS_URL}\"\nprefix = \"{REDIS_PREFIX}\"\n"
                ),
            ),
        ] {
            if name == "nats" {
                let client = async_nats::connect(NATS_URL)
                    .await
                    .context("NATS on 127.0.0.1:4222")?;
                let _ = async_nats::jetstream::new(client)
                    .delete_stream(NATS_STREAM)
                    .await;
            }
            if name == "rabbitmq" {
                let connection = lapin::Connection::connect(RABBITMQ_URL, Default::default())
                    .await
                    .context("RabbitMQ on 127.0.0.1:5672")?;
                let channel = connection.create_channel().await?;
                let queue = format!("{RABBITMQ_EXCHANGE}.notify");
                let _ = channel
                    .queue_delete(queue.as_str().into(), Default::default())
                    .await;
            }
            if name == "redis" {
                let client = redis::Client::open(REDIS_URL)?;
                let mut connection = client
                    .get_multiplexed_async_connection()
                    .await
                    .context("Redis on 127.0.0.1:6379")?;
                let keys = [
                    format!("{REDIS_PREFIX}:notify"),
                    format!("{REDIS_PREFIX}:notify:delayed"),
                ];
                let _: () = redis::AsyncCommands::del(&mut connection, &keys).await?;
            }
            let data = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
            let (address, stop, task) = flowhost(data.path(), sink, &transport).await?;
            let url = format!("http://{address}/v1/events/order.confirmed");
            let report = drive(&url, name, clients, events, &arrivals).await?;
            report.print(name);
            let _ = stop.send(());
            task.await??;
        }
        Ok(())
    })
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .ok()
            .with_context(|| format!("{name}={value:?}: not a number")),
        Err(_) => Ok(default),
    }
}

/// The sink: notes each notification's arrival.
async fn sink(arrivals: Arrivals) -> anyhow::Result<SocketAddr> {
    let route = axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
        let arrivals = arrivals.clone();
        async move {
            if let Some(order_id) = body["order_id"].as_str() {
                arrivals
                    .lock()
                    .expect("arrivals lock")
                    .entry(order_id.to_owned())
                    .or_insert_with(Instant::now);
            }
            (axum::http::StatusCode::CREATED, "{}")
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let app = axum::Router::new().route("/notifications", route);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(address)
}

type Stop = tokio::sync::oneshot::Sender<()>;
type Task = tokio::task::JoinHandle<anyhow::Result<()>>;

/// flowhost with the `notify` handler on `order.confirmed`, notifying the sink.
async fn flowhost(
    data: &std::path::Path,
    sink: SocketAddr,
    transport: &str,
) -> anyhow::Result<(SocketAddr, Stop, Task)> {
    let toml = format!(
        r#"
data-dir = {data:?}

[services.notifications]
urls = ["http://{sink}"]

[plugins.notify]
path = {notify:?}
services = ["notifications"]

[subscriptions.notify]
topic = "order.confirmed"
handler = "notify"
concurrency = 32

{transport}
"#,
        notify = flowhost_test_artifacts::NOTIFY,
    );
    let config = flowhost::Config::from_toml(&toml)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(flowhost::run(listener, config, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        ensure!(!task.is_finished(), "flowhost stopped while starting");
        let health = client.get(format!("http://{address}/healthz")).send().await;
        if health.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        ensure!(Instant::now() < deadline, "flowhost did not start in 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((address, stop, task))
}

/// One side's figures.
struct Report {
    events: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Report {
    fn print(&self, name: &str) {
        let at = |p: f64| {
            let rank = (p / 100.0 * self.latencies.len() as f64).ceil() as usize;
            self.latencies[rank.clamp(1, self.latencies.len()) - 1]
        };
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
        println!(
            "{name:<10} {:>10.0} {:>10} {:>10} {:>10}",
            self.events as f64 / self.elapsed.as_secs_f64(),
            ms(at(50.0)),
            ms(at(99.0)),
            ms(*self.latencies.last().expect("events were measured")),
        );
    }
}

/// Posts `events` notifications-to-be to `url` from `clients` publishers (order ids
/// `<run>-<n>`), then waits until each has arrived at the sink.
async fn drive(
    url: &str,
    run: &str,
    clients: usize,
    events: usize,
    arrivals: &Arrivals,
) -> anyhow::Result<Report> {
    let client = reqwest::Client::new();
    let start = Instant::now();
    let publishers: Vec<_> = (0..clients)
        .map(|c| {
            let (client, url, run) = (client.clone(), url.to_owned(), run.to_owned());
            tokio::spawn(async move {
                let mut sent = Vec::new();
                for n in (c..events).step_by(clients) {
                    let order_id = format!("{run}-{n}");
                    let body = json!({
                        "order_id": order_id, "channel": "bench", "event_id": n.to_string(),
                        "topic": "order.confirmed",
                    });
                    let at = Instant::now();
                    let answer = client.post(&url).json(&body).send().await?;
                    ensure!(answer.status().is_success(), "{url}: {}", answer.status());
                    sent.push((order_id, at));
                }
                anyhow::Ok(sent)
            })
        })
        .collect();
    let mut sent = Vec::with_capacity(events);
    for publisher in publishers {
        sent.extend(publisher.await??);
    }
    let deadline = Instant::now() + DRAIN;
    loop {
        let arrived = {
            let arrivals = arrivals.lock().expect("arrivals lock");
            sent.iter()
                .filter(|(id, _)| arrivals.contains_key(id))
                .count()
        };
        if arrived == events {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "{run}: {arrived} of {events} events arrived in {DRAIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let arrivals = arrivals.lock().expect("arrivals lock");
    let mut latencies: Vec<Duration> = sent
        .iter()
        .map(|(id, at)| arrivals[id].duration_since(*at))
        .collect();
    latencies.sort_unstable();
    let last = sent
        .iter()
        .map(|(id, _)| arrivals[id])
        .max()
        .expect("events were sent");
    Ok(Report {
        events,
        elapsed: last.duration_since(start),
        latencies,
    })
}
