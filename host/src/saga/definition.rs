//! Workflow definitions: `[workflows.<name>]` in the configuration.
//!
//! ```toml
//! [workflows.order_processing]
//! [[workflows.order_processing.steps]]
//! name = "process_payment"
//! plugin = "payment"
//! compensate = true
//! timeout = "10s"
//! retry = { attempts = 3, initial-backoff = "100ms", max-backoff = "2s" }
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One workflow: an ordered list of steps.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct WorkflowConfig {
    /// The steps, run in order; compensations run in reverse.
    pub steps: Vec<StepConfig>,
    /// A topic pattern whose events start a run, with the event's data as its context.
    /// Used by the events subsystem.
    #[serde(default)]
    pub trigger: Option<String>,
}

/// One step of a workflow.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StepConfig {
    /// Unique within the workflow; passed to the plugin in `step-info.step`.
    pub name: String,
    /// The plugin that serves it (a `step-plugin`).
    pub plugin: String,
    /// Whether a completed step is undone by the plugin's `compensate` when a later step
    /// fails. Default true.
    #[serde(default = "yes")]
    pub compensate: bool,
    /// How often and how patiently a failed attempt is retried.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Deadline of one attempt; default the plugin's call timeout.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

fn yes() -> bool {
    true
}

/// Retries of a step (and of its compensation).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts in all, the first included. Default 3.
    pub attempts: u32,
    /// Delay before the first retry; it doubles per retry. Default 100 ms.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest delay between attempts. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `next` (2 for the first retry): exponential, capped.
    pub fn backoff(&self, next: u32) -> Duration {
        let doublings = next.saturating_sub(2).min(20);
        self.initial_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff)
    }
}

impl WorkflowConfig {
    /// Checks what serde cannot. The error is the key below `workflows.<name>` and what
    /// is wrong with it.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.steps.is_empty() {
            return Err(("steps".into(), "a workflow needs at least one step".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for step in &self.steps {
            if !seen.insert(step.name.as_str()) {
                return Err(("steps".into(), format!("duplicate step `{}`", step.name)));
            }
            if step.retry.attempts == 0 {
                return Err((
                    format!("steps.{}.retry.attempts", step.name),
                    "must be at least 1".into(),
                ));
            }
            if step.timeout.is_some_and(|t| t.is_zero()) {
                return Err((
                    format!("steps.{}.timeout", step.name),
                    "must be more than zero".into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
        };
        assert_eq!(policy.backoff(2), Duration::from_millis(100));
        assert_eq!(policy.backoff(3), Duration::from_millis(200));
        assert_eq!(policy.backoff(4), Duration::from_millis(350));
        assert_eq!(policy.backoff(40), Duration::from_millis(350));
    }
}
