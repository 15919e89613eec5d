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
//! [services.ledger]
//! discovery = { consul = "http://127.0.0.1:8500", service = "ledger" }
//!
//! [plugins.payment]
//! path = "plugins/payment.wasm"
//! services = ["payments"]
//! publish = ["payment.*"]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::magic::RelativePathBuf;
use serde::{Deserialize, Serialize};

pub use crate::api::ServerConfig;
pub use crate::capabilities::cache::CacheConfig;
pub use crate::capabilities::services::ServiceConfig;
pub use crate::cluster::ClusterConfig;
pub use crate::discovery::DiscoveryConfig;
pub use crate::events::{EventsConfig, SubscriptionConfig};
pub use crate::model::{Secret, WorkflowDefinition};
use crate::plugins::Use;
pub use crate::plugins::{PluginConfig, RegistryConfig};
pub use crate::retention::RetentionConfig;
pub use crate::runtime::RuntimeConfig;
use crate::runtime::{RuntimeSetup, World};
pub use crate::store::StoreConfig;
pub use crate::telemetry::TelemetryConfig;

/// `FLOWHOST_` variables that the configuration does not read: the CLI's
/// `FLOWHOST_CONFIG` (the file), `FLOWHOST_URL` (the host the client commands talk to) and
/// `FLOWHOST_LOG_FORMAT`, and the tests' and benches' `FLOWHOST_TEST_POSTGRES` (the server
/// they make scratch databases on), which the hosts they start inherit.
const CLI_VARIABLES: [&str; 4] = ["config", "url", "log_format", "test_postgres"];

/// The root of the configuration: one section per subsystem, each defined by its
/// subsystem.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Config {
    /// Where the host keeps its state: the run store (`runs/`) and compiled plugin code
    /// (`compiled/`). Default `flowhost-data`.
    pub data_dir: DataDir,
    /// The WebAssembly runtime: limits and the instance pool.
    pub runtime: RuntimeConfig,
    /// Named services plugins may call, by name.
    pub services: BTreeMap<String, ServiceConfig>,
    /// The cache capability.
    pub cache: CacheConfig,
    /// The events capability and transport.
    pub events: EventsConfig,
    /// Plugins by name.
    pub plugins: BTreeMap<String, PluginConfig>,
    /// Workflows by name.
    pub workflows: BTreeMap<String, WorkflowDefinition>,
    /// Event subscriptions by name: topic patterns to handler plugins.
    pub subscriptions: BTreeMap<String, SubscriptionConfig>,
    /// Plugin versions: uploads, the directory watch, how many are kept.
    pub registry: RegistryConfig,
    /// The HTTP server and admission.
    pub server: ServerConfig,
    /// Which backend holds runs, events and the registry: sled (default) or PostgreSQL.
    pub store: StoreConfig,
    /// This node among those sharing the store: its id, address and lease.
    pub cluster: ClusterConfig,
    /// This node in a service registry: registered with Consul while it serves.
    pub discovery: DiscoveryConfig,
    /// How long finished runs, dead letters and unreleased events are kept.
    pub retention: RetentionConfig,
    /// Metrics and traces: `/metrics`, trace context, OTLP export.
    pub telemetry: TelemetryConfig,
    /// The bearer token of the admin routes (`/v1/plugins`, `/v1/workflows`); usually set
    /// through `FLOWHOST_ADMIN_TOKEN`. Without it those routes are off.
    pub admin_token: Option<Secret>,
    /// A bearer token the routes that make plugins run (start and retry runs, publish and
    /// redeliver events) then require; usually set through `FLOWHOST_TRIGGER_TOKEN`.
    /// Without it they are open.
    pub trigger_token: Option<Secret>,
}

/// `data-dir`, relative to the configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DataDir(pub RelativePathBuf);

impl Default for DataDir {
    fn default() -> Self {
        Self(PathBuf::from("flowhost-data").into())
    }
}

impl From<PathBuf> for DataDir {
    fn from(path: PathBuf) -> Self {
        Self(path.into())
    }
}

impl DataDir {
    /// The directory, resolved against the configuration file.
    pub fn relative(&self) -> PathBuf {
        self.0.relative()
    }
}

