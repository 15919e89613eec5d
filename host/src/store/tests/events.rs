//! Events: the outbox, the embedded transport's queues, dead letters and gates.

use super::on_every_backend;
use crate::model::{DeadLetter, Delivery, Gate, OutboxEntry, PublishedEvent, RunId, RunStatus};
use crate::store::StoreError;

fn event(id: &str) -> PublishedEvent {
    PublishedEvent {
        id: id.into(),
        topic: "order.placed".into(),
        source: "test".into(),
        time_ms: 1,
        correlation_id: None,
        key: None,
        data: "{}".into(),
        traceparent: None,
    }
}

pub(super) fn delivery(subscription: &str, id: &str, due_ms: u64) -> Delivery {
    Delivery {
        subscription: subscription.into(),
        event: event(id),
        attempts: 0,
        due_ms,
        error: None,
    }
}

on_every_backend! {
    async fn the_outbox_keeps_the_first_of_an_id_in_id_order(t: TestStore) {
        let store = &*t.store;
        store.create(&crate::store::tests::runs::run("r", 1, None)).await.unwrap();
        let entry = |id: &str, seq| OutboxEntry {
            event: event(id),
            gate: Some(Gate::Journal {
                run_id: RunId::parse("r").unwrap(),
                seq,
                epoch: 0,
            }),
        };
        store
            .outbox_put(&[entry("b", 1), entry("a", 2)])
            .await
            .unwrap();
        store.outbox_put(&[entry("a", 9)]).await.unwrap();
        let pending = store.outbox_pending(None, 10).await.unwrap();
        assert_eq!(pending, [entry("a", 2), entry("b", 1)]);
        assert_eq!(
            store.outbox_pending(Some("a"), 10).await.unwrap(),
            [entry("b", 1)]
        );
        store.outbox_remove("a").await.unwrap();
        assert_eq!(
            store.outbox_pending(None, 10).await.unwrap(),
            [entry("b", 1)]
        );
        store.outbox_put(&[entry("c", 3), entry("d", 4)]).await.unwrap();
        store.outbox_remove_all(&["b", "d", "gone"]).await.unwrap();
        assert_eq!(
            store.outbox_pending(None, 10).await.unwrap(),
            [entry("c", 3)]
        );
    }

    async fn a_save_stages_its_entries_only_when_the_save_is_in(t: TestStore) {
        let store = &*t.store;
        let created = crate::store::tests::runs::run("r", 1, None);
        store.create(&created).await.unwrap();
        let gate = Gate::Record {
            run_id: created.id.clone(),
            revision: 1,
            epoch: 0,
        };
        let announcement = |id: &str| OutboxEntry {
            event: event(id),
            gate: Some(gate.clone()),
        };
        let mut ended = created.clone();
        ended.status = RunStatus::Completed;
        // A save that loses (it skips a revision) stages nothing.
        ended.revision = 2;
        assert!(matches!(
            store.save_and_stage(&ended, &[announcement("lost")]).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.outbox_pending(None, 10).await.unwrap(), []);
        assert_eq!(store.gates_open(std::slice::from_ref(&gate)).await.unwrap(), [false]);
        // One that wins stages them, their gate open.
        ended.revision = 1;
        store
            .save_and_stage(&ended, &[announcement("end")])
            .await
            .unwrap();
        assert_eq!(store.get(&created.id).await.unwrap().unwrap(), ended);
        assert_eq!(
            store.outbox_pending(None, 10).await.unwrap(),
            [announcement("end")]
        );
        assert_eq!(store.gates_open(&[gate]).await.unwrap(), [true]);
    }

    async fn queues_hand_out_what_is_due_per_subscription_earliest_first(t: TestStore) {
        let store = &*t.store;
        for d in [
            delivery("s", "late", 300),
            delivery("s", "early", 100),
            delivery("t", "other", 50),
        ] {
            store.enqueue(&d).await.unwrap();
        }
        let due = store.due("s", 200, 10).await.unwrap();
        assert_eq!(due, [delivery("s", "early", 100)]);
        assert_eq!(store.next_due("s").await.unwrap(), Some(100));
        store.dequeue(&due[0]).await.unwrap();
        assert_eq!(store.next_due("s").await.unwrap(), Some(300));
        assert_eq!(store.due("s", 300, 10).await.unwrap().len(), 1);
        assert_eq!(store.next_due("u").await.unwrap(), None);
    }

    async fn dead_letters_page_newest_first_and_leave_when_exhumed(t: TestStore) {
        let store = &*t.store;
        for id in ["1", "2", "3"] {
            store
                .bury(&DeadLetter {
                    id: id.into(),
                    subscription: "s".into(),
                    event: event(id),
                    attempts: 3,
                    error: "no".into(),
                    dead_ms: 1,
                })
                .await
                .unwrap();
        }
        let first: Vec<String> = store
            .dead_letters(2, None)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.id)
            .collect();
        assert_eq!(first, ["3", "2"]);
        let rest = store.dead_letters(2, Some("2")).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(store.dead_letter("2").await.unwrap().unwrap().event.id, "2");
        assert_eq!(store.exhume("2").await.unwrap().unwrap().event.id, "2");
        assert!(store.dead_letter("2").await.unwrap().is_none());
        assert!(store.exhume("2").await.unwrap().is_none());
    }

    async fn dead_letters_before_a_time_are_listed_by_their_ulid(t: TestStore) {
        let store = &*t.store;
        for ms in [100, 200, 300] {
            let id = ulid::Ulid::from_parts(ms, 7).to_string();
            store
                .bury(&DeadLetter {
                    id: id.clone(),
                    subscription: "s".into(),
                    event: event(&id),
                    attempts: 1,
                    error: "no".into(),
                    dead_ms: ms,
                })
                .await
                .unwrap();
        }
        let old = store.dead_letters_before(300, 10).await.unwrap();
        let times: Vec<u64> = old
            .iter()
            .map(|id| ulid::Ulid::from_string(id).unwrap().timestamp_ms())
            .collect();
        assert_eq!(times, [100, 200]);
        assert_eq!(store.dead_letters_before(300, 1).await.unwrap().len(), 1);
        assert!(store.dead_letters_before(100, 10).await.unwrap().is_empty());
    }

    async fn gates_open_with_the_journal_entry_or_the_record_they_wait_for(t: TestStore) {
        use crate::model::{Direction, Outcome, RunStatus};
        use crate::store::tests::runs::{entry, run, saved};
        let store = &*t.store;
        let a = run("a", 1, None);
        store.create(&a).await.unwrap();
        let journal = Gate::Journal { run_id: a.id.clone(), seq: 0, epoch: 0 };
        let record = Gate::Record { run_id: a.id.clone(), revision: 1, epoch: 0 };
        let elsewhere = Gate::Record { run_id: RunId::parse("b").unwrap(), revision: 0, epoch: 0 };
        assert!(!store.gate_open(&journal).await.unwrap());
        assert!(!store.gate_open(&record).await.unwrap());
        assert!(!store.gate_open(&elsewhere).await.unwrap(), "no such run");
        let all = [journal.clone(), record.clone(), elsewhere.clone()];
        assert_eq!(store.gates_open(&all).await.unwrap(), [false, false, false]);
        store
            .append_journal(&a, &entry(Direction::Execute, 1, Outcome::Ok))
            .await
            .unwrap();
        assert!(store.gate_open(&journal).await.unwrap());
        assert_eq!(store.gates_open(&all).await.unwrap(), [true, false, false]);
        saved(store, &store.get(&a.id).await.unwrap().unwrap(), RunStatus::Running).await;
        assert!(store.gate_open(&record).await.unwrap());
        assert_eq!(store.gates_open(&all).await.unwrap(), [true, true, false]);
        assert!(store.gates_open(&[]).await.unwrap().is_empty());
        assert_eq!(store.outbox_depth().await.unwrap(), 0);
        assert_eq!(store.queue_depth("s").await.unwrap(), 0);
    }
}
