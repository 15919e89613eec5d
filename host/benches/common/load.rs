//! The load generator of the saga benchmarks (`sagas.rs`, `cluster.rs`): clients sending
//! `noop5` runs back to back over HTTP/1.1 keep-alive connections ([`Connection`]), counting
//! those that started in a measured window.

#![allow(dead_code, reason = "each benchmark uses a part of it")]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::Deserialize;

use crate::http::Connection;

/// The route the clients post to, and the query flowhost honours: the answer is the
/// finished run.
pub const PATH: &str = "/v1/workflows/noop5/runs?wait=10s";
/// The run's context: small, like a real request's.
pub const REQUEST_BODY: &str = r#"{"order_id":"o-1","customer":"c-42","amount_cents":1999}"#;

/// When a measured window opens (after the warm-up) and closes.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Requests sent from here on count.
    pub start: Instant,
    /// No request is sent from here on.
    pub end: Instant,
}

impl Window {
    /// `warm_up` from now, then `measured` long.
    pub fn after(warm_up: Duration, measured: Duration) -> Self {
        let start = Instant::now() + warm_up;
        Self {
            start,
            end: start + measured,
        }
    }
}

/// What one client saw in the measured window.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: usize,
    /// A few distinct errors, to show.
    samples: Vec<String>,
    /// When the last counted answer arrived.
    last: Option<Instant>,
}

/// Drives the servers at `targets` with `clients` clients until `window` ends, client `i`
/// on `targets[i % targets.len()]`; those requests that started in the window count.
pub async fn drive(targets: &[SocketAddr], clients: usize, window: Window) -> Report {
    assert!(!targets.is_empty(), "a drive needs a server");
    let clients: Vec<_> = (0..clients)
        .map(|i| tokio::spawn(client(targets[i % targets.len()], window)))
        .collect();
    let mut report = Report {
        window: Some(window.start),
        ..Report::default()
    };
    for client in clients {
        let tally = client.await.expect("a client panicked");
        report.latencies.extend(tally.latencies);
        report.errors += tally.errors;
        for sample in tally.samples {
            if report.samples.len() < 5 && !report.samples.contains(&sample) {
                report.samples.push(sample);
            }
        }
        report.last = report.last.max(tally.last);
    }
    report.latencies.sort_unstable();
    report
}

/// One client: requests back to back on one keep-alive connection until the window ends;
/// those that started in it count.
async fn client(address: SocketAddr, window: Window) -> Tally {
    let mut connection = Connection::new(address);
    let body = Bytes::from_static(REQUEST_BODY.as_bytes());
    let mut tally = Tally::default();
    loop {
        let sent = Instant::now();
        if sent >= window.end {
            return tally;
        }
        let outcome = request(&mut connection, body.clone()).await;
        let answered = Instant::now();
        if sent < window.start {
            continue;
        }
        tally.latencies.push(answered - sent);
        tally.last = Some(answered);
        if let Err(error) = outcome {
            tally.errors += 1;
            if tally.samples.len() < 5 && !tally.samples.contains(&error) {
                tally.samples.push(error);
            }
        }
    }
}

/// One run; an error unless the answer is 200 with a completed run.
async fn request(connection: &mut Connection, body: Bytes) -> Result<(), String> {
    let (status, body) = connection.send(Method::POST, PATH, body).await?;
    if status != StatusCode::OK {
        return Err(format!("status {status}"));
    }
    if !completed(&body) {
        let head = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
        return Err(format!("not completed: {head}"));
    }
    Ok(())
}

/// Whether an answer's body is a run that completed.
pub fn completed(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        status: &'a str,
    }
    serde_json::from_slice::<Answer>(body).is_ok_and(|a| a.status == "completed")
}

/// What the clients of one drive saw.
#[derive(Default)]
pub struct Report {
    /// Every counted request's latency, sorted.
    pub latencies: Vec<Duration>,
    /// Counted requests that failed.
    pub errors: usize,
    /// A few distinct errors, to show.
    pub samples: Vec<String>,
    window: Option<Instant>,
    last: Option<Instant>,
}

impl Report {
    /// Successful requests per second over the measured window: from its start to the last
    /// counted answer.
    pub fn rps(&self) -> f64 {
        let elapsed = match (self.window, self.last) {
            (Some(window), Some(last)) => last.duration_since(window).as_secs_f64(),
            _ => return 0.0,
        };
        self.successes() as f64 / elapsed
    }

    /// Counted requests that succeeded.
    pub fn successes(&self) -> usize {
        self.latencies.len() - self.errors
    }

    /// Nearest-rank percentile `p` of the latencies.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = (p / 100.0 * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }

    /// The longest latency.
    pub fn max(&self) -> Duration {
        self.latencies.last().copied().unwrap_or_default()
    }

    /// Failed requests over counted requests.
    pub fn error_rate(&self) -> f64 {
        self.errors as f64 / self.latencies.len().max(1) as f64
    }

    /// `errors / requests (rate%)`.
    pub fn errors_column(&self) -> String {
        format!(
            "{} / {} ({:.2}%)",
            self.errors,
            self.latencies.len(),
            100.0 * self.error_rate()
        )
    }

    /// Fails if nothing was measured or more than `max_error_rate` of the requests failed.
    pub fn check(&self, name: &str, max_error_rate: f64) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.latencies.is_empty(),
            "{name}: no request completed in the measured window"
        );
        anyhow::ensure!(
            self.error_rate() <= max_error_rate,
            "{name}: {} of {} requests failed ({:.2}% > {:.0}%)",
            self.errors,
            self.latencies.len(),
            100.0 * self.error_rate(),
            100.0 * max_error_rate
        );
        Ok(())
    }
}

/// `d` in milliseconds, three decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}
