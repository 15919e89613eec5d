//! `[services.<name>]`: where a service lives and how calls to it behave.
//!
//! A service's instances are either listed (`urls`) or found in a registry
//! (`discovery`): Consul's health API or DNS SRV records, read again as they change.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::RetryPolicy;

/// One named service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServiceConfig {
    /// Base URLs of its instances (`http` or `https`, with an optional path prefix). Calls
    /// rotate across them; one that refuses connections or times out sits out `cooldown`.
    /// Either this or `discovery`.
    #[serde(default)]
    pub urls: Vec<String>,
    /// Where to find its instances instead of `urls`: a registry read again as it changes.
    /// The instances found are rotated and cooled down as listed ones are.
    #[serde(default)]
    pub discovery: Option<ServiceDiscovery>,
    /// Name of the environment variable holding a bearer token, sent as
    /// `Authorization: Bearer <token>`. The token never enters a plugin.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Timeout of one attempt. Default 10 s.
    #[serde(default = "defaults::timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Retries after the first attempt, for connection errors, timeouts, 429 and 5xx.
    /// Default 3.
    #[serde(default = "defaults::retries")]
    pub retries: u32,
    /// First backoff delay; it doubles per retry, with jitter. Default 100 ms.
    #[serde(default = "defaults::backoff_initial", with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// Longest backoff delay. Default 5 s.
    #[serde(default = "defaults::backoff_max", with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Largest response body accepted; a larger one fails the call. Default 4 MiB.
    #[serde(default = "defaults::max_response_bytes")]
    pub max_response_bytes: u64,
    /// How long an instance that refused a connection or timed out is skipped. Default 10 s.
    #[serde(default = "defaults::cooldown", with = "humantime_serde")]
    pub cooldown: Duration,
}

mod defaults {
    use std::time::Duration;

    pub fn timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn retries() -> u32 {
        3
    }
    pub fn backoff_initial() -> Duration {
        Duration::from_millis(100)
    }
    pub fn backoff_max() -> Duration {
        Duration::from_secs(5)
    }
    pub fn max_response_bytes() -> u64 {
        4 * 1024 * 1024
    }
    pub fn cooldown() -> Duration {
        Duration::from_secs(10)
    }
}

impl ServiceConfig {
    /// A service at `url` with every other setting at its default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            urls: vec![url.into()],
            discovery: None,
            token_env: None,
            timeout: defaults::timeout(),
            retries: defaults::retries(),
            backoff_initial: defaults::backoff_initial(),
            backoff_max: defaults::backoff_max(),
            max_response_bytes: defaults::max_response_bytes(),
            cooldown: defaults::cooldown(),
        }
    }

    /// The retry policy of a call: `retries` after the first attempt, with jitter.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            attempts: self.retries.saturating_add(1),
            initial_backoff: self.backoff_initial,
            max_backoff: self.backoff_max,
            jitter: 0.5,
        }
    }

    /// Checks the URLs and ranges; the error names the field.
    pub fn validate(&self) -> Result<(), InvalidService> {
        let invalid = |reason: String| Err(InvalidService(reason));
        match (&self.discovery, self.urls.is_empty()) {
            (None, true) => {
                return invalid(
                    "urls: at least one URL is required (or `discovery` to find them)".into(),
                );
            }
            (Some(_), false) => {
                return invalid("urls and discovery: give one or the other, not both".into());
            }
            (Some(discovery), true) => discovery
                .validate()
                .map_err(|e| InvalidService(format!("discovery.{}", e.0)))?,
            (None, false) => {}
        }
        for url in &self.urls {
            let parsed = match reqwest::Url::parse(url) {
                Ok(parsed) => parsed,
                Err(e) => return invalid(format!("urls: `{url}`: {e}")),
            };
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return invalid(format!("urls: `{url}` is not an http(s) URL with a host"));
            }
        }
        if self.timeout.is_zero() {
            return invalid("timeout: must be more than zero".into());
        }
        if self.max_response_bytes == 0 {
            return invalid("max-response-bytes: must be more than zero".into());
        }
        if self.backoff_initial > self.backoff_max {
            return invalid("backoff-initial: must not exceed backoff-max".into());
        }
        Ok(())
    }
}

