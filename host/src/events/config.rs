//! `[events]`: what a plugin call may publish and how events travel.

use serde::{Deserialize, Serialize};

use super::transport::TransportConfig;
use crate::capabilities::events::PublishLimits;

/// `[events]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Largest event payload, in bytes. Default 256 KiB.
    pub max_event_bytes: usize,
    /// Most events one plugin call may publish. Default 100.
    pub max_events_per_call: usize,
    /// How events travel to the handlers: `kind = "embedded"` (the default), `"nats"`,
    /// `"rabbitmq"` or `"redis"`.
    pub transport: TransportConfig,
}

impl Default for EventsConfig {
    fn default() -> Self {
        let limits = PublishLimits::default();
        Self {
            max_event_bytes: limits.max_event_bytes,
            max_events_per_call: limits.max_events_per_call,
            transport: TransportConfig::default(),
        }
    }
}

impl EventsConfig {
    /// The limits the events capability enforces.
    pub fn limits(&self) -> PublishLimits {
        PublishLimits {
            max_event_bytes: self.max_event_bytes,
            max_events_per_call: self.max_events_per_call,
        }
    }
}
