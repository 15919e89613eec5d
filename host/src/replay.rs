//! Replay: a recorded attempt (a workflow with `record = true`, see
//! [`crate::model::recording`]) run again on a plugin version, with everything that came
//! from outside the component answered from the recording (service calls, cache reads,
//! the ids of published events) and no network, then compared with what was recorded: the
//! outcome and output, the calls made (service, method, path, headers, body) and the events
//! published (topic, key, data). The same version gives no difference; a changed one shows
//! where it behaves differently.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};

use crate::bindings::types::{StepError, StepInfo};
use crate::model::recording::{RecordedCall, RecordedEvent};
use crate::model::run::step_output;
use crate::model::{Direction, JournalEntry, Outcome, RunId, WorkflowDefinition};
use crate::runtime::{CallOptions, Plugin, Runtime, WarmInstance};
use crate::store::{ListQuery, RunStore, StoreError};

/// What differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Aspect {
    /// The outcome, the output or the error.
    Output,
    /// A service call (by its place among the attempt's calls).
    Call,
    /// A published event (by its place among the attempt's events).
    Event,
}

/// One difference between a recorded attempt and its replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// What differs.
    pub aspect: Aspect,
    /// The call's or event's place (0-based); none for the output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// As recorded (null: there was none).
    pub recorded: Value,
    /// As replayed (null: there was none).
    pub replayed: Value,
}

/// A replayed attempt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replayed {
    /// The step.
    pub step: String,
    /// Its direction.
    pub direction: Direction,
    /// The attempt's number.
    pub attempt: u32,
    /// Where the replay differs; empty when it behaved as recorded.
    pub differences: Vec<Difference>,
}

/// Replays `entry`, an attempt of run `run_id` of `workflow`, on `plugin`; none if the entry
/// holds no recording.
pub async fn replay(
    runtime: &Runtime,
    plugin: &Plugin,
    run_id: &str,
    workflow: &str,
    entry: &JournalEntry,
) -> Option<Replayed> {
    let recording = entry.recording.as_deref()?;
    let info = StepInfo {
        run_id: run_id.to_owned(),
        workflow: workflow.to_owned(),
        step: entry.step.clone(),
        attempt: entry.attempt,
        idempotency_key: format!("{run_id}:{}:{}", entry.step, entry.direction.as_str()),
    };
    let options = CallOptions {
        replay: Some(Arc::new(recording.clone())),
        record: true,
        ..CallOptions::default()
    };
    let context = Value::Object(recording.input.clone()).to_string();
    let mut warm = WarmInstance::default();
    let answer = runtime
        .call_step_in(&mut warm, plugin, entry.direction, &info, &context, options)
        .await;
    let (replayed, calls, events) = match answer {
        Ok(answer) => {
            let events: Vec<RecordedEvent> = answer.events.iter().map(Into::into).collect();
            (outcome_of(answer.result), answer.calls, events)
        }
        Err(error) => (
            json!({ "outcome": Outcome::Host.as_str(), "error": error.to_string() }),
            Vec::new(),
            Vec::new(),
        ),
    };
    let mut differences = Vec::new();
    let mut recorded = recorded_outcome(entry);
    let mut replayed = replayed;
    if entry.direction == Direction::Compensate {
        // A compensation's output is not journaled: its outcome is what there is.
        for outcome in [&mut recorded, &mut replayed] {
            if let Some(outcome) = outcome.as_object_mut() {
                outcome.remove("output");
            }
        }
    }
    if recorded != replayed {
        differences.push(Difference {
            aspect: Aspect::Output,
            index: None,
            recorded,
            replayed,
        });
    }
    compare(
        Aspect::Call,
        &recording.calls.iter().map(request).collect::<Vec<_>>(),
        &calls.iter().map(request).collect::<Vec<_>>(),
        &mut differences,
    );
    compare(
        Aspect::Event,
        &recording.events.iter().map(event).collect::<Vec<_>>(),
        &events.iter().map(event).collect::<Vec<_>>(),
        &mut differences,
    );
    Some(Replayed {
        step: entry.step.clone(),
        direction: entry.direction,
        attempt: entry.attempt,
        differences,
    })
}

