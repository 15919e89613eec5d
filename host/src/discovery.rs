//! `[discovery]`: this node in a service registry, so that what calls flowhost finds it the
//! way flowhost finds the services it calls.
//!
//! With `register`, the node registers itself with a Consul agent when it starts
//! (`PUT /v1/agent/service/register`), under the address it advertises (`[cluster]
//! advertise`, by default the one it listens on) and with an HTTP check of its `/readyz`,
//! so that Consul lists it only while it is ready, and drops it for good if it stays
//! critical (a node killed without a chance to say so). It registers again every
//! [`REREGISTER`], which costs Consul nothing when nothing changed and puts the node back
//! after an agent lost its state. A node that stops gracefully deregisters
//! (`PUT /v1/agent/service/deregister/<id>`) before it stops accepting requests, so that
//! clients move away before its port closes.
//!
//! An agent that cannot be reached does not keep the node from serving: registration is
//! tried again after a pause that doubles from 1 s to 30 s, with a warning each time.
//!
//! ```toml
//! [discovery.register]
//! consul = "http://127.0.0.1:8500"   # the local Consul agent's HTTP API
//! service = "flowhost"               # the name clients look up; default "flowhost"
//! # id = "flowhost-node-a"           # default: <service>-<node id>
//! # tags = ["v1"]
//! # check-interval = "10s"          # how often Consul asks /readyz
//! # deregister-after = "1m"          # how long critical before Consul drops the node
//! # token-env = "CONSUL_TOKEN"       # ACL token, sent as X-Consul-Token
//! ```

use std::time::Duration;

use reqwest::header::HeaderValue;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// How often a registered node registers again.
pub const REREGISTER: Duration = Duration::from_secs(60);

/// How long one request to the agent may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// `[discovery]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct DiscoveryConfig {
    /// Registers this node with a Consul agent while it runs. Default: not registered.
    pub register: Option<RegisterConfig>,
}

/// `[discovery.register]`: this node as a Consul service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RegisterConfig {
    /// The HTTP API of the Consul agent to register with, as `http://127.0.0.1:8500`.
    pub consul: String,
    /// The service name clients look this node up by. Default `flowhost`.
    #[serde(default = "defaults::service")]
    pub service: String,
    /// This node's service id, unique in the agent. Default `<service>-<node id>`, the node
    /// id of `[cluster]` with what is not a letter, digit, `-` or `_` made `-`.
    #[serde(default)]
    pub id: Option<String>,
    /// Tags registered with the service. Default none.
    #[serde(default)]
    pub tags: Vec<String>,
    /// How often Consul checks `/readyz`. Default 10 s.
    #[serde(default = "defaults::check_interval", with = "humantime_serde")]
    pub check_interval: Duration,
    /// How long the check may stay critical before Consul drops the registration
    /// (`DeregisterCriticalServiceAfter`; Consul's floor is a minute). Default 1 min.
    #[serde(default = "defaults::deregister_after", with = "humantime_serde")]
    pub deregister_after: Duration,
    /// The environment variable holding an ACL token, sent as `X-Consul-Token`. Default
    /// none.
    #[serde(default)]
    pub token_env: Option<String>,
}

mod defaults {
    use std::time::Duration;

    pub fn service() -> String {
        "flowhost".into()
    }
    pub fn check_interval() -> Duration {
        Duration::from_secs(10)
    }
    pub fn deregister_after() -> Duration {
        Duration::from_secs(60)
    }
}

/// A `[discovery]` value that does not fit, or what keeps it from being used.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// A value is malformed.
    #[error("discovery.register.{key}: {reason}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// Why.
        reason: String,
    },
    /// The agent could not be reached or refused.
    #[error("Consul agent {agent}: {reason}")]
    Agent {
        /// The agent's URL.
        agent: String,
        /// What went wrong.
        reason: String,
    },
}

