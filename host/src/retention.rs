//! Retention: a background pass that deletes what outlived `[retention]`, in bounded
//! batches, yielding to other tasks between them, so that the API never waits long for it.
//!
//! - **Finished runs**, with their journals, indexes and idempotency keys, once they ended
//!   `retention.runs` ago. Only runs that are done for good go: `completed`, `compensated`,
//!   `cancelled`, and `failed` with nothing to undo. A `compensation_failed` run waits for
//!   an operator and is kept until a retry ends it.
//! - **Dead letters**, once they were given up on `retention.dead-letters` ago.
//! - **Unreleased events**: an event in the outbox whose gate never opened (the step's
//!   result, or the run's end, was never written, because a write failed) is dropped once it
//!   is `retention.unreleased-events` old; a restart drops such events at once. Events
//!   leave the outbox as they are relayed, so there is nothing else there to keep.
//!
//! The idempotency key of a deleted run is free again: a client that repeats a start after
//! the run's retention gets a new run.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::model::Clock;
use crate::store::{Store, StoreError};

/// `[retention]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// How long a run that is done for good is kept after it ended, journal included.
    /// Default 7 days.
    #[serde(with = "humantime_serde")]
    pub runs: Duration,
    /// How long a dead letter is kept. Default 14 days.
    #[serde(with = "humantime_serde")]
    pub dead_letters: Duration,
    /// How long an event whose cause was never written may wait in the outbox. Default 1
    /// hour.
    #[serde(with = "humantime_serde")]
    pub unreleased_events: Duration,
    /// How often the pass runs. Default 1 minute.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Records deleted per batch. Default 500.
    pub batch: usize,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        const DAY: u64 = 24 * 60 * 60;
        Self {
            runs: Duration::from_secs(7 * DAY),
            dead_letters: Duration::from_secs(14 * DAY),
            unreleased_events: Duration::from_secs(60 * 60),
            interval: Duration::from_secs(60),
            batch: 500,
        }
    }
}

/// A `[retention]` value out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("retention.{0}: must be more than zero")]
pub struct InvalidRetention(pub &'static str);

impl RetentionConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), InvalidRetention> {
        for (key, zero) in [
            ("runs", self.runs.is_zero()),
            ("dead-letters", self.dead_letters.is_zero()),
            ("unreleased-events", self.unreleased_events.is_zero()),
            ("interval", self.interval.is_zero()),
            ("batch", self.batch == 0),
        ] {
            if zero {
                return Err(InvalidRetention(key));
            }
        }
        Ok(())
    }
}

/// What one pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Finished runs.
    pub runs: usize,
    /// Dead letters.
    pub dead_letters: usize,
    /// Unreleased events.
    pub events: usize,
}

/// The retention pass over one store.
#[derive(Clone)]
pub struct Retention {
    store: Arc<dyn Store>,
    config: RetentionConfig,
    clock: Arc<dyn Clock>,
}

