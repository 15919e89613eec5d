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
//!
//! On a store several nodes share, what each run awaits is also noted in the store
//! ([`crate::store::RunStore::note_awaits`], when it changes), so that an event another node
//! takes from the broker finds the runs held here, and one taken here finds theirs
//! ([`crate::store::RunStore::awaiting`]).
//!
//! A `match` that requires `event.<a> == context.<b>` (the usual correlation by an order
//! id) is indexed by the value of `context.<b>`: an event is checked only against the runs
//! waiting for its value of `event.<a>`, so 10,000 parked runs cost one look-up per event,
//! not 10,000 evaluations. Every other `match` is evaluated for each event on the topic.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use serde_json::Value;

use crate::model::{Expr, Message, RunId};
use crate::store::Awaiting;

/// What a run wants of a topic's events.
pub(super) struct Interest {
    /// Whether it waits at the step now, or keeps events for a step ahead (`buffer`).
    pub waiting: bool,
    /// The step's `match`.
    pub matches: Option<Expr>,
    /// The context the step sees (or would now, for a step ahead), for the `match`.
    pub context: Value,
}

/// The index. A std `Mutex`: held to look up or replace a run's entries, never across an
/// `.await`.
#[derive(Default)]
pub(super) struct Awaits {
    index: Mutex<Index>,
}

#[derive(Default)]
struct Index {
    by_topic: HashMap<String, Topic>,
    topics_of: HashMap<RunId, Vec<String>>,
    /// What each run was last noted as awaiting, as the store notes it.
    noted: HashMap<RunId, Vec<Awaiting>>,
}

/// The runs that want one topic's events.
#[derive(Default)]
struct Topic {
    interests: HashMap<RunId, Interest>,
    /// Runs whose `match` correlates: by the event's path, then by the value it must have.
    keyed: HashMap<Vec<String>, HashMap<String, HashSet<RunId>>>,
    /// Where each correlated run is in `keyed`.
    keys: HashMap<RunId, (Vec<String>, String)>,
    /// Every other run: evaluated for each event.
    unkeyed: HashSet<RunId>,
}

impl Interest {
    /// The event's path and the value it must have there, keyed, when the `match`
    /// correlates and the context already holds the value (for a step ahead, usually the
    /// run's input).
    fn key(&self) -> Option<(Vec<String>, String)> {
        let (event, path) = self.matches.as_ref()?.correlation()?;
        Some((event, key(lookup(&self.context, &path)?)))
    }
}

impl Topic {
    fn insert(&mut self, run: &RunId, interest: Interest) {
        match interest.key() {
            Some((path, value)) => {
                self.keyed
                    .entry(path.clone())
                    .or_default()
                    .entry(value.clone())
                    .or_default()
                    .insert(run.clone());
                self.keys.insert(run.clone(), (path, value));
            }
            None => {
                self.unkeyed.insert(run.clone());
            }
        }
        self.interests.insert(run.clone(), interest);
    }

    fn remove(&mut self, run: &RunId) {
        self.interests.remove(run);
        self.unkeyed.remove(run);
        if let Some((path, value)) = self.keys.remove(run)
            && let Some(values) = self.keyed.get_mut(&path)
        {
            if let Some(runs) = values.get_mut(&value) {
                runs.remove(run);
                if runs.is_empty() {
                    values.remove(&value);
                }
            }
            if values.is_empty() {
                self.keyed.remove(&path);
            }
        }
    }
}

/// The value at `path` under `value`.
fn lookup<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(value, |value, field| value.get(field))
}

/// A value as the index keys it: numbers by their value (CEL's `1 == 1.0`), the rest as
/// JSON.
fn key(value: &Value) -> String {
    match value {
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), |f| f.to_string()),
        other => other.to_string(),
    }
}

/// The key an event has at `path`, as the index keys values: what
/// [`crate::store::RunStore::awaiting`] asks of it.
pub(super) fn event_key(event: &Value, path: &[String]) -> Option<String> {
    lookup(event, path).map(key)
}

impl Index {
    fn forget(&mut self, run: &RunId) {
        for name in self.topics_of.remove(run).unwrap_or_default() {
            if let Some(topic) = self.by_topic.get_mut(&name) {
                topic.remove(run);
                if topic.interests.is_empty() {
                    self.by_topic.remove(&name);
                }
            }
        }
    }
}

impl Awaits {
    /// Replaces what `run` wants with `interests`, by topic; a waiting interest wins over
    /// keeping on the same topic. Returns what the store is to note of the run
    /// ([`crate::store::RunStore::note_awaits`]) if that changed.
    pub(super) fn set(
        &self,
        run: &RunId,
        interests: Vec<(String, Interest)>,
    ) -> Option<Vec<Awaiting>> {
        let mut index = self.index.lock().expect("awaits lock");
        index.forget(run);
        let mut topics = Vec::with_capacity(interests.len());
        for (name, interest) in interests {
            let topic = index.by_topic.entry(name.clone()).or_default();
            if let Some(known) = topic.interests.get(run) {
                if known.waiting || !interest.waiting {
                    continue;
                }
                topic.remove(run);
            }
            topic.insert(run, interest);
            topics.push(name);
        }
        let mut notes: Vec<Awaiting> = topics
            .iter()
            .map(|name| Awaiting {
                topic: name.clone(),
                key: index.by_topic[name].interests[run].key(),
            })
            .collect();
        notes.sort();
        if !topics.is_empty() {
            index.topics_of.insert(run.clone(), topics);
        }
        // A run never noted is noted as awaiting nothing, as the store has it.
        let before = index.noted.insert(run.clone(), notes.clone());
        (before.unwrap_or_default() != notes).then_some(notes)
    }

