//! Runs: creation once per id and key however many race, compare-and-swap saves, journals
//! folded into records, listings, pins and retention.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use tokio::sync::Barrier;

use super::on_every_backend;
use crate::model::{
    Direction, JournalEntry, Message, MessageKind, Outcome, RUN_FORMAT, Run, RunId, RunStatus,
    StepState, StepStatus,
};
use crate::store::{Claim, Created, ListQuery, Page, PinKind, RunStore, StoreError};

pub(crate) fn run(id: &str, created_ms: u64, key: Option<&str>) -> Run {
    Run {
        format: RUN_FORMAT,
        id: RunId::parse(id).unwrap(),
        workflow: "w".into(),
        workflow_version: Some("wd1".into()),
        status: RunStatus::Pending,
        input: serde_json::Map::new(),
        steps: vec![StepState::pending("s")],
        error: None,
        plugins: BTreeMap::from([("p".into(), "pd1".into())]),
        idempotency_key: key.map(Into::into),
        parent: None,
        traceparent: None,
        search: Default::default(),
        cancelled: false,
        closed: false,
        created_ms,
        updated_ms: created_ms,
        ended_ms: None,
        journaled: 0,
        revision: 0,
        epoch: 0,
    }
}

pub(crate) fn id(id: &str) -> RunId {
    RunId::parse(id).unwrap()
}

pub(crate) fn ids(page: &Page) -> Vec<&str> {
    page.runs.iter().map(|r| r.id.as_str()).collect()
}

