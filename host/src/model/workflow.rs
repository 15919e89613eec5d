//! Workflow definitions: `[workflows.<name>]` in the configuration, the same schema over the
//! API later, and what a run is pinned to.
//!
//! ```toml
//! [workflows.order_processing]
//! [[workflows.order_processing.steps]]
//! name = "process_payment"
//! plugin = "payment"
//! compensate = true
//! timeout = "10s"
//! retry = { attempts = 3, initial-backoff = "100ms", max-backoff = "2s", jitter = 0.5 }
//! ```
//!
//! A definition's identity is the SHA-256 of its canonical JSON ([`WorkflowDefinition::digest`]):
//! every default filled in, fields in declaration order, so that the same definition written
//! two ways has one digest, and any change that alters behaviour has another.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::RetryPolicy;

/// One workflow: an ordered list of steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct WorkflowDefinition {
    /// The steps, run in order; compensations run in reverse.
    pub steps: Vec<StepDefinition>,
    /// A topic pattern whose events start a run, with the event's data as its context.
    #[serde(default)]
    pub trigger: Option<String>,
}

/// One step of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StepDefinition {
    /// Unique within the workflow; passed to the plugin in `step-info.step`. Runs match
    /// their steps to a definition by this name, never by position.
    pub name: String,
    /// The plugin that serves it (a `step-plugin`).
    pub plugin: String,
    /// Whether a completed step is undone by the plugin's `compensate` when a later step
    /// fails. Default true.
    #[serde(default = "yes")]
    pub compensate: bool,
    /// How often and how patiently a failed attempt is retried (its compensation too).
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Deadline of one attempt; default the plugin's call timeout.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

fn yes() -> bool {
    true
}

/// A definition that does not hold together: the key below `workflows.<name>` and what is
/// wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct InvalidDefinition {
    /// The key, e.g. `steps.charge.retry.attempts`.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl WorkflowDefinition {
    /// Checks what serde cannot. Plugins are checked by whoever knows them.
    pub fn validate(&self) -> Result<(), InvalidDefinition> {
        let invalid = |key: String, reason: String| Err(InvalidDefinition { key, reason });
        if self.steps.is_empty() {
            return invalid("steps".into(), "a workflow needs at least one step".into());
        }
        let mut seen = std::collections::HashSet::new();
        for step in &self.steps {
            if step.name.is_empty() {
                return invalid("steps".into(), "a step needs a name".into());
            }
            if !seen.insert(step.name.as_str()) {
                return invalid("steps".into(), format!("duplicate step `{}`", step.name));
            }
            if let Err(e) = step.retry.validate() {
                return invalid(
                    format!("steps.{}.retry.{}", step.name, e.field),
                    e.reason.into(),
                );
            }
            if step.timeout.is_some_and(|t| t.is_zero()) {
                return invalid(
                    format!("steps.{}.timeout", step.name),
                    "must be more than zero".into(),
                );
            }
        }
        Ok(())
    }

    /// The step named `name`.
    pub fn step(&self, name: &str) -> Option<&StepDefinition> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// The canonical JSON: every default explicit, fields in declaration order.
    pub fn canonical(&self) -> String {
        serde_json::to_string(self).expect("a definition serializes")
    }

    /// SHA-256 of [`Self::canonical`], hex: the version's identity.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.canonical().as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> WorkflowDefinition {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn one_definition_written_two_ways_has_one_digest() {
        let short = parse(r#"{"steps":[{"name":"a","plugin":"p"}]}"#);
        let long = parse(
            r#"{"trigger":null,"steps":[{"plugin":"p","name":"a","compensate":true,
                "retry":{"attempts":3,"initial-backoff":"100ms","max-backoff":"5s","jitter":0.5}}]}"#,
        );
        assert_eq!(short.digest(), long.digest());
        let changed = parse(r#"{"steps":[{"name":"a","plugin":"p","compensate":false}]}"#);
        assert_ne!(short.digest(), changed.digest());
        assert_eq!(short.digest().len(), 64);
    }

    #[test]
    fn a_typo_or_a_duplicate_is_named() {
        let typo = serde_json::from_str::<WorkflowDefinition>(
            r#"{"steps":[{"name":"a","plugin":"p","compensat":false}]}"#,
        );
        assert!(typo.unwrap_err().to_string().contains("compensat"));
        let twice = parse(r#"{"steps":[{"name":"a","plugin":"p"},{"name":"a","plugin":"q"}]}"#);
        assert_eq!(twice.validate().unwrap_err().reason, "duplicate step `a`");
        let none = parse(r#"{"steps":[{"name":"a","plugin":"p","retry":{"attempts":0}}]}"#);
        assert_eq!(none.validate().unwrap_err().key, "steps.a.retry.attempts");
    }
}