impl Retention {
    /// Retention of `store` by `config`, telling time by `clock`.
    pub fn new(store: Arc<dyn Store>, config: RetentionConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            config,
            clock,
        }
    }

    /// Runs a pass every `retention.interval` until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.config.interval) => {}
                () = shutdown.cancelled() => return,
            }
            match self.pass().await {
                Ok(swept) if swept != Swept::default() => {
                    tracing::info!(
                        runs = swept.runs,
                        dead_letters = swept.dead_letters,
                        events = swept.events,
                        "retention deleted what outlived its time"
                    );
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "retention pass failed; it runs again later"),
            }
        }
    }

    /// One pass: batch after batch until nothing is due, then one flush.
    pub async fn pass(&self) -> Result<Swept, StoreError> {
        let mut swept = Swept::default();
        loop {
            let batch = self.batch().await?;
            tokio::task::yield_now().await;
            let done = batch == Swept::default();
            swept.runs += batch.runs;
            swept.dead_letters += batch.dead_letters;
            swept.events += batch.events;
            if done {
                break;
            }
        }
        if swept != Swept::default() {
            self.store.flush().await?;
        }
        Ok(swept)
    }

    /// Deletes up to `retention.batch` of each kind.
    async fn batch(&self) -> Result<Swept, StoreError> {
        let now = self.clock.now_ms();
        let before = |keep: Duration| now.saturating_sub(keep.as_millis() as u64);
        let limit = self.config.batch;
        let mut swept = Swept::default();
        for (ended_ms, id) in self
            .store
            .ended_before(before(self.config.runs), limit)
            .await?
        {
            self.store.delete(&id, ended_ms).await?;
            swept.runs += 1;
        }
        for id in self
            .store
            .dead_letters_before(before(self.config.dead_letters), limit)
            .await?
        {
            self.store.exhume(&id).await?;
            swept.dead_letters += 1;
        }
        let cutoff = before(self.config.unreleased_events);
        for entry in self.store.outbox_pending(None, limit).await? {
            if entry.event.time_ms >= cutoff {
                break;
            }
            if let Some(gate) = &entry.gate
                && !self.store.gate_open(gate).await?
            {
                self.store.outbox_remove(&entry.event.id).await?;
                swept.events += 1;
            }
        }
        Ok(swept)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::model::{
        DeadLetter, Gate, OutboxEntry, PublishedEvent, RUN_FORMAT, Run, RunId, RunStatus,
    };
    use crate::store::ListQuery;
    use crate::store::sled::SledStore;

    struct TestClock(AtomicU64);

    impl Clock for TestClock {
        fn now_ms(&self) -> u64 {
            self.0.load(Ordering::Relaxed)
        }
    }

    const DAY: u64 = 24 * 60 * 60 * 1000;

    fn run(id: &str, status: RunStatus, ended_ms: u64) -> Run {
        Run {
            format: RUN_FORMAT,
            id: RunId::parse(id).unwrap(),
            workflow: "w".into(),
            workflow_version: Some("d".into()),
            status,
            input: Default::default(),
            steps: Vec::new(),
            error: None,
            plugins: BTreeMap::new(),
            idempotency_key: None,
            parent: None,
            traceparent: None,
            search: Default::default(),
            cancelled: false,
            closed: false,
            created_ms: ended_ms,
            updated_ms: ended_ms,
            ended_ms: Some(ended_ms),
            journaled: 0,
            revision: 0,
            epoch: 0,
        }
    }

    #[tokio::test]
    async fn a_pass_deletes_what_outlived_its_time_in_batches_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        let clock = Arc::new(TestClock(AtomicU64::new(30 * DAY)));
        for (i, ended) in [1, 2, 3, 29].into_iter().enumerate() {
            let done = Run {
                closed: true,
                ..run(&format!("done-{i}"), RunStatus::Completed, ended * DAY)
            };
            store.create(&done).await.unwrap();
        }
        // Waiting for an operator: never closed, never deleted.
        store
            .create(&run("stuck", RunStatus::CompensationFailed, DAY))
            .await
            .unwrap();
        for ms in [DAY, 29 * DAY] {
            store
                .bury(&DeadLetter {
                    id: ulid::Ulid::from_parts(ms, 1).to_string(),
                    subscription: "s".into(),
                    event: PublishedEvent::new("t", "api", "{}".into(), None, ms),
                    attempts: 1,
                    error: "no".into(),
                    dead_ms: ms,
                })
                .await
                .unwrap();
        }
        let orphan = |id: &str, time_ms| OutboxEntry {
            event: PublishedEvent {
                id: id.into(),
                ..PublishedEvent::new("t", "plugin/p", "{}".into(), None, time_ms)
            },
            gate: Some(Gate::Journal {
                run_id: RunId::parse("stuck").unwrap(),
                seq: 0,
                epoch: 0,
            }),
        };
        store
            .outbox_put(&[orphan("a-old", DAY), orphan("b-new", 30 * DAY)])
            .await
            .unwrap();
        let config = RetentionConfig {
            runs: Duration::from_millis(7 * DAY),
            dead_letters: Duration::from_millis(14 * DAY),
            batch: 2,
            ..RetentionConfig::default()
        };
        let retention = Retention::new(store.clone(), config, clock.clone());
        let swept = retention.pass().await.unwrap();
        assert_eq!(
            swept,
            Swept {
                runs: 3,
                dead_letters: 1,
                events: 1
            }
        );
        let left: Vec<String> = store
            .list(&ListQuery {
                limit: 10,
                ..ListQuery::default()
            })
            .await
            .unwrap()
            .runs
            .into_iter()
            .map(|r| r.id.to_string())
            .collect();
        assert_eq!(left, ["done-3", "stuck"]);
        assert_eq!(store.dead_letters(10, None).await.unwrap().len(), 1);
        let pending: Vec<String> = store
            .outbox_pending(None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event.id)
            .collect();
        assert_eq!(pending, ["b-new"]);
        assert_eq!(retention.pass().await.unwrap(), Swept::default());
    }
}
