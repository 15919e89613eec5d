//! Service discovery: a service's instances read from a registry and kept current.
//!
//! Services move: instances come and go with deploys, autoscaling and failures, and a list
//! written into the configuration is stale by the next deploy. A service whose
//! configuration names a registry (`discovery = { consul = ... }` or
//! `discovery = { dns-srv = ... }`) gets one task, the watcher, that reads the registry and
//! replaces the service's [`Instances`] whenever the answer changes. Calls never wait for
//! the registry: they take the set as it was last read (only the very first calls after
//! start wait, up to their timeout, for the first read).
//!
//! - [`consul`]: Consul's health API, instances whose checks pass, followed with blocking
//!   queries, so that a change is seen within a round trip rather than a polling period.
//! - [`dns_srv`]: SRV records, resolved again when their TTL runs out.
//!
//! Either way:
//! - a connection refused by a discovered instance makes the watcher read again at once
//!   ([`Discovery::reread`]), rather than at the next change or TTL: the instance may be
//!   gone before the registry's health checks noticed;
//! - a registry that cannot be reached keeps the last set in use: instances that were
//!   healthy a moment ago are a better guess than none. The watcher logs a warning and
//!   tries again after a pause that doubles from [`RETRY_INITIAL`] to [`RETRY_MAX`];
//! - a registry that answers "no instances" is believed: calls then fail with a retryable
//!   connection error until instances come back.

mod consul;
mod dns_srv;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::{DiscoverySource, ServiceDiscovery};
use super::instances::{Endpoint, Instances};
use super::{ServicesError, error_chain};
use crate::telemetry::metrics::SERVICE_INSTANCES;

/// The first pause after a failed read of the registry; it doubles per failure.
const RETRY_INITIAL: Duration = Duration::from_millis(250);

/// The longest pause between reads of a registry that cannot be reached.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// The shortest time between the starts of two reads, whatever asks for them: connection
/// errors in a burst, or a registry whose answers come back at once (Consul's docs ask
/// blocking-query clients to rate-limit themselves), make one read per this, not one each.
const MIN_READ_INTERVAL: Duration = Duration::from_millis(200);

/// A registry read that failed: the registry could not be reached, refused, or answered
/// something that is not what its API documents.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    /// No answer: connection refused, reset, or timed out.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// An answer, but not a usable one.
    #[error("{0}")]
    Answer(String),
}

/// What a service keeps of its watcher: the way to wake it, and whether it read once.
pub(super) struct Discovery {
    /// Where the instances come from, for messages: `consul service payments at
    /// http://127.0.0.1:8500`.
    pub source: String,
    /// Wakes the watcher for a read at once.
    wake: Arc<Notify>,
    /// Becomes true when the first read ended, well or not.
    settled: watch::Receiver<bool>,
}

/// One registry: how a watcher reads it.
enum Registry {
    Consul(consul::Consul),
    /// Boxed: the resolver is large, and there is one per service anyway.
    DnsSrv(Box<dns_srv::DnsSrv>),
}

impl Registry {
    /// The instances registered now. `at_once` false lets the registry take its time: a
    /// blocking query that answers when the set changes, or a pause until the records'
    /// TTL runs out; true asks at once.
    async fn read(&mut self, at_once: bool) -> Result<Vec<Endpoint>, ReadError> {
        match self {
            Registry::Consul(consul) => consul.read(at_once).await,
            Registry::DnsSrv(dns) => dns.read(at_once).await,
        }
    }
}

