//! The real `flowhost` binary (release build) in a process of its own, so that a benchmark
//! can read its memory and CPU apart from the load it generates.

#![allow(dead_code, reason = "each benchmark uses a part of it")]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::Value;

use crate::http::Connection;

/// A `flowhost serve` process on loopback, killed when dropped.
pub struct Flowhost {
    child: Child,
    /// Where it listens.
    pub address: SocketAddr,
}

impl Flowhost {
    /// Writes `config` to `dir/flowhost.toml` with `data-dir` set to `dir/data`, starts
    /// `flowhost serve` on a free port, and returns once it answers `/healthz`.
    pub async fn start(dir: &Path, config: &str) -> anyhow::Result<Self> {
        let file = dir.join("flowhost.toml");
        std::fs::write(
            &file,
            format!("data-dir = {:?}\n{config}", dir.join("data")),
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let address: SocketAddr = ([127, 0, 0, 1], port).into();
        let child = Command::new(env!("CARGO_BIN_EXE_flowhost"))
            .args(["serve", "--config"])
            .arg(&file)
            .args(["--listen", &address.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting flowhost")?;
        let host = Self { child, address };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let health = Connection::new(address)
                .send(Method::GET, "/healthz", Bytes::new())
                .await;
            if matches!(health, Ok((StatusCode::OK, _))) {
                return Ok(host);
            }
            ensure!(Instant::now() < deadline, "flowhost did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its resident memory (`VmRSS`), KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        rss_kib(self.pid())
    }

    /// The user and system CPU it used so far, in clock ticks (1/100 s on Linux).
    pub fn cpu_ticks(&self) -> anyhow::Result<u64> {
        cpu_ticks(self.pid())
    }

    /// `GET path`, which must answer 200, as JSON.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let (status, body) = Connection::new(self.address)
            .send(Method::GET, path, Bytes::new())
            .await
            .map_err(anyhow::Error::msg)?;
        ensure!(status == StatusCode::OK, "GET {path}: {status}");
        Ok(serde_json::from_slice(&body)?)
    }

    /// Every run `GET /v1/runs?<query>` lists, over all its pages.
    pub async fn runs(&self, query: &str) -> anyhow::Result<Vec<Value>> {
        let mut runs = Vec::new();
        let mut cursor = String::new();
        loop {
            let page = self
                .get(&format!("/v1/runs?{query}&limit=500{cursor}"))
                .await?;
            runs.extend(
                page["runs"]
                    .as_array()
                    .context("a page of runs")?
                    .iter()
                    .cloned(),
            );
            match page["next_cursor"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => return Ok(runs),
            }
        }
    }

    /// `kill -9`, and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Flowhost {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The user and system CPU process `pid` used so far, in clock ticks (1/100 s on Linux).
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // After the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("a stat line")?
        .1
        .split_whitespace()
        .collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

/// `VmRSS` of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmRSS without a value")?
        .parse()?)
}

/// The value of environment variable `name` (a benchmark's knob), or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}={value}: {e}")),
        Err(_) => Ok(default),
    }
}
