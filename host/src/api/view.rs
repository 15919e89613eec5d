//! How runs look in the API.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::model::{Run, RunError, StepStatus, rfc3339};

/// A run as `GET /v1/runs/{id}` shows it.
#[derive(Serialize)]
pub struct RunView<'a> {
    id: &'a str,
    workflow: &'a str,
    /// The digest of the definition the run follows.
    workflow_version: Option<&'a str>,
    status: &'static str,
    context: Map<String, Value>,
    error: Option<&'a RunError>,
    steps: Vec<StepView<'a>>,
    plugins: &'a BTreeMap<String, String>,
    /// The run whose child workflow step started this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<&'a str>,
    created_at: String,
    updated_at: String,
    ended_at: Option<String>,
}

#[derive(Serialize)]
struct StepView<'a> {
    name: &'a str,
    status: StepStatus,
    attempts: u32,
    compensation_attempts: u32,
    started_at: Option<String>,
    ended_at: Option<String>,
    error: Option<&'a str>,
    /// The parallel branch the step belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    branch: Option<&'a str>,
    /// The child run a child workflow step started.
    #[serde(skip_serializing_if = "Option::is_none")]
    child: Option<&'a str>,
}

impl<'a> RunView<'a> {
    /// The view of `run`.
    pub fn new(run: &'a Run) -> Self {
        Self {
            id: &run.id,
            workflow: &run.workflow,
            workflow_version: run.workflow_version.as_deref(),
            status: run.status.as_str(),
            context: run.context(),
            error: run.error.as_ref(),
            steps: run
                .steps
                .iter()
                .map(|step| StepView {
                    name: &step.name,
                    status: step.status,
                    attempts: step.attempts,
                    compensation_attempts: step.compensation_attempts,
                    started_at: step.started_ms.map(rfc3339),
                    ended_at: step.ended_ms.map(rfc3339),
                    error: step.error.as_deref(),
                    branch: step.branch.as_deref(),
                    child: step.child.as_deref(),
                })
                .collect(),
            plugins: &run.plugins,
            parent: run.parent.as_deref(),
            created_at: rfc3339(run.created_ms),
            updated_at: rfc3339(run.updated_ms),
            ended_at: run.ended_ms.map(rfc3339),
        }
    }
}
