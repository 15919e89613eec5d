//! Which runs wait for events on which topics: an index in memory, so that the relay asks
//! it in passing whether an event concerns any run, and an event reaches only the runs
//! that wait for it.
//!
//! A run is in the index while it waits at an await step on a topic (with its `match` and
//! the context the step sees, to evaluate it) or while an await step ahead keeps early
//! events (`buffer`). The engine sets a run's entries each time it drives the run and when it
//! parks, and [`Engine::recover`](super::Engine::recover) sets them for every unfinished run
//! before the relay starts, so a restart misses nothing the store holds. Signals need no
//! index: they name their run.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;

use crate::model::{Expr, Message, RunId};

/// What a run wants of a topic's events.
pub(super) enum Interest {
    /// An await step ahead keeps them all; its `match` is evaluated when the run gets there.
    Keeping,
    /// The run waits at a step for the first that matches.
    Waiting {
        /// The step's `match`.
        matches: Option<Expr>,
        /// The context the step sees, for the `match`.
        context: Value,
    },
}

/// The index. A std `Mutex`: held to look up or replace a run's entries, never across an
/// `.await`.
#[derive(Default)]
pub(super) struct Awaits {
    index: Mutex<Index>,
}

#[derive(Default)]
struct Index {
    by_topic: HashMap<String, HashMap<RunId, Interest>>,
    topics_of: HashMap<RunId, Vec<String>>,
}

impl Index {
    fn forget(&mut self, run: &RunId) {
        for topic in self.topics_of.remove(run).unwrap_or_default() {
            if let Some(runs) = self.by_topic.get_mut(&topic) {
                runs.remove(run);
                if runs.is_empty() {
                    self.by_topic.remove(&topic);
                }
            }
        }
    }
}

impl Awaits {
    /// Replaces what `run` wants with `interests`, by topic; a waiting interest wins over
    /// keeping on the same topic.
    pub(super) fn set(&self, run: &RunId, interests: Vec<(String, Interest)>) {
        let mut index = self.index.lock().expect("awaits lock");
        index.forget(run);
        let mut topics = Vec::with_capacity(interests.len());
        for (topic, interest) in interests {
            let runs = index.by_topic.entry(topic.clone()).or_default();
            if matches!(interest, Interest::Keeping) && runs.contains_key(run) {
                continue;
            }
            runs.insert(run.clone(), interest);
            topics.push(topic);
        }
        if !topics.is_empty() {
            index.topics_of.insert(run.clone(), topics);
        }
    }

    /// Removes `run`: it ended.
    pub(super) fn forget(&self, run: &RunId) {
        self.index.lock().expect("awaits lock").forget(run);
    }

    /// Whether any run wants events on `topic`.
    pub(super) fn wants(&self, topic: &str) -> bool {
        self.index
            .lock()
            .expect("awaits lock")
            .by_topic
            .contains_key(topic)
    }

    /// The runs `message` (an event) goes to: those keeping its topic, and those waiting
    /// whose `match` holds for it. A `match` that fails to evaluate does not hold.
    pub(super) fn targets(&self, topic: &str, message: &Message) -> Vec<RunId> {
        let index = self.index.lock().expect("awaits lock");
        let Some(runs) = index.by_topic.get(topic) else {
            return Vec::new();
        };
        let event = message.as_event();
        runs.iter()
            .filter(|(_, interest)| match interest {
                Interest::Keeping => true,
                Interest::Waiting { matches, context } => matches.as_ref().is_none_or(|m| {
                    m.truth(&[("event", &event), ("context", context)])
                        .unwrap_or(false)
                }),
            })
            .map(|(run, _)| run.clone())
            .collect()
    }
}