/// Adds a difference for each place where `recorded` and `replayed` differ, one missing on
/// either side included.
fn compare(
    aspect: Aspect,
    recorded: &[Value],
    replayed: &[Value],
    differences: &mut Vec<Difference>,
) {
    for index in 0..recorded.len().max(replayed.len()) {
        let (before, after) = (recorded.get(index), replayed.get(index));
        if before != after {
            differences.push(Difference {
                aspect,
                index: Some(index),
                recorded: before.cloned().unwrap_or(Value::Null),
                replayed: after.cloned().unwrap_or(Value::Null),
            });
        }
    }
}

/// A call as compared: the request, not the answer (which is the recording's either way).
fn request(call: &RecordedCall) -> Value {
    json!({
        "service": call.service,
        "method": call.method,
        "path": call.path,
        "headers": call.headers,
        "body": call.body,
    })
}

/// An event as compared: what it says, not its id (which the replay takes from the
/// recording).
fn event(event: &RecordedEvent) -> Value {
    json!({ "topic": event.topic, "key": event.key, "data": event.data })
}

/// The outcome and output (or error) of a recorded attempt, as compared.
fn recorded_outcome(entry: &JournalEntry) -> Value {
    match entry.outcome {
        Outcome::Ok => {
            json!({ "outcome": "ok", "output": entry.output.clone().unwrap_or_default() })
        }
        outcome => json!({ "outcome": outcome.as_str(), "error": entry.error }),
    }
}

/// The plugin's answer in the form [`recorded_outcome`] gives, read as the engine reads it
/// ([`step_output`]).
fn outcome_of(result: Result<String, StepError>) -> Value {
    match result {
        Ok(json) => match step_output(&json) {
            Ok(output) => json!({ "outcome": "ok", "output": output }),
            Err(error) => json!({ "outcome": "fatal", "error": error }),
        },
        Err(StepError::Retryable(message)) => json!({ "outcome": "retryable", "error": message }),
        Err(StepError::Fatal(message)) => json!({ "outcome": "fatal", "error": message }),
    }
}

/// A recorded attempt of a plugin, with the run it belongs to.
#[derive(Debug, Clone)]
pub struct RecordedAttempt {
    /// The run.
    pub run_id: RunId,
    /// Its workflow.
    pub workflow: String,
    /// The attempt, with its recording.
    pub entry: JournalEntry,
}

/// The latest `limit` recorded attempts (by when they ended) of plugin `plugin`'s steps in
/// the runs of `workflows` (name and definition; those without `record = true` have none),
/// newest first: what a canary gate replays. Looks at the newest `limit` runs of each
/// workflow.
pub async fn latest_recorded(
    runs: &dyn RunStore,
    workflows: &[(&str, &WorkflowDefinition)],
    plugin: &str,
    limit: usize,
) -> Result<Vec<RecordedAttempt>, StoreError> {
    let mut found = Vec::new();
    for &(workflow, definition) in workflows {
        let steps: HashSet<&str> = definition
            .all_steps()
            .filter(|(step, _)| step.plugin.as_deref() == Some(plugin))
            .map(|(step, _)| step.name.as_str())
            .collect();
        if !definition.record || steps.is_empty() {
            continue;
        }
        let query = ListQuery {
            workflow: Some(workflow.to_owned()),
            limit,
            ..ListQuery::default()
        };
        for run in runs.list(&query).await?.runs {
            for entry in runs.journal(&run.id).await? {
                if entry.recording.is_some() && steps.contains(entry.step.as_str()) {
                    found.push(RecordedAttempt {
                        run_id: run.id.clone(),
                        workflow: workflow.to_owned(),
                        entry,
                    });
                }
            }
        }
    }
    found.sort_by_key(|attempt| std::cmp::Reverse(attempt.entry.ended_ms));
    found.truncate(limit);
    Ok(found)
}
