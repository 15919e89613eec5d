//! The host's one typed configuration, loaded once at start and passed down.
//!
//! Layers, later over earlier: defaults, the TOML file, `FLOWHOST_` environment variables
//! (`__` separates nesting levels, and the underscores of the last segment become dashes:
//! `FLOWHOST_RUNTIME__CALL_TIMEOUT=5s` sets `runtime.call-timeout`), then CLI flags, which
//! `main` merges on top of [`Config::figment`]. Unknown keys are rejected with the key named.
//! Paths in the file are relative to the file.
//!
//! ```toml
//! data-dir = "data"
//!
//! [runtime]
//! call-timeout = "10s"
//! memory-limit-mib = 64
//!
//! [services.payments]
//! urls = ["http://127.0.0.1:9100"]
//! token-env = "PAYMENTS_TOKEN"
//!
//! [plugins.payment]
//! path = "plugins/payment.wasm"
//! services = ["payments"]
//! publish = ["payment.*"]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::magic::RelativePathBuf;
use serde::{Deserialize, Serialize};

pub use crate::capabilities::cache::CacheConfig;
pub use crate::capabilities::events::EventsConfig;
pub use crate::capabilities::services::ServiceConfig;
pub use crate::events::SubscriptionConfig;
pub use crate::plugins::RegistryConfig;
pub use crate::saga::WorkflowConfig;

/// `FLOWHOST_` variables that the CLI reads and the configuration does not:
/// `FLOWHOST_CONFIG` (the file) and `FLOWHOST_URL` (the host the admin commands talk to).
const CLI_VARIABLES: [&str; 2] = ["config", "url"];

/// The root of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Config {
    /// Where the host keeps its state: compiled plugin code now, the run store later.
    /// Default `flowhost-data`.
    pub data_dir: RelativePathBuf,
    /// The WebAssembly runtime: limits and the instance pool.
    pub runtime: RuntimeConfig,
    /// Named services plugins may call, by name.
    pub services: BTreeMap<String, ServiceConfig>,
    /// The cache capability.
    pub cache: CacheConfig,
    /// The events capability.
    pub events: EventsConfig,
    /// Plugins by name.
    pub plugins: BTreeMap<String, PluginConfig>,
    /// Workflows by name.
    pub workflows: BTreeMap<String, WorkflowConfig>,
    /// Event subscriptions by name: topic patterns to handler plugins.
    pub subscriptions: BTreeMap<String, SubscriptionConfig>,
    /// Plugin versions: uploads, the directory watch, how many are kept.
    pub registry: RegistryConfig,
    /// The HTTP server.
    pub server: ServerConfig,
    /// The bearer token of the admin routes (`/v1/plugins`); usually set through
    /// `FLOWHOST_ADMIN_TOKEN`. Without it those routes are off.
    pub admin_token: Option<Secret>,
    /// A bearer token the routes that make plugins run (start and retry runs, publish and
    /// redeliver events) then require; usually set through `FLOWHOST_TRIGGER_TOKEN`.
    /// Without it they are open.
    pub trigger_token: Option<Secret>,
}

/// A credential from the configuration: never shown by `Debug`, never logged.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The credential.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// `[server]`: the HTTP API and the engine behind it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: std::net::SocketAddr,
    /// Largest request body, in bytes; a larger one is answered 413. Default 1 MiB.
    pub max_body_bytes: usize,
    /// Runs driven at once; more wait for a slot. Default 256.
    pub max_concurrent_runs: usize,
    /// Longest `?wait=` a client may ask for. Default 60 s.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// On shutdown, how long in-flight steps may take to finish. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 8080).into(),
            max_body_bytes: 1024 * 1024,
            max_concurrent_runs: 256,
            max_wait: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("flowhost-data").into(),
            runtime: RuntimeConfig::default(),
            services: BTreeMap::new(),
            cache: CacheConfig::default(),
            events: EventsConfig::default(),
            plugins: BTreeMap::new(),
            workflows: BTreeMap::new(),
            subscriptions: BTreeMap::new(),
            registry: RegistryConfig::default(),
            server: ServerConfig::default(),
            admin_token: None,
            trigger_token: None,
        }
    }
}

/// Limits every plugin call runs under unless its plugin says otherwise.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Deadline of one plugin call, host calls included. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
    /// Memory cap per linear memory of a plugin instance, initial size included, in MiB.
    /// Default 64.
    pub memory_limit_mib: u32,
    /// How many plugin instances may be alive at once (the pooling allocator's slots).
    /// Default 1000.
    pub max_instances: u32,
    /// Keep compiled plugin code on disk under `<data-dir>/compiled`, so that a restart
    /// loads it in milliseconds instead of compiling again. Default true.
    pub compiled_cache: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(30),
            memory_limit_mib: 64,
            max_instances: 1000,
            compiled_cache: true,
        }
    }
}