pub(crate) async fn list(
    store: &dyn RunStore,
    status: Option<RunStatus>,
    workflow: Option<&str>,
) -> Vec<String> {
    let page = store
        .list(&ListQuery {
            status,
            workflow: workflow.map(Into::into),
            limit: 100,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    ids(&page).into_iter().map(str::to_owned).collect()
}

/// `run` saved in `status`, one revision on.
pub(crate) async fn saved(store: &dyn RunStore, run: &Run, status: RunStatus) -> Run {
    let mut next = run.clone();
    next.status = status;
    next.revision += 1;
    store.save(&next).await.unwrap();
    next
}

/// `run` saved in `status` and closed, as done for good at `ended_ms`.
pub(crate) async fn closed(
    store: &dyn RunStore,
    run: &Run,
    status: RunStatus,
    ended_ms: u64,
) -> Run {
    let mut next = run.clone();
    next.status = status;
    next.ended_ms = Some(ended_ms);
    next.closed = true;
    next.revision += 1;
    store.save(&next).await.unwrap();
    next
}

pub(crate) fn entry(direction: Direction, attempt: u32, outcome: Outcome) -> JournalEntry {
    JournalEntry {
        step: "s".into(),
        direction,
        attempt,
        started_ms: 10,
        ended_ms: 20,
        outcome,
        error: (outcome != Outcome::Ok).then(|| "busy".into()),
        output: (outcome == Outcome::Ok && direction == Direction::Execute)
            .then(|| serde_json::json!({"x": 1}).as_object().unwrap().clone()),
        due_ms: None,
        message: None,
        branch: None,
        child: None,
        recording: None,
    }
}

on_every_backend! {
    async fn creates_once_per_id_and_per_idempotency_key(t: TestStore) {
        let store = &*t.store;
        assert!(matches!(
            store.create(&run("a", 1, Some("k"))).await.unwrap(),
            Created::New
        ));
        let Created::Existing(same_key) = store.create(&run("b", 2, Some("k"))).await.unwrap() else {
            panic!()
        };
        assert_eq!(same_key.id.as_str(), "a");
        let Created::Existing(same_id) = store.create(&run("a", 3, None)).await.unwrap() else {
            panic!()
        };
        assert_eq!(same_id.created_ms, 1);
        assert!(
            store.get(&id("b")).await.unwrap().is_none(),
            "nothing of the repeat was stored"
        );
        assert_eq!(list(store, None, None).await, ["a"]);
    }

    /// Finding 1 of issue 10: eight callers creating a run with the same key at the same moment
    /// got two runs for some keys, because one took over a key whose run was not written yet.
    async fn eight_racing_creators_of_one_key_make_one_run(t: TestStore) {
        let store = t.store.clone();
        const KEYS: usize = 200;
        const RACERS: usize = 8;
        let barrier = Arc::new(Barrier::new(RACERS));
        let threads: Vec<_> = (0..RACERS)
            .map(|racer| {
                let (store, barrier) = (store.clone(), barrier.clone());
                tokio::spawn(async move {
                    let mut answers = Vec::new();
                    for key in 0..KEYS {
                        let mine = run(&format!("r{racer}-{key}"), 1, Some(&format!("k{key}")));
                        if key % 20 == 0 {
                            barrier.wait().await;
                        }
                        let owner = match store.create(&mine).await.unwrap() {
                            Created::New => mine.id.to_string(),
                            Created::Existing(existing) => existing.id.to_string(),
                        };
                        answers.push(owner);
                    }
                    answers
                })
            })
            .collect();
        let mut answers: Vec<Vec<String>> = Vec::new();
        for thread in threads {
            answers.push(thread.await.unwrap());
        }
        for key in 0..KEYS {
            let named: HashSet<&str> = answers.iter().map(|a| a[key].as_str()).collect();
            assert_eq!(
                named.len(),
                1,
                "key {key}: every answer names one run: {named:?}"
            );
        }
        let all = store
            .list(&ListQuery {
                limit: 500,
                ..ListQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(all.runs.len(), KEYS, "one run per key");
    }

    async fn save_is_a_compare_and_swap_on_the_revision(t: TestStore) {
        let store = &*t.store;
        let a = run("a", 1, None);
        store.create(&a).await.unwrap();
        let running = saved(store, &a, RunStatus::Running).await;
        // A second writer that read revision 0 too loses.
        let mut stale = a.clone();
        stale.status = RunStatus::Compensating;
        stale.revision = 1;
        assert!(matches!(
            store.save(&stale).await,
            Err(StoreError::Conflict(_))
        ));
        let again = saved(store, &running, RunStatus::Completed).await;
        assert_eq!(store.get(&a.id).await.unwrap().unwrap(), again);
        let mut skipped = again.clone();
        skipped.revision += 2;
        assert!(matches!(
            store.save(&skipped).await,
            Err(StoreError::Conflict(_))
        ));
    }

    async fn get_applies_the_journal_written_since_the_record_once(t: TestStore) {
        let store = &*t.store;
        let a = id("a");
        let created = run("a", 1, None);
        store.create(&created).await.unwrap();
        store
            .append_journal(&created, &entry(Direction::Execute, 1, Outcome::Retryable))
            .await
            .unwrap();
        let after_retry = store.get(&a).await.unwrap().unwrap();
        assert_eq!(after_retry.steps[0].status, StepStatus::Running);
        assert_eq!(after_retry.steps[0].error.as_deref(), Some("busy"));
        assert_eq!(after_retry.steps[0].attempt_ended_ms, Some(20));
        store
            .append_journal(&after_retry, &entry(Direction::Execute, 2, Outcome::Ok))
            .await
            .unwrap();
        let run = store.get(&a).await.unwrap().unwrap();
        assert_eq!(run.journaled, 2);
        assert_eq!(run.steps[0].status, StepStatus::Completed);
        assert_eq!(run.steps[0].attempts, 2);
        assert_eq!(run.steps[0].error, None);
        assert_eq!(run.context()["x"], 1);

        // A record saved with its entries applied is not folded again.
        let run = saved(store, &run, RunStatus::Compensating).await;
        store
            .append_journal(&run, &entry(Direction::Compensate, 1, Outcome::Ok))
            .await
            .unwrap();
        let after = store.get(&a).await.unwrap().unwrap();
        assert_eq!(after.journaled, 3);
        assert_eq!(after.steps[0].status, StepStatus::Compensated);
        assert_eq!(
            (
                after.steps[0].attempts,
                after.steps[0].compensation_attempts
            ),
            (2, 1)
        );
        assert_eq!(run.revision, after.revision);
        assert_eq!(store.journal(&a).await.unwrap().len(), 3);
    }

    async fn listings_filter_by_workflow_status_time_and_search_fields_and_page(t: TestStore) {
        let store = &*t.store;
        for (name, workflow, created, status, region) in [
            ("a", "w", 10, RunStatus::Pending, "eu"),
            ("b", "w", 20, RunStatus::Completed, "us"),
            ("c", "v", 30, RunStatus::Completed, "eu"),
            ("d", "w", 40, RunStatus::Completed, "eu"),
            ("e", "v", 50, RunStatus::Running, "us"),
        ] {
            let mut new = run(name, created, None);
            new.workflow = workflow.into();
            new.search = BTreeMap::from([("region".into(), region.into())]);
            store.create(&new).await.unwrap();
            if status != RunStatus::Pending {
                saved(store, &new, status).await;
            }
        }
        let query = |f: fn(&mut ListQuery)| {
            let mut query = ListQuery {
                limit: 100,
                ..ListQuery::default()
            };
            f(&mut query);
            query
        };
        let found = |query: ListQuery| async move {
            ids(&store.list(&query).await.unwrap())
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(found(query(|_| {})).await, ["e", "d", "c", "b", "a"]);
        assert_eq!(list(store, Some(RunStatus::Completed), Some("w")).await, ["d", "b"]);
        assert_eq!(list(store, Some(RunStatus::Completed), None).await, ["d", "c", "b"]);
        assert_eq!(list(store, None, Some("v")).await, ["e", "c"]);
        let between = found(query(|q| {
            q.created_after = Some(20);
            q.created_before = Some(50);
        }));
        assert_eq!(between.await, ["d", "c", "b"]);
        let eu = found(query(|q| q.search = vec![("region".into(), "eu".into())]));
        assert_eq!(eu.await, ["d", "c", "a"]);
        let eu_w_completed = found(query(|q| {
            q.search = vec![("region".into(), "eu".into())];
            q.workflow = Some("w".into());
            q.status = Some(RunStatus::Completed);
        }));
        assert_eq!(eu_w_completed.await, ["d"]);
        // Pages of two, each run once, the last page without a cursor.
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = store
                .list(&ListQuery {
                    limit: 2,
                    cursor,
                    ..ListQuery::default()
                })
                .await
                .unwrap();
            seen.extend(ids(&page).into_iter().map(str::to_owned));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, ["e", "d", "c", "b", "a"]);
        let bad = store
            .list(&ListQuery {
                limit: 2,
                cursor: Some("zz".into()),
                ..ListQuery::default()
            })
            .await;
        assert!(matches!(bad, Err(StoreError::InvalidCursor)));
    }

    async fn pins_count_open_runs_and_retention_deletes_closed_ones(t: TestStore) {
        let store = &*t.store;
        let a = run("a", 1, Some("ka"));
        let mut b = run("b", 2, None);
        b.plugins = BTreeMap::from([("p".into(), "pd2".into())]);
        let c = run("c", 3, None);
        for new in [&a, &b, &c] {
            store.create(new).await.unwrap();
        }
        let running = saved(store, &b, RunStatus::Running).await;
        let pins = store.pins(PinKind::Plugin, "p").await.unwrap();
        assert_eq!(pins, BTreeMap::from([("pd1".into(), 2), ("pd2".into(), 1)]));
        let workflows = store.pins(PinKind::Workflow, "w").await.unwrap();
        assert_eq!(workflows, BTreeMap::from([("wd1".into(), 3)]));
        assert!(store.pins(PinKind::Plugin, "q").await.unwrap().is_empty());
        let mut unfinished: Vec<String> = store
            .claim(Claim::Own)
            .await
            .unwrap()
            .into_iter()
            .map(|id| id.to_string())
            .collect();
        unfinished.sort();
        assert_eq!(unfinished, ["a", "b", "c"]);

        // a ends and closes: its pins go, retention finds it once its time is past. (Read
        // again: the claim moved its epoch.)
        let a = store.owned(&a.id).await.unwrap().unwrap();
        store
            .append_journal(&a, &entry(Direction::Execute, 1, Outcome::Ok))
            .await
            .unwrap();
        let done = closed(store, &store.get(&a.id).await.unwrap().unwrap(), RunStatus::Completed, 100).await;
        assert_eq!(done.journaled, 1);
        let pins = store.pins(PinKind::Plugin, "p").await.unwrap();
        assert_eq!(pins, BTreeMap::from([("pd1".into(), 1), ("pd2".into(), 1)]));
        assert!(store.ended_before(100, 10).await.unwrap().is_empty());
        assert_eq!(store.ended_before(101, 10).await.unwrap(), [(100, a.id.clone())]);
        // An open run is not deleted, whatever the caller says.
        store.delete(&running.id, 100).await.unwrap();
        assert!(store.get(&running.id).await.unwrap().is_some());
        store.delete(&a.id, 100).await.unwrap();
        store.delete(&a.id, 100).await.unwrap();
        assert!(store.get(&a.id).await.unwrap().is_none());
        assert!(store.journal(&a.id).await.unwrap().is_empty());
        assert!(store.ended_before(u64::MAX, 10).await.unwrap().is_empty());
        // Its key is free again.
        let again = run("a2", 5, Some("ka"));
        assert!(matches!(store.create(&again).await.unwrap(), Created::New));
    }

    async fn a_discarded_run_leaves_nothing_and_inboxes_keep_message_order(t: TestStore) {
        let store = &*t.store;
        let first = run("a", 1, Some("k"));
        assert!(matches!(store.create(&first).await.unwrap(), Created::New));
        store.discard(&first).await.unwrap();
        assert!(store.get(&first.id).await.unwrap().is_none());
        assert!(list(store, None, None).await.is_empty());
        assert!(store.claim(Claim::Own).await.unwrap().is_empty());
        let retry = run("b", 2, Some("k"));
        assert!(matches!(store.create(&retry).await.unwrap(), Created::New));
        let message = |id: &str| Message {
            id: id.into(),
            kind: MessageKind::Signal { name: "go".into() },
            data: serde_json::json!({"n": 1}),
            received_ms: 1,
        };
        for id in ["01B", "01A", "01C"] {
            store.put_message(&retry.id, &message(id)).await.unwrap();
        }
        store.remove_message(&retry.id, "01C").await.unwrap();
        let inbox: Vec<String> = store
            .inbox(&retry.id)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(inbox, ["01A", "01B"]);
    }

    async fn runs_survive_reopening(t: TestStore) {
        let a = run("a", 1, Some("k"));
        t.store.create(&a).await.unwrap();
        t.store
            .append_journal(&a, &entry(Direction::Execute, 1, Outcome::Ok))
            .await
            .unwrap();
        t.store.flush().await.unwrap();
        let t = t.reopen().await;
        let read = t.store.get(&a.id).await.unwrap().unwrap();
        assert_eq!(read.journaled, 1);
        assert_eq!(read.steps[0].status, StepStatus::Completed);
        let Created::Existing(same) = t.store.create(&run("b", 2, Some("k"))).await.unwrap() else {
            panic!("the key was free after reopening");
        };
        assert_eq!(same.id.as_str(), "a");
    }
}
