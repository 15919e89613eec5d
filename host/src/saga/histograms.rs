//! The step attempt histograms (`flowhost_step_attempt_duration_seconds`), by workflow,
//! step, direction and outcome: registered with the recorder on a step's first attempt and
//! kept, so that each attempt records without building a key.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use metrics::Histogram;

use crate::model::{Direction, Outcome};
use crate::telemetry::metrics::STEP_ATTEMPT_DURATION;

/// How a plugin attempt can end: the outcomes of its series.
const OUTCOMES: [Outcome; 4] = [
    Outcome::Ok,
    Outcome::Retryable,
    Outcome::Fatal,
    Outcome::Host,
];

/// One step's series: by direction (execute, compensate), then by outcome.
type StepSeries = [[Histogram; 4]; 2];

/// The histograms of every step attempted so far. A std `RwLock`: held for a look-up, or to
/// add a step's series, never across an `.await`.
#[derive(Default)]
pub(super) struct AttemptHistograms {
    by_workflow: RwLock<HashMap<String, HashMap<String, Arc<StepSeries>>>>,
}

impl AttemptHistograms {
    /// Records that an attempt of `step` of `workflow` in `direction` ended `outcome`
    /// after `took`.
    pub(super) fn record(
        &self,
        workflow: &str,
        step: &str,
        direction: Direction,
        outcome: Outcome,
        took: Duration,
    ) {
        let Some(outcome) = OUTCOMES.iter().position(|o| *o == outcome) else {
            return;
        };
        let direction = match direction {
            Direction::Execute => 0,
            Direction::Compensate => 1,
        };
        let found = self
            .by_workflow
            .read()
            .expect("attempt histograms lock")
            .get(workflow)
            .and_then(|steps| steps.get(step))
            .cloned();
        let series = found.unwrap_or_else(|| {
            let series = Arc::new(series(workflow, step));
            self.by_workflow
                .write()
                .expect("attempt histograms lock")
                .entry(workflow.to_owned())
                .or_default()
                .entry(step.to_owned())
                .or_insert(series)
                .clone()
        });
        series[direction][outcome].record(took);
    }
}

/// `step`'s series, registered with the recorder.
fn series(workflow: &str, step: &str) -> StepSeries {
    [Direction::Execute, Direction::Compensate].map(|direction| {
        OUTCOMES.map(|outcome| {
            metrics::histogram!(
                STEP_ATTEMPT_DURATION,
                "workflow" => workflow.to_owned(),
                "step" => step.to_owned(),
                "direction" => direction.as_str(),
                "outcome" => outcome.as_str(),
            )
        })
    })
}