/// One plugin: its component and what it is granted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PluginConfig {
    /// The component file, relative to the configuration file.
    pub path: RelativePathBuf,
    /// Services it may call (names from `[services]`).
    #[serde(default)]
    pub services: Vec<String>,
    /// Topic patterns it may publish on: `*` matches one segment, `#` any number.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Cache namespace; plugins naming the same namespace share entries. Default: the
    /// plugin's own name.
    #[serde(default)]
    pub cache_namespace: Option<String>,
    /// Memory cap in MiB; default `runtime.memory-limit-mib`.
    #[serde(default)]
    pub memory_limit_mib: Option<u32>,
    /// Call deadline; default `runtime.call-timeout`.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// The plugin's own settings, read through the `config` interface.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// A configuration that loaded but does not hold together.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A plugin is granted a service that `[services]` does not define.
    #[error("plugins.{plugin}.services: unknown service `{service}`")]
    UnknownService {
        /// The plugin whose grant is wrong.
        plugin: String,
        /// The service it names.
        service: String,
    },
    /// A value is out of range or malformed.
    #[error("{key}: {reason}")]
    Invalid {
        /// The offending key, dotted.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Config {
    /// The layered sources: defaults, then `file` if given, then `FLOWHOST_` environment
    /// variables. Callers merge CLI flags on top and [`extract`](Self::extract).
    pub fn figment(file: Option<&Path>) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        let env = Env::prefixed("FLOWHOST_")
            .filter(|key| !CLI_VARIABLES.iter().any(|cli| key == *cli))
            .split("__")
            .map(|key| match key.as_str().rsplit_once('.') {
                Some((head, last)) => format!("{head}.{}", last.replace('_', "-")).into(),
                None => key.as_str().replace('_', "-").into(),
            });
        figment.merge(env)
    }

    /// Extracts and validates the configuration from `figment`.
    pub fn extract(figment: &Figment) -> anyhow::Result<Config> {
        let config: Config = figment.extract()?;
        config.validate()?;
        Ok(config)
    }

    /// Loads defaults, `file` and the environment, and validates the result.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        Self::extract(&Self::figment(file))
    }

    /// Parses a TOML document (no environment), for tests and embedders. Relative paths
    /// resolve against the current directory.
    pub fn from_toml(toml: &str) -> anyhow::Result<Config> {
        let figment =
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(toml));
        Self::extract(&figment)
    }

    /// Checks what serde cannot: cross references and ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: String, reason: &str| ConfigError::Invalid {
            key,
            reason: reason.into(),
        };
        if self.runtime.memory_limit_mib == 0 || self.runtime.memory_limit_mib > 4096 {
            return Err(invalid(
                "runtime.memory-limit-mib".into(),
                "must be 1..=4096",
            ));
        }
        if self.runtime.call_timeout.is_zero() {
            return Err(invalid(
                "runtime.call-timeout".into(),
                "must be more than zero",
            ));
        }
        if self.runtime.max_instances == 0 {
            return Err(invalid(
                "runtime.max-instances".into(),
                "must be at least 1",
            ));
        }
        for (name, service) in &self.services {
            service
                .validate()
                .map_err(|reason| invalid(format!("services.{name}"), &reason))?;
        }
        for (name, plugin) in &self.plugins {
            for service in &plugin.services {
                if !self.services.contains_key(service) {
                    return Err(ConfigError::UnknownService {
                        plugin: name.clone(),
                        service: service.clone(),
                    });
                }
            }
            for pattern in &plugin.publish {
                crate::capabilities::events::TopicPattern::parse(pattern)
                    .map_err(|reason| invalid(format!("plugins.{name}.publish"), &reason))?;
            }
            if plugin
                .memory_limit_mib
                .is_some_and(|mib| mib == 0 || mib > 4096)
            {
                return Err(invalid(
                    format!("plugins.{name}.memory-limit-mib"),
                    "must be 1..=4096",
                ));
            }
            if plugin.timeout.is_some_and(|t| t.is_zero()) {
                return Err(invalid(
                    format!("plugins.{name}.timeout"),
                    "must be more than zero",
                ));
            }
        }
        for (name, workflow) in &self.workflows {
            workflow
                .validate()
                .map_err(|(key, reason)| invalid(format!("workflows.{name}.{key}"), &reason))?;
            for step in &workflow.steps {
                if !self.plugins.contains_key(&step.plugin) {
                    return Err(invalid(
                        format!("workflows.{name}.steps.{}.plugin", step.name),
                        &format!("unknown plugin `{}`", step.plugin),
                    ));
                }
            }
        }
        for (name, subscription) in &self.subscriptions {
            if !self.plugins.contains_key(&subscription.handler) {
                return Err(invalid(
                    format!("subscriptions.{name}.handler"),
                    &format!("unknown plugin `{}`", subscription.handler),
                ));
            }
        }
        for (key, token) in [
            ("admin-token", &self.admin_token),
            ("trigger-token", &self.trigger_token),
        ] {
            if token.as_ref().is_some_and(|t| t.expose().len() < 16) {
                return Err(invalid(key.into(), "must be at least 16 characters"));
            }
        }
        if self.server.max_concurrent_runs == 0 {
            return Err(invalid(
                "server.max-concurrent-runs".into(),
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// Where the run store lives.
    pub fn runs_dir(&self) -> PathBuf {
        self.data_dir.relative().join("runs")
    }

    /// The largest memory cap any plugin may get, which sizes the instance pool's slots.
    pub fn max_memory_limit_mib(&self) -> u32 {
        self.plugins
            .values()
            .filter_map(|p| p.memory_limit_mib)
            .fold(self.runtime.memory_limit_mib, u32::max)
    }

    /// Where compiled plugin code is cached, if it is.
    pub fn compiled_cache_dir(&self) -> Option<PathBuf> {
        self.runtime
            .compiled_cache
            .then(|| self.data_dir.relative().join("compiled"))
    }

    /// One line describing the effective configuration, logged at start.
    pub fn summary(&self) -> String {
        format!(
            "data-dir={} plugins=[{}] services=[{}] call-timeout={:?} memory-limit={}MiB max-instances={} cache={}MiB",
            self.data_dir.relative().display(),
            self.plugins.keys().cloned().collect::<Vec<_>>().join(","),
            self.services.keys().cloned().collect::<Vec<_>>().join(","),
            self.runtime.call_timeout,
            self.runtime.memory_limit_mib,
            self.runtime.max_instances,
            self.cache.max_bytes / (1024 * 1024),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = Config::from_toml("").unwrap();
        assert_eq!(config.runtime.memory_limit_mib, 64);
        assert_eq!(config.runtime.call_timeout, Duration::from_secs(30));
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("[runtime]\nmemory-limt-mib = 3\n").unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("memory-limt-mib"), "{message}");
    }

    #[test]
    fn the_event_transport_is_chosen_by_kind() {
        use crate::events::transport::TransportConfig;
        let config = Config::from_toml("").unwrap();
        assert!(matches!(config.events.transport, TransportConfig::Embedded));
        let config = Config::from_toml(
            "[events.transport]\nkind = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\n",
        )
        .unwrap();
        let TransportConfig::Nats(nats) = config.events.transport else {
            panic!("not nats")
        };
        assert_eq!(nats.url, "nats://127.0.0.1:4222");
        assert_eq!(nats.stream, "FLOWHOST");
        let config = Config::from_toml(
            "[events.transport]\nkind = \"rabbitmq\"\nurl = \"amqp://127.0.0.1:5672/%2f\"\n",
        )
        .unwrap();
        let TransportConfig::Rabbitmq(rabbitmq) = config.events.transport else {
            panic!("not rabbitmq")
        };
        assert_eq!(
            (rabbitmq.exchange.as_str(), rabbitmq.prefetch),
            ("flowhost", 32)
        );
        let err = Config::from_toml("[events.transport]\nkind = \"carrier-pigeon\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("carrier-pigeon"), "{err:#}");
    }

    #[test]
    fn grant_of_unknown_service_is_named() {
        let err = Config::from_toml("[plugins.p]\npath = \"p.wasm\"\nservices = [\"nope\"]\n")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "plugins.p.services: unknown service `nope`"
        );
    }

    #[test]
    fn paths_are_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("flowhost.toml");
        std::fs::write(
            &file,
            "data-dir = \"state\"\n[plugins.p]\npath = \"p.wasm\"\n",
        )
        .unwrap();
        let config = Config::load(Some(&file)).unwrap();
        assert_eq!(
            config.plugins["p"].path.relative(),
            dir.path().join("p.wasm")
        );
        assert_eq!(config.data_dir.relative(), dir.path().join("state"));
    }

    #[test]
    #[expect(
        clippy::result_large_err,
        reason = "the jail's closure returns figment's error type"
    )]
    fn environment_overrides_the_file_and_flags_override_both() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "flowhost.toml",
                "[runtime]\ncall-timeout = \"5s\"\nmemory-limit-mib = 32\n[plugins.validate_user]\npath = \"v.wasm\"\n",
            )?;
            jail.set_env("FLOWHOST_RUNTIME__CALL_TIMEOUT", "7s");
            jail.set_env("FLOWHOST_PLUGINS__VALIDATE_USER__MEMORY_LIMIT_MIB", "16");
            jail.set_env("FLOWHOST_DATA_DIR", "from-env");
            jail.set_env("FLOWHOST_CONFIG", "flowhost.toml");
            jail.set_env("FLOWHOST_URL", "http://127.0.0.1:8080");
            jail.set_env("FLOWHOST_ADMIN_TOKEN", "a-token-of-enough-length");
            let figment = Config::figment(Some(Path::new("flowhost.toml")));
            let config = Config::extract(&figment).unwrap();
            assert_eq!(config.runtime.call_timeout, Duration::from_secs(7));
            assert_eq!(config.runtime.memory_limit_mib, 32);
            assert_eq!(config.plugins["validate_user"].memory_limit_mib, Some(16));
            assert_eq!(
                config.admin_token.as_ref().map(Secret::expose),
                Some("a-token-of-enough-length")
            );
            assert_eq!(format!("{:?}", config.admin_token), "Some(Secret(..))");
            let flags = figment.merge(Serialized::default("data-dir", "from-flag"));
            let config = Config::extract(&flags).unwrap();
            assert_eq!(config.data_dir.relative(), PathBuf::from("from-flag"));
            Ok(())
        });
    }
}
