//! `[services.<name>]`: where a service lives and how calls to it behave.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::RetryPolicy;

/// One named service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServiceConfig {
    /// Base URLs of its instances (`http` or `https`, with an optional path prefix). Calls
    /// rotate across them; one that refuses connections or times out sits out `cooldown`.
    pub urls: Vec<String>,
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
        if self.urls.is_empty() {
            return invalid("urls: at least one URL is required".into());
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

/// A service setting that cannot be used: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidService(pub String);