impl Discovery {
    /// Starts the watcher of `service`, which replaces `instances` with what `config`'s
    /// registry reports, until `stop`. Needs a Tokio runtime.
    pub fn start(
        service: &str,
        config: &ServiceDiscovery,
        client: &reqwest::Client,
        instances: Arc<Instances>,
        stop: CancellationToken,
    ) -> Result<Self, ServicesError> {
        let invalid = |reason: String| ServicesError::Invalid {
            service: service.to_owned(),
            reason,
        };
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            invalid("discovery: the services must be built inside a Tokio runtime".into())
        })?;
        let (registry, source) = match config.source() {
            DiscoverySource::Consul {
                url,
                service: name,
                token_env,
                wait,
            } => {
                let token = match token_env {
                    None => None,
                    Some(var) => Some(std::env::var(var).map_err(|_| {
                        invalid(format!(
                            "discovery.token-env: environment variable `{var}` is not set"
                        ))
                    })?),
                };
                let consul = consul::Consul::new(
                    client.clone(),
                    url,
                    name,
                    token.as_deref(),
                    wait,
                    config.scheme(),
                )
                .map_err(|e| invalid(format!("discovery.{e}")))?;
                (
                    Registry::Consul(consul),
                    format!("consul service {name} at {url}"),
                )
            }
            DiscoverySource::DnsSrv { name, nameserver } => {
                let dns = dns_srv::DnsSrv::new(name, nameserver, config.scheme())
                    .map_err(|e| invalid(format!("discovery.dns-srv: {e}")))?;
                let server = nameserver.map_or_else(
                    || "the system's resolver".to_owned(),
                    |s| format!("nameserver {s}"),
                );
                (
                    Registry::DnsSrv(Box::new(dns)),
                    format!("DNS SRV {name} from {server}"),
                )
            }
        };
        let wake = Arc::new(Notify::new());
        let (settled_tx, settled) = watch::channel(false);
        let watcher = Watcher {
            service: service.to_owned(),
            source: source.clone(),
            registry,
            instances,
            wake: wake.clone(),
            settled: settled_tx,
        };
        runtime.spawn(watcher.run(stop));
        Ok(Self {
            source,
            wake,
            settled,
        })
    }

    /// Asks the watcher to read the registry at once: an instance it listed refused a
    /// connection, or it lists none. Several asks in a burst make one read.
    pub fn reread(&self) {
        self.wake.notify_one();
    }

    /// Waits, up to `within`, for the first read of the registry to end: the calls made
    /// just after start would otherwise find no instance yet.
    pub async fn settled(&self, within: Duration) {
        let mut settled = self.settled.clone();
        let _ = tokio::time::timeout(within, settled.wait_for(|done| *done)).await;
    }
}

/// The task that keeps one service's instances current.
struct Watcher {
    service: String,
    source: String,
    registry: Registry,
    instances: Arc<Instances>,
    wake: Arc<Notify>,
    settled: watch::Sender<bool>,
}

impl Watcher {
    async fn run(mut self, stop: CancellationToken) {
        // The first read, and every read after a failure or a wake, is at once.
        let mut at_once = true;
        let mut failures = 0u32;
        let mut last_read: Option<Instant> = None;
        loop {
            if let Some(last) = last_read {
                tokio::select! {
                    () = tokio::time::sleep_until(last + MIN_READ_INTERVAL) => {}
                    () = stop.cancelled() => return,
                }
            }
            last_read = Some(Instant::now());
            let result = tokio::select! {
                result = self.registry.read(at_once) => result,
                // A wake drops the read in flight (a blocking query, or a wait for the
                // TTL) for one at once.
                () = self.wake.notified(), if !at_once => {
                    tracing::debug!(service = %self.service, "reading the registry again at once");
                    at_once = true;
                    continue;
                }
                () = stop.cancelled() => return,
            };
            match result {
                Ok(endpoints) => {
                    if failures > 0 {
                        tracing::info!(service = %self.service, source = %self.source, "registry reachable again");
                    }
                    failures = 0;
                    at_once = false;
                    self.update(endpoints);
                }
                Err(error) => {
                    failures += 1;
                    let pause = RETRY_INITIAL
                        .saturating_mul(2u32.saturating_pow(failures.min(16) - 1))
                        .min(RETRY_MAX);
                    tracing::warn!(
                        service = %self.service,
                        source = %self.source,
                        %error,
                        failures,
                        ?pause,
                        kept = self.instances.len(),
                        "could not read the service's instances; keeping the last ones known"
                    );
                    at_once = true;
                    self.settled.send_replace(true);
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = stop.cancelled() => return,
                    }
                }
            }
        }
    }

    /// Makes `endpoints` the service's instances.
    fn update(&self, endpoints: Vec<Endpoint>) {
        if self.instances.replace(endpoints) {
            let bases = self.instances.bases();
            if bases.is_empty() {
                tracing::warn!(service = %self.service, source = %self.source, "the registry lists no healthy instance");
            } else {
                tracing::info!(service = %self.service, instances = ?bases, "service instances changed");
            }
        }
        metrics::gauge!(SERVICE_INSTANCES, "service" => self.service.clone())
            .set(self.instances.len() as f64);
        self.settled.send_replace(true);
    }
}

/// `scheme://host:port`, with an IPv6 address in brackets.
fn base_url(scheme: &str, host: &str, port: u16) -> String {
    let host = host.trim_end_matches('.');
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("{scheme}://[{host}]:{port}")
    } else {
        format!("{scheme}://{host}:{port}")
    }
}