    /// Removes `run`: it ended, or another node holds it now. Returns whether the store
    /// was to note that it awaits something.
    pub(super) fn forget(&self, run: &RunId) -> bool {
        let mut index = self.index.lock().expect("awaits lock");
        index.forget(run);
        index
            .noted
            .remove(run)
            .is_some_and(|notes| !notes.is_empty())
    }

    /// Forgets what the store was to note of `run`, so that the next [`Self::set`] asks
    /// for it again (a note that failed).
    pub(super) fn unnote(&self, run: &RunId) {
        self.index.lock().expect("awaits lock").noted.remove(run);
    }

    /// Whether `run` is in the index: held here, and awaiting events.
    pub(super) fn has(&self, run: &RunId) -> bool {
        self.index
            .lock()
            .expect("awaits lock")
            .topics_of
            .contains_key(run)
    }

    /// Whether any interest of `run` in `topic` waits at its step now (not only keeps
    /// events for a step ahead).
    pub(super) fn waits_for(&self, run: &RunId, topic: &str) -> bool {
        self.index
            .lock()
            .expect("awaits lock")
            .by_topic
            .get(topic)
            .and_then(|topic| topic.interests.get(run))
            .is_some_and(|interest| interest.waiting)
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
        let Some(topic) = index.by_topic.get(topic) else {
            return Vec::new();
        };
        let event = message.as_event();
        let keyed = topic.keyed.iter().flat_map(|(path, values)| {
            lookup(&event, path)
                .and_then(|value| values.get(&key(value)))
                .into_iter()
                .flatten()
        });
        topic
            .unkeyed
            .iter()
            .chain(keyed)
            .filter(|run| match topic.interests.get(*run) {
                // The context of a step ahead may change before the run gets there: its
                // `match` is evaluated then.
                Some(interest) if !interest.waiting => true,
                Some(interest) => interest.matches.as_ref().is_none_or(|m| {
                    m.truth(&[("event", &event), ("context", &interest.context)])
                        .unwrap_or(false)
                }),
                None => false,
            })
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::MessageKind;

    fn event(data: Value) -> Message {
        Message {
            id: "e".into(),
            kind: MessageKind::Event {
                id: "e".into(),
                topic: "paid".into(),
                source: "s".into(),
                time_ms: 0,
            },
            data,
            received_ms: 0,
        }
    }

    fn waiting(matches: &str, context: Value) -> Interest {
        Interest {
            waiting: true,
            matches: Some(Expr::new(matches)),
            context,
        }
    }

    fn keeping(matches: Option<&str>, context: Value) -> Interest {
        Interest {
            waiting: false,
            matches: matches.map(Expr::new),
            context,
        }
    }

    #[test]
    fn an_event_reaches_the_runs_it_matches_by_index_or_by_evaluation() {
        let awaits = Awaits::default();
        let id = |n: &str| RunId::parse(n).unwrap();
        let by_order = "event.data.order_id == context.order_id";
        for n in 0..1000 {
            let context = json!({"order_id": format!("o-{n}")});
            awaits.set(
                &id(&format!("r{n}")),
                vec![("paid".into(), waiting(by_order, context))],
            );
        }
        awaits.set(
            &id("big"),
            vec![("paid".into(), waiting("event.data.total > 100", json!({})))],
        );
        awaits.set(
            &id("keeper"),
            vec![("paid".into(), keeping(None, json!({})))],
        );
        // A run keeping events for a step ahead whose context holds its order gets only
        // its own: other orders' events do not fill its inbox.
        awaits.set(
            &id("early"),
            vec![(
                "paid".into(),
                keeping(Some(by_order), json!({"order_id": "o-5"})),
            )],
        );
        assert!(
            awaits
                .targets("paid", &event(json!({"order_id": "o-5"})))
                .contains(&id("early"))
        );
        let mut got = awaits.targets("paid", &event(json!({"order_id": "o-7", "total": 5})));
        got.sort();
        assert_eq!(got, [id("keeper"), id("r7")]);
        let mut got = awaits.targets("paid", &event(json!({"order_id": "o-9", "total": 500})));
        got.sort();
        assert_eq!(got, [id("big"), id("keeper"), id("r9")]);
        awaits.forget(&id("r9"));
        assert!(
            !awaits
                .targets("paid", &event(json!({"order_id": "o-9"})))
                .contains(&id("r9"))
        );
        assert!(awaits.targets("other", &event(json!({}))).is_empty());
        // Numbers key by value, as CEL compares them.
        awaits.set(
            &id("n"),
            vec![(
                "paid".into(),
                waiting("event.data.n == context.n", json!({"n": 1})),
            )],
        );
        assert!(
            awaits
                .targets("paid", &event(json!({"n": 1.0})))
                .contains(&id("n"))
        );
    }
}
