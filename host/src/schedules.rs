//! Schedules: the runs of workflows with a `schedule` (cron), started at their times.
//!
//! One task looks at the current definitions at least once a second (and at each
//! firing's time). Each firing is a run with the id `<workflow>@<time>` (RFC 3339, UTC),
//! input `{"scheduled_at": <time>}`, so a firing started twice — after a crash between its
//! start and the mark that records it — is one run: the engine returns the existing one.
//! The mark (the latest firing started, per workflow, in the store) is where the next look
//! begins; firings found more than [`LATE_MS`] late were missed while the host was down and
//! follow the workflow's `catch-up`. A workflow seen with a schedule for the first time
//! starts from now: nothing before it is missed.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::model::schedule::LATE_MS;
use crate::model::{Clock, RunId, rfc3339};
use crate::saga::{Engine, EngineError};
use crate::store::{StoreError, WorkflowStore};

/// The longest time between two looks: a schedule pushed or changed is seen within it.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Starts the runs of every scheduled workflow at their times, until `stop`.
pub async fn run(
    engine: Engine,
    store: Arc<dyn WorkflowStore>,
    clock: Arc<dyn Clock>,
    stop: CancellationToken,
) {
    loop {
        let next = match look(&engine, &*store, &*clock).await {
            Ok(next) => next,
            Err(error) => {
                tracing::warn!(%error, "starting scheduled runs failed; trying again");
                None
            }
        };
        let now = clock.now_ms();
        let wait = next
            .map_or(LOOK_EVERY, |at| {
                Duration::from_millis(at.saturating_sub(now))
            })
            .min(LOOK_EVERY);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Why a look stopped short.
#[derive(Debug, thiserror::Error)]
enum LookError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Starts what is due; returns when the next firing is.
async fn look(
    engine: &Engine,
    store: &dyn WorkflowStore,
    clock: &dyn Clock,
) -> Result<Option<u64>, LookError> {
    let now = clock.now_ms();
    let mut next: Option<u64> = None;
    for workflow in engine.workflows().all_current() {
        let Some(schedule) = &workflow.schedule else {
            continue;
        };
        let Some(mark) = store.schedule_mark(&workflow.name)? else {
            store.put_schedule_mark(&workflow.name, now)?;
            continue;
        };
        for at in schedule.due(mark, now) {
            let time = rfc3339(at);
            let id = RunId::parse(&format!("{}@{time}", workflow.name))
                .expect("a workflow name and a time make a run id");
            let input = Map::from_iter([("scheduled_at".to_owned(), Value::String(time))]);
            if now.saturating_sub(at) > LATE_MS {
                tracing::info!(workflow = %workflow.name, run_id = %id, "starting a firing missed while the host was down");
            }
            engine.start(&workflow.name, input, Some(id), None).await?;
            store.put_schedule_mark(&workflow.name, at)?;
        }
        let upcoming = schedule.after(now.max(mark));
        next = match (next, upcoming) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(next)
}
