//! Schedules: the runs of workflows with a `schedule` (cron), started at their times.
//!
//! One task looks at the current definitions at least once a second (and at each
//! firing's time). Each firing is a run with the id `<workflow>@<time>` (RFC 3339, UTC),
//! input `{"scheduled_at": <time>}`, so a firing started twice — after a crash between its
//! start and the mark that records it — is one run: the engine returns the existing one.
//! The mark (the latest firing started, per workflow, in the store) is where the next look
//! begins; firings due before the host came up were missed while it was down and follow the
//! workflow's `catch-up`, while those due since are started however late a busy host looks
//! (a start waits for room rather than being refused). A workflow seen with a schedule for
//! the first time starts from now: nothing before it is missed.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::events::Trigger;
use crate::model::schedule::Schedule;
use crate::model::{Clock, RunId, rfc3339};
use crate::saga::Engine;
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
    // What was due before this is what the host missed while it was down.
    let up_ms = clock.now_ms();
    loop {
        let next = tokio::select! {
            next = look(&engine, &*store, &*clock, up_ms) => next,
            () = stop.cancelled() => return,
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

/// Why a workflow's firings could not be started; the next look tries again.
#[derive(Debug, thiserror::Error)]
enum LookError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Start(#[from] Box<dyn std::error::Error + Send + Sync>),
}

/// Starts what is due of every scheduled workflow; returns when the next firing is. A
/// workflow that fails is logged and does not hold up the others.
async fn look(
    engine: &Engine,
    store: &dyn WorkflowStore,
    clock: &dyn Clock,
    up_ms: u64,
) -> Option<u64> {
    let now = clock.now_ms();
    let mut next: Option<u64> = None;
    for workflow in engine.workflows().all_current() {
        let Some(schedule) = &workflow.schedule else {
            continue;
        };
        match fire(engine, store, &workflow.name, schedule, up_ms, now).await {
            Ok(mark) => {
                if let Some(upcoming) = schedule.after(now.max(mark)) {
                    next = Some(next.map_or(upcoming, |n| n.min(upcoming)));
                }
            }
            Err(error) => {
                tracing::warn!(workflow = %workflow.name, %error, "starting a scheduled run failed; the next look tries again");
            }
        }
    }
    next
}

/// Starts the due firings of one workflow, each as the run `<workflow>@<time>`, waiting
/// for room rather than dropping one; returns the mark.
async fn fire(
    engine: &Engine,
    store: &dyn WorkflowStore,
    name: &str,
    schedule: &Schedule,
    up_ms: u64,
    now: u64,
) -> Result<u64, LookError> {
    let Some(mut mark) = store.schedule_mark(name).await? else {
        store.put_schedule_mark(name, now).await?;
        return Ok(now);
    };
    for at in schedule.due(mark, up_ms, now) {
        let time = rfc3339(at);
        let id = RunId::parse(&format!("{name}@{time}")).map_err(|e| {
            LookError::Start(format!("{e}: shorten the workflow's name to schedule it").into())
        })?;
        let input = Map::from_iter([("scheduled_at".to_owned(), Value::String(time))]);
        if at < up_ms {
            tracing::info!(workflow = name, run_id = %id, "starting a firing missed while the host was down");
        }
        Trigger::start(engine, name, input, id, None).await?;
        store.put_schedule_mark(name, at).await?;
        mark = at;
    }
    Ok(mark)
}
