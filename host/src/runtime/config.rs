//! `[runtime]`: the limits every plugin call runs under unless its plugin says otherwise.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[runtime]`.
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
    /// Largest output a step may return, in bytes of JSON; a larger one fails the step for
    /// good, since the run's context carries it to every later step and into the store.
    /// Default 1 MiB.
    pub max_output_bytes: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(30),
            memory_limit_mib: 64,
            max_instances: 1000,
            compiled_cache: true,
            max_output_bytes: 1024 * 1024,
        }
    }
}

/// A `[runtime]` value out of range: the key and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("runtime.{key}: {reason}")]
pub struct InvalidRuntime {
    /// The key below `runtime`.
    pub key: &'static str,
    /// What is wrong.
    pub reason: &'static str,
}

impl RuntimeConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), InvalidRuntime> {
        let invalid = |key, reason| Err(InvalidRuntime { key, reason });
        if self.memory_limit_mib == 0 || self.memory_limit_mib > 4096 {
            return invalid("memory-limit-mib", "must be 1..=4096");
        }
        if self.call_timeout.is_zero() {
            return invalid("call-timeout", "must be more than zero");
        }
        if self.max_instances == 0 {
            return invalid("max-instances", "must be at least 1");
        }
        if self.max_output_bytes == 0 {
            return invalid("max-output-bytes", "must be at least 1");
        }
        Ok(())
    }
}