/// A configuration that loaded but does not hold together: the key and what is wrong.
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

    /// Checks each section, then what crosses sections: grants, plugins and handlers by
    /// name.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: String, reason: String| ConfigError::Invalid { key, reason };
        self.runtime
            .validate()
            .map_err(|e| invalid(format!("runtime.{}", e.key), e.reason.into()))?;
        self.telemetry
            .validate()
            .map_err(|e| invalid(format!("telemetry.{}", e.key), e.reason))?;
        self.store
            .validate()
            .map_err(|e| invalid(format!("store.{}", e.key), e.reason.into()))?;
        self.cluster
            .validate()
            .map_err(|e| invalid(format!("cluster.{}", e.key), e.reason.into()))?;
        if let Some(register) = &self.discovery.register {
            register.validate().map_err(|e| match e {
                crate::discovery::RegisterError::Invalid { key, reason } => {
                    invalid(format!("discovery.register.{key}"), reason)
                }
                other => invalid("discovery.register".into(), other.to_string()),
            })?;
        }
        self.retention.validate().map_err(|e| {
            invalid(
                format!("retention.{}", e.0),
                "must be more than zero".into(),
            )
        })?;
        for (name, service) in &self.services {
            service
                .validate()
                .map_err(|e| invalid(format!("services.{name}"), e.0))?;
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
                    .map_err(|e| invalid(format!("plugins.{name}.publish"), e.0))?;
            }
            if plugin
                .memory_limit_mib
                .is_some_and(|mib| mib == 0 || mib > 4096)
            {
                return Err(invalid(
                    format!("plugins.{name}.memory-limit-mib"),
                    "must be 1..=4096".into(),
                ));
            }
            if plugin.timeout.is_some_and(|t| t.is_zero()) {
                return Err(invalid(
                    format!("plugins.{name}.timeout"),
                    "must be more than zero".into(),
                ));
            }
        }
        for (name, workflow) in &self.workflows {
            workflow
                .validate()
                .map_err(|e| invalid(format!("workflows.{name}.{}", e.key), e.reason))?;
            for (step, _) in workflow.all_steps() {
                if let Some(plugin) = &step.plugin
                    && !self.plugins.contains_key(plugin)
                {
                    return Err(invalid(
                        format!("workflows.{name}.steps.{}.plugin", step.name),
                        format!("unknown plugin `{plugin}`"),
                    ));
                }
                if let Some(child) = &step.workflow
                    && let Err(reason) = crate::workflows::check_child(name, child, |w| {
                        let definition = self.workflows.get(w)?;
                        Some(definition.children().map(str::to_owned).collect())
                    })
                {
                    return Err(invalid(
                        format!("workflows.{name}.steps.{}.workflow", step.name),
                        reason,
                    ));
                }
            }
        }
        crate::events::check_subscriptions(&self.subscriptions, &self.workflows, &|name| {
            self.plugins.contains_key(name)
        })
        .map_err(|e| match e {
            crate::events::SubscriptionError::UnknownHandler { key, handler } => invalid(
                format!("{key}.handler"),
                format!("unknown plugin `{handler}`"),
            ),
            other => invalid("subscriptions".into(), other.to_string()),
        })?;
        for (key, token) in [
            ("admin-token", &self.admin_token),
            ("trigger-token", &self.trigger_token),
        ] {
            if token.as_ref().is_some_and(|t| t.expose().len() < 16) {
                return Err(invalid(key.into(), "must be at least 16 characters".into()));
            }
        }
        for (key, value) in [
            (
                "server.max-concurrent-runs",
                self.server.max_concurrent_runs,
            ),
            ("server.max-pending-runs", self.server.max_pending_runs),
        ] {
            if value == 0 {
                return Err(invalid(key.into(), "must be at least 1".into()));
            }
        }
        Ok(())
    }

    /// Where the run store lives.
    pub fn runs_dir(&self) -> PathBuf {
        self.data_dir.relative().join("runs")
    }

    /// What the runtime needs besides `[runtime]`: the largest memory cap any plugin may
    /// get (which sizes the instance pool's slots) and where compiled code is cached.
    pub fn runtime_setup(&self) -> RuntimeSetup {
        RuntimeSetup {
            max_memory_limit_mib: self
                .plugins
                .values()
                .filter_map(|p| p.memory_limit_mib)
                .fold(self.runtime.memory_limit_mib, u32::max),
            compiled_dir: Some(self.data_dir.relative().join("compiled")),
        }
    }

    /// How the workflows and subscriptions use each plugin: a step needs a `step-plugin`,
    /// a subscription a `handler-plugin`.
    pub fn plugin_uses(&self) -> Vec<Use> {
        let steps = self.workflows.iter().flat_map(|(workflow, definition)| {
            definition.all_steps().filter_map(move |(step, _)| {
                Some(Use {
                    plugin: step.plugin.clone()?,
                    world: World::Step,
                    key: format!("workflows.{workflow}.steps.{}.plugin", step.name),
                })
            })
        });
        let handlers = self.subscriptions.iter().map(|(name, subscription)| Use {
            plugin: subscription.handler.clone(),
            world: World::Handler,
            key: format!("subscriptions.{name}.handler"),
        });
        steps.chain(handlers).collect()
    }

    /// One line describing the effective configuration, logged at start.
    pub fn summary(&self) -> String {
        format!(
            "data-dir={} plugins=[{}] workflows=[{}] services=[{}] call-timeout={:?} memory-limit={}MiB max-instances={} cache={}MiB max-concurrent-runs={} max-pending-runs={} retention.runs={:?} metrics={} traces={}",
            self.data_dir.relative().display(),
            self.plugins.keys().cloned().collect::<Vec<_>>().join(","),
            self.workflows.keys().cloned().collect::<Vec<_>>().join(","),
            self.services.keys().cloned().collect::<Vec<_>>().join(","),
            self.runtime.call_timeout,
            self.runtime.memory_limit_mib,
            self.runtime.max_instances,
            self.cache.max_bytes / (1024 * 1024),
            self.server.max_concurrent_runs,
            self.server.max_pending_runs,
            self.retention.runs,
            self.telemetry.metrics,
            match (&self.telemetry.otlp_endpoint, self.telemetry.traces) {
                (Some(endpoint), _) => endpoint.as_str(),
                (None, true) => "local",
                (None, false) => "off",
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
    fn discovery_is_read_and_checked() {
        let config = Config::from_toml(
            "[services.p]\ndiscovery = { dns-srv = \"_p._tcp.example.internal\" }\n[discovery.register]\nconsul = \"http://127.0.0.1:8500\"\n",
        )
        .unwrap();
        assert_eq!(config.discovery.register.unwrap().service, "flowhost");
        let err = Config::from_toml(
            "[discovery.register]\nconsul = \"http://127.0.0.1:8500\"\ncheck-interval = \"10ms\"\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "discovery.register.check-interval: must be at least 1s"
        );
        let err = Config::from_toml(
            "[services.p]\nurls = [\"http://a\"]\ndiscovery = { dns-srv = \"_p._tcp.x\" }\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "services.p: urls and discovery: give one or the other, not both"
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
            jail.set_env(
                "FLOWHOST_TEST_POSTGRES",
                "postgres://postgres@127.0.0.1:5499/x",
            );
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