impl RegisterConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), RegisterError> {
        let invalid = |key, reason: &str| {
            Err(RegisterError::Invalid {
                key,
                reason: reason.into(),
            })
        };
        match reqwest::Url::parse(&self.consul) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            _ => {
                return invalid(
                    "consul",
                    "an http(s) URL with a host, as `http://127.0.0.1:8500`",
                );
            }
        }
        if self.service.is_empty() {
            return invalid("service", "must not be empty");
        }
        if self.id.as_deref().is_some_and(str::is_empty) {
            return invalid("id", "must not be empty");
        }
        if self.check_interval < Duration::from_secs(1) {
            return invalid("check-interval", "must be at least 1s");
        }
        if self.deregister_after < Duration::from_secs(60) {
            return invalid("deregister-after", "must be at least 1m (Consul's floor)");
        }
        Ok(())
    }
}

/// This node's registration with one agent.
pub struct Registration {
    client: reqwest::Client,
    /// The agent's URL, for messages.
    agent: String,
    register_url: reqwest::Url,
    deregister_url: reqwest::Url,
    token: Option<HeaderValue>,
    /// What `register` sends.
    body: Value,
}

impl Registration {
    /// The registration of the node advertised at `advertise` (`http://host:port`) under
    /// node id `node`, as `config` describes.
    pub fn new(
        config: &RegisterConfig,
        advertise: &str,
        node: &str,
    ) -> Result<Self, RegisterError> {
        config.validate()?;
        let invalid = |key, reason: String| RegisterError::Invalid { key, reason };
        let advertised = reqwest::Url::parse(advertise).map_err(|e| {
            invalid(
                "consul",
                format!("the advertised address `{advertise}`: {e}"),
            )
        })?;
        let (Some(host), Some(port)) = (advertised.host_str(), advertised.port_or_known_default())
        else {
            return Err(invalid(
                "consul",
                format!("the advertised address `{advertise}` has no host"),
            ));
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let id = config.id.clone().unwrap_or_else(|| {
            let node: String = node
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            format!("{}-{node}", config.service)
        });
        let check = format!("{}/readyz", advertise.trim_end_matches('/'));
        let body = json!({
            "ID": id,
            "Name": config.service,
            "Tags": config.tags,
            "Address": host,
            "Port": port,
            "Meta": {"node": node, "version": env!("CARGO_PKG_VERSION")},
            "Check": {
                "HTTP": check,
                "Method": "GET",
                "Interval": format!("{}ms", config.check_interval.as_millis()),
                "Timeout": format!("{}ms", config.check_interval.min(Duration::from_secs(5)).as_millis()),
                "DeregisterCriticalServiceAfter": format!("{}s", config.deregister_after.as_secs()),
            },
        });
        let agent =
            reqwest::Url::parse(&config.consul).map_err(|e| invalid("consul", e.to_string()))?;
        let endpoint = |segments: &[&str]| {
            let mut url = agent.clone();
            url.path_segments_mut()
                .map_err(|()| invalid("consul", "not a base URL".into()))?
                .pop_if_empty()
                .extend(segments);
            Ok::<_, RegisterError>(url)
        };
        let register_url = endpoint(&["v1", "agent", "service", "register"])?;
        let deregister_url = endpoint(&["v1", "agent", "service", "deregister", &id])?;
        let token = match &config.token_env {
            None => None,
            Some(var) => {
                let token = std::env::var(var).map_err(|_| {
                    invalid(
                        "token-env",
                        format!("environment variable `{var}` is not set"),
                    )
                })?;
                let mut value = HeaderValue::from_str(&token).map_err(|_| {
                    invalid(
                        "token-env",
                        format!("`{var}` holds characters not allowed in a header"),
                    )
                })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| invalid("consul", e.to_string()))?;
        Ok(Self {
            client,
            agent: config.consul.clone(),
            register_url,
            deregister_url,
            token,
            body,
        })
    }

    /// What is registered: `ID`, `Name`, `Address`, `Port`, `Check`, ...
    pub fn body(&self) -> &Value {
        &self.body
    }

    /// Registers (or registers again: the agent replaces a registration of the same id).
    pub async fn register(&self) -> Result<(), RegisterError> {
        let request = self.client.put(self.register_url.clone()).json(&self.body);
        self.send(request).await
    }

    /// Removes the registration.
    pub async fn deregister(&self) -> Result<(), RegisterError> {
        self.send(self.client.put(self.deregister_url.clone()))
            .await
    }

    async fn send(&self, mut request: reqwest::RequestBuilder) -> Result<(), RegisterError> {
        if let Some(token) = &self.token {
            request = request.header("x-consul-token", token.clone());
        }
        let agent = |reason: String| RegisterError::Agent {
            agent: self.agent.clone(),
            reason,
        };
        let response = request.send().await.map_err(|e| agent(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(agent(format!(
            "answered {status}: {}",
            text.trim().chars().take(200).collect::<String>()
        )))
    }

    /// Keeps this node registered until `stop`: registers, then again every
    /// [`REREGISTER`]; after a failure, again after a pause that doubles from 1 s to 30 s.
    /// Then deregisters.
    pub async fn run(&self, stop: CancellationToken) {
        let mut failures = 0u32;
        let mut registered = false;
        let id = self.body["ID"].as_str().unwrap_or_default();
        loop {
            let pause = match self.register().await {
                Ok(()) => {
                    if !registered || failures > 0 {
                        tracing::info!(id, agent = %self.agent, "registered with Consul");
                    }
                    registered = true;
                    failures = 0;
                    REREGISTER
                }
                Err(error) => {
                    failures += 1;
                    let pause = Duration::from_secs(1)
                        .saturating_mul(2u32.saturating_pow(failures.min(16) - 1))
                        .min(Duration::from_secs(30));
                    tracing::warn!(%error, failures, ?pause, "could not register this node with Consul");
                    pause
                }
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = stop.cancelled() => break,
            }
        }
        match self.deregister().await {
            Ok(()) => tracing::info!(id, agent = %self.agent, "deregistered from Consul"),
            Err(error) => tracing::warn!(%error, "could not deregister this node from Consul"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RegisterConfig {
        RegisterConfig {
            consul: "http://127.0.0.1:8500".into(),
            service: defaults::service(),
            id: None,
            tags: vec!["blue".into()],
            check_interval: defaults::check_interval(),
            deregister_after: defaults::deregister_after(),
            token_env: None,
        }
    }

    #[test]
    fn the_node_registers_at_its_advertised_address_with_a_check_of_readyz() {
        let registration =
            Registration::new(&config(), "http://10.0.0.5:8080/", "10.0.0.5:8080").unwrap();
        assert_eq!(
            registration.body(),
            &json!({
                "ID": "flowhost-10-0-0-5-8080",
                "Name": "flowhost",
                "Tags": ["blue"],
                "Address": "10.0.0.5",
                "Port": 8080,
                "Meta": {"node": "10.0.0.5:8080", "version": env!("CARGO_PKG_VERSION")},
                "Check": {
                    "HTTP": "http://10.0.0.5:8080/readyz",
                    "Method": "GET",
                    "Interval": "10000ms",
                    "Timeout": "5000ms",
                    "DeregisterCriticalServiceAfter": "60s",
                },
            })
        );
        assert_eq!(
            registration.deregister_url.as_str(),
            "http://127.0.0.1:8500/v1/agent/service/deregister/flowhost-10-0-0-5-8080"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let mut bad = config();
        bad.consul = "127.0.0.1:8500".into();
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .starts_with("discovery.register.consul:")
        );
        let mut bad = config();
        bad.deregister_after = Duration::from_secs(5);
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .starts_with("discovery.register.deregister-after:")
        );
    }
}