/// `discovery = { ... }` of a service: where its instances are registered. Exactly one of
/// `consul` and `dns-srv`; the other keys belong to one of them.
///
/// ```toml
/// [services.payments]
/// discovery = { consul = "http://127.0.0.1:8500", service = "payments" }
/// # or
/// discovery = { dns-srv = "_payments._tcp.example.internal", nameserver = "127.0.0.1:5353" }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServiceDiscovery {
    /// The HTTP API of a Consul agent (`http://127.0.0.1:8500`): the instances are those its
    /// health API reports passing, followed with blocking queries.
    #[serde(default)]
    pub consul: Option<String>,
    /// With `consul`: the service's name in Consul.
    #[serde(default)]
    pub service: Option<String>,
    /// With `consul`: the environment variable holding an ACL token, sent as
    /// `X-Consul-Token`. Default none.
    #[serde(default)]
    pub token_env: Option<String>,
    /// With `consul`: how long one blocking query waits for a change before Consul answers
    /// anyway. Default 30 s; at most 10 min (Consul's limit).
    #[serde(default, with = "humantime_serde::option")]
    pub wait: Option<Duration>,
    /// A DNS SRV name (`_payments._tcp.example.internal`): the instances are its records'
    /// targets and ports, lowest priority first, resolved again when their TTL runs out.
    #[serde(default)]
    pub dns_srv: Option<String>,
    /// With `dns-srv`: the DNS server to ask (`127.0.0.1:5353`). Default: the system's
    /// (`/etc/resolv.conf`). SRV targets' own names are resolved by the system resolver,
    /// as any URL's host is.
    #[serde(default)]
    pub nameserver: Option<SocketAddr>,
    /// The scheme of the instances' base URLs: `http` (default) or `https`.
    #[serde(default)]
    pub scheme: Option<String>,
}

/// How long a blocking query to Consul waits for a change by default.
pub const DEFAULT_CONSUL_WAIT: Duration = Duration::from_secs(30);

/// The longest `wait` Consul honours.
const MAX_CONSUL_WAIT: Duration = Duration::from_secs(600);

/// Where [`ServiceDiscovery`] looks, once validated.
#[derive(Debug, Clone, Copy)]
pub enum DiscoverySource<'a> {
    /// Consul's health API.
    Consul {
        /// The agent's HTTP API.
        url: &'a str,
        /// The service's name in Consul.
        service: &'a str,
        /// The variable holding the ACL token.
        token_env: Option<&'a str>,
        /// How long a blocking query waits.
        wait: Duration,
    },
    /// DNS SRV records.
    DnsSrv {
        /// The SRV name.
        name: &'a str,
        /// The DNS server, or the system's.
        nameserver: Option<SocketAddr>,
    },
}

impl ServiceDiscovery {
    /// Where to look; call after [`Self::validate`].
    pub fn source(&self) -> DiscoverySource<'_> {
        match (&self.consul, &self.dns_srv) {
            (Some(url), _) => DiscoverySource::Consul {
                url,
                service: self.service.as_deref().unwrap_or_default(),
                token_env: self.token_env.as_deref(),
                wait: self.wait.unwrap_or(DEFAULT_CONSUL_WAIT),
            },
            (None, name) => DiscoverySource::DnsSrv {
                name: name.as_deref().unwrap_or_default(),
                nameserver: self.nameserver,
            },
        }
    }

    /// The scheme of discovered instances' URLs.
    pub fn scheme(&self) -> &str {
        self.scheme.as_deref().unwrap_or("http")
    }

    /// Checks that exactly one registry is named and that every key belongs to it; the
    /// error names the key.
    pub fn validate(&self) -> Result<(), InvalidService> {
        let invalid = |reason: &str| Err(InvalidService(reason.to_owned()));
        if !matches!(self.scheme(), "http" | "https") {
            return invalid("scheme: `http` or `https`");
        }
        match (&self.consul, &self.dns_srv) {
            (None, None) => invalid("consul or dns-srv: one is required"),
            (Some(_), Some(_)) => invalid("consul and dns-srv: give one or the other, not both"),
            (Some(url), None) => {
                match reqwest::Url::parse(url) {
                    Ok(parsed)
                        if matches!(parsed.scheme(), "http" | "https")
                            && parsed.host().is_some() => {}
                    _ => {
                        return invalid(
                            "consul: an http(s) URL with a host, as `http://127.0.0.1:8500`",
                        );
                    }
                }
                if self.service.as_deref().is_none_or(str::is_empty) {
                    return invalid(
                        "service: the service's name in Consul is required with consul",
                    );
                }
                if self
                    .wait
                    .is_some_and(|wait| wait < Duration::from_secs(1) || wait > MAX_CONSUL_WAIT)
                {
                    return invalid("wait: from 1s to 10m");
                }
                if self.nameserver.is_some() {
                    return invalid("nameserver: only with dns-srv");
                }
                Ok(())
            }
            (None, Some(name)) => {
                if name.is_empty() || name.contains(char::is_whitespace) {
                    return invalid("dns-srv: a DNS name, as `_payments._tcp.example.internal`");
                }
                for (key, set) in [
                    ("service", self.service.is_some()),
                    ("token-env", self.token_env.is_some()),
                    ("wait", self.wait.is_some()),
                ] {
                    if set {
                        return Err(InvalidService(format!("{key}: only with consul")));
                    }
                }
                Ok(())
            }
        }
    }
}

/// A service setting that cannot be used: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidService(pub String);
