//! Nodes, leases and fencing: membership on every backend; claims and fencing between
//! nodes on PostgreSQL, the backend nodes share (each test opens one store per node on one
//! database).

use std::collections::HashSet;
use std::time::Duration;

use super::on_every_backend;
use super::runs::{entry, run};
use crate::model::{Direction, Gate, OutboxEntry, Outcome, PublishedEvent, Run, RunId, RunStatus};
use crate::store::postgres::{PgStore, ScratchDatabase};
use crate::store::{Claim, NodeInfo, StoreError};

fn node(id: &str) -> NodeInfo {
    NodeInfo {
        id: id.into(),
        address: format!("http://{id}.internal:8080"),
        version: "0.1.0".into(),
        started_ms: 7,
    }
}

/// An event of `run`'s journal entry number `seq`, staged under `epoch`.
fn staged(event_id: &str, run: &Run) -> OutboxEntry {
    OutboxEntry {
        event: PublishedEvent {
            id: event_id.into(),
            ..PublishedEvent::new("t", "plugin/p", "{}".into(), None, 1)
        },
        gate: Some(Gate::Journal {
            run_id: run.id.clone(),
            seq: run.journaled,
            epoch: run.epoch,
        }),
    }
}

fn fenced<T: std::fmt::Debug>(result: Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::Fenced(_)))
}

on_every_backend! {
    async fn nodes_register_renew_and_leave(t: TestStore) {
        let store = &*t.store;
        assert!(store.nodes(Duration::from_secs(60)).await.unwrap().is_empty());
        // The test stores' node.
        let a = node("test");
        assert!(!store.heartbeat(&a, Duration::from_secs(60)).await.unwrap(), "new");
        store.create(&run("r", 1, None)).await.unwrap();
        let nodes = store.nodes(Duration::from_secs(60)).await.unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].info, a);
        assert!(nodes[0].live);
        assert_eq!(nodes[0].runs, 1);
        assert!(nodes[0].expires_ms >= nodes[0].heartbeat_ms + 59_000);
        assert!(!store.heartbeat(&a, Duration::from_secs(60)).await.unwrap(), "renewed in time");

        store.leave("test").await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let nodes = store.nodes(Duration::from_secs(60)).await.unwrap();
        assert!(!nodes[0].live, "{nodes:?}");
        // Back after its lease ended: told so.
        assert!(store.heartbeat(&a, Duration::from_secs(60)).await.unwrap());
        // Long gone and owning nothing: forgotten.
        saved_terminal(store, "r").await;
        store.leave("test").await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(store.nodes(Duration::ZERO).await.unwrap().is_empty());
        assert_eq!(store.nodes(Duration::from_secs(60)).await.unwrap().len(), 1);
    }
}

async fn saved_terminal(store: &dyn crate::store::Store, id: &str) {
    let run = store
        .get(&RunId::parse(id).unwrap())
        .await
        .unwrap()
        .unwrap();
    super::runs::saved(store, &run, RunStatus::Completed).await;
}

/// Node `id`'s store on `database`.
async fn open(database: &ScratchDatabase, id: &str) -> PgStore {
    PgStore::connect(&database.url, 4, id).await.unwrap()
}

async fn journal_epochs(database: &ScratchDatabase, run: &RunId) -> Vec<(i32, i64)> {
    let (client, connection) = tokio_postgres::connect(&database.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .query(
            "SELECT seq, epoch FROM journal WHERE run_id = $1 ORDER BY seq",
            &[&run.as_str()],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lapsed_nodes_runs_are_claimed_and_it_writes_nothing_more_of_them() {
    use crate::store::{EventStore, NodeStore, RunStore};
    let database = ScratchDatabase::create().await;
    let (a, b) = (open(&database, "a").await, open(&database, "b").await);
    a.heartbeat(&node("a"), Duration::from_secs(60))
        .await
        .unwrap();
    b.heartbeat(&node("b"), Duration::from_secs(60))
        .await
        .unwrap();
    let (one, two) = (run("one", 1, None), run("two", 2, None));
    a.create(&one).await.unwrap();
    a.create(&two).await.unwrap();
    // one: a step's events staged, its entry never written (a's crash): an orphan.
    a.outbox_put(&[staged("e-lost", &one)]).await.unwrap();
    // two: a step's events staged and its entry written.
    a.outbox_put(&[staged("e-kept", &two)]).await.unwrap();
    a.append_journal(&two, &entry(Direction::Execute, 1, Outcome::Ok))
        .await
        .unwrap();

    // Nothing to claim while a's lease holds.
    assert!(
        b.claim(Claim::Expired { limit: 10 })
            .await
            .unwrap()
            .is_empty()
    );
    assert!(fenced(b.owned(&one.id).await));
    // What a holds of two, as it would in its memory.
    let two_then = a.owned(&two.id).await.unwrap().unwrap();
    a.leave("a").await.unwrap();
    // At a bounded rate: one per call here.
    let first = b.claim(Claim::Expired { limit: 1 }).await.unwrap();
    let second = b.claim(Claim::Expired { limit: 1 }).await.unwrap();
    assert_eq!(
        [first, second].concat(),
        [one.id.clone(), two.id.clone()],
        "oldest first"
    );
    assert!(
        b.claim(Claim::Expired { limit: 10 })
            .await
            .unwrap()
            .is_empty()
    );
    let pending: Vec<String> = b
        .outbox_pending(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.id)
        .collect();
    assert_eq!(pending, ["e-kept"], "the orphan went with the claim");

    // a, back, is fenced off both: no record, journal entry or event of its gets in.
    assert!(fenced(a.owned(&two.id).await));
    assert!(fenced(
        a.append_journal(&two_then, &entry(Direction::Execute, 2, Outcome::Ok))
            .await
    ));
    assert!(fenced(a.outbox_put(&[staged("e-late", &two_then)]).await));
    let mut later = two_then.clone();
    later.revision += 1;
    later.status = RunStatus::Completed;
    assert!(fenced(a.save(&later).await));
    assert!(
        a.claim(Claim::Own).await.unwrap().is_empty(),
        "a owns nothing now"
    );
    assert!(
        a.heartbeat(&node("a"), Duration::from_secs(60))
            .await
            .unwrap(),
        "lapsed"
    );

    // b drives them under the new epoch.
    let mut two_now = b.owned(&two.id).await.unwrap().unwrap();
    assert_eq!(two_now.epoch, two_then.epoch + 1);
    b.outbox_put(&[staged("e-b", &two_now)]).await.unwrap();
    b.append_journal(&two_now, &entry(Direction::Execute, 2, Outcome::Ok))
        .await
        .unwrap();
    two_now = b.get(&two.id).await.unwrap().unwrap();
    two_now.revision += 1;
    two_now.status = RunStatus::Completed;
    b.save(&two_now).await.unwrap();
    assert_eq!(journal_epochs(&database, &two.id).await, [(0, 0), (1, 1)]);
    for gate in b.outbox_pending(None, 10).await.unwrap() {
        assert!(
            b.gate_open(gate.gate.as_ref().unwrap()).await.unwrap(),
            "{gate:?}"
        );
    }
    let nodes = b.nodes(Duration::from_secs(60)).await.unwrap();
    let runs: Vec<(&str, u64)> = nodes.iter().map(|n| (&*n.info.id, n.runs)).collect();
    assert_eq!(runs, [("a", 0), ("b", 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lease_runs_out_by_the_databases_clock_and_a_restart_takes_its_runs_back() {
    use crate::store::{NodeStore, RunStore};
    let database = ScratchDatabase::create().await;
    let (a, b) = (open(&database, "a").await, open(&database, "b").await);
    a.heartbeat(&node("a"), Duration::from_millis(300))
        .await
        .unwrap();
    let one = run("one", 1, None);
    a.create(&one).await.unwrap();
    assert!(
        b.claim(Claim::Expired { limit: 10 })
            .await
            .unwrap()
            .is_empty()
    );
    // Restarted under its id, a takes its own back at once, under a new epoch.
    let restarted = open(&database, "a").await;
    assert_eq!(
        restarted.claim(Claim::Own).await.unwrap(),
        std::slice::from_ref(&one.id)
    );
    assert!(
        fenced(a.owned(&one.id).await),
        "the earlier process of the same node"
    );
    assert!(fenced(
        a.append_journal(&one, &entry(Direction::Execute, 1, Outcome::Ok))
            .await
    ));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        b.claim(Claim::Expired { limit: 10 }).await.unwrap(),
        std::slice::from_ref(&one.id)
    );
    // And one node takes a run from whoever holds it, when asked.
    assert_eq!(
        a.claim(Claim::Run(&one.id)).await.unwrap(),
        std::slice::from_ref(&one.id)
    );
    assert_eq!(a.owned(&one.id).await.unwrap().unwrap().epoch, 3);
    assert!(fenced(b.owned(&one.id).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_nodes_claiming_at_once_take_each_run_once() {
    use crate::store::{NodeStore, RunStore};
    let database = ScratchDatabase::create().await;
    let dead = open(&database, "dead").await;
    dead.heartbeat(&node("dead"), Duration::from_secs(60))
        .await
        .unwrap();
    for i in 0..60 {
        dead.create(&run(&format!("r{i:02}"), i, None))
            .await
            .unwrap();
    }
    dead.leave("dead").await.unwrap();
    let mut claimers = Vec::new();
    for n in 0..8 {
        let store = open(&database, &format!("n{n}")).await;
        store
            .heartbeat(&node(&format!("n{n}")), Duration::from_secs(60))
            .await
            .unwrap();
        claimers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let ids = store.claim(Claim::Expired { limit: 4 }).await.unwrap();
                assert!(ids.len() <= 4);
                if ids.is_empty() {
                    return mine;
                }
                mine.extend(ids);
            }
        }));
    }
    let mut seen = HashSet::new();
    for claimer in claimers {
        for id in claimer.await.unwrap() {
            assert!(seen.insert(id.clone()), "{id} claimed twice");
        }
    }
    assert_eq!(seen.len(), 60);
    let check = open(&database, "check").await;
    for id in &seen {
        assert_eq!(check.get(id).await.unwrap().unwrap().epoch, 1, "{id}");
    }
}

/// The old owner keeps staging events and writing their journal entries while another node
/// takes the run: each event's entry is in before the claim (and its event kept) or
/// refused (and its event dropped, or refused too). No event is left whose gate is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claim_racing_the_old_owners_writes_leaves_no_event_behind_that_cannot_go() {
    use crate::store::{EventStore, RunStore};
    let database = ScratchDatabase::create().await;
    let old = std::sync::Arc::new(open(&database, "old").await);
    let new = open(&database, "new").await;
    for round in 0..20 {
        let mut current = run(&format!("race{round:02}"), round, None);
        old.create(&current).await.unwrap();
        let writer = tokio::spawn({
            let old = old.clone();
            async move {
                for seq in 0.. {
                    let event = format!("race{round:02}-{seq:03}");
                    if fenced(old.outbox_put(&[staged(&event, &current)]).await) {
                        return seq;
                    }
                    let step = entry(Direction::Execute, seq + 1, Outcome::Retryable);
                    if fenced(old.append_journal(&current, &step).await) {
                        return seq;
                    }
                    current.apply(&step);
                }
                unreachable!()
            }
        });
        tokio::time::sleep(Duration::from_millis((round % 5) * 3)).await;
        let id = RunId::parse(&format!("race{round:02}")).unwrap();
        assert_eq!(
            new.claim(Claim::Run(&id)).await.unwrap(),
            std::slice::from_ref(&id)
        );
        let written = writer.await.unwrap();
        let journal = new.journal(&id).await.unwrap();
        assert_eq!(
            journal.len() as u32,
            written,
            "every entry written before the fence"
        );
        for staged in new.outbox_pending(None, 10_000).await.unwrap() {
            let gate = staged.gate.unwrap();
            assert!(new.gate_open(&gate).await.unwrap(), "{gate:?} left behind");
        }
    }
}

/// A process that does not hold a run writes nothing of it, whatever epoch it names: not
/// one that read the run (and its epoch) from the store, nor the run's earlier holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_process_holding_a_run_writes_it_whatever_epoch_it_names() {
    use crate::store::{EventStore, RunStore};
    let database = ScratchDatabase::create().await;
    let (a, b) = (open(&database, "a").await, open(&database, "b").await);
    let one = run("one", 1, None);
    a.create(&one).await.unwrap();
    // b reads it as a holds it, epoch and all.
    let read = b.get(&one.id).await.unwrap().unwrap();
    assert!(fenced(
        b.append_journal(&read, &entry(Direction::Execute, 1, Outcome::Ok))
            .await
    ));
    assert!(fenced(b.outbox_put(&[staged("e-b", &read)]).await));
    let mut saved = read.clone();
    saved.revision += 1;
    assert!(fenced(b.save(&saved).await));
    assert!(fenced(
        b.save_and_stage(&saved, &[staged("e-b2", &read)]).await
    ));
    assert!(a.outbox_pending(None, 10).await.unwrap().is_empty());
    // A restart of a (a new incarnation, the same node) holds nothing until it claims.
    let again = open(&database, "a").await;
    assert!(fenced(again.save(&saved).await));
    // b claims it: b writes, a does not.
    b.claim(Claim::Run(&one.id)).await.unwrap();
    let held = b.owned(&one.id).await.unwrap().unwrap();
    b.append_journal(&held, &entry(Direction::Execute, 1, Outcome::Ok))
        .await
        .unwrap();
    let stale = a.get(&one.id).await.unwrap().unwrap();
    assert!(fenced(
        a.append_journal(&stale, &entry(Direction::Execute, 2, Outcome::Ok))
            .await
    ));
    assert_eq!(journal_epochs(&database, &one.id).await, [(0, 1)]);
    // Claimed anew only by its holder, under the next epoch.
    assert!(a.claim(Claim::Again(&one.id)).await.unwrap().is_empty());
    assert_eq!(
        b.claim(Claim::Again(&one.id)).await.unwrap(),
        std::slice::from_ref(&one.id)
    );
    assert_eq!(
        b.owned(&one.id).await.unwrap().unwrap().epoch,
        held.epoch + 1
    );
    assert!(fenced(
        b.append_journal(&held, &entry(Direction::Execute, 2, Outcome::Ok))
            .await
    ));
}

/// The relays of several nodes share the outbox: each entry is taken by one of them until
/// its hold ends, and a relay takes its own entries again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relays_of_eight_nodes_take_each_outbox_entry_once_while_held() {
    use crate::store::EventStore;
    let database = ScratchDatabase::create().await;
    let mut stores = Vec::new();
    for i in 0..8 {
        stores.push(std::sync::Arc::new(open(&database, &format!("n{i}")).await));
    }
    let entries: Vec<OutboxEntry> = (0..200)
        .map(|i| OutboxEntry {
            event: PublishedEvent {
                id: format!("e{i:03}"),
                ..PublishedEvent::new("t", "plugin/p", "{}".into(), None, 1)
            },
            gate: None,
        })
        .collect();
    stores[0].outbox_put(&entries).await.unwrap();
    let hold = Duration::from_secs(60);
    let takers = stores.iter().map(|store| {
        let store = store.clone();
        tokio::spawn(async move {
            // Paging on, as the relay does.
            let mut taken: Vec<String> = Vec::new();
            loop {
                let page = store
                    .outbox_take(taken.last().map(String::as_str), 16, hold)
                    .await
                    .unwrap();
                if page.is_empty() {
                    return taken;
                }
                taken.extend(page.into_iter().map(|e| e.event.id));
            }
        })
    });
    let mut all = Vec::new();
    for taker in takers {
        all.extend(taker.await.unwrap());
    }
    all.sort();
    assert_eq!(all.len(), 200, "each taken once");
    all.dedup();
    assert_eq!(all.len(), 200, "each taken once");
    // Its own again, and no other's.
    let mine = stores[3].outbox_take(None, 500, hold).await.unwrap();
    assert!(mine.len() < 200);
    assert!(mine.windows(2).all(|w| w[0].event.id < w[1].event.id));
    // A hold that ended frees the entries for the others.
    let late = open(&database, "late").await;
    assert!(late.outbox_take(None, 500, hold).await.unwrap().is_empty());
    stores[3]
        .outbox_take(None, 500, Duration::ZERO)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        late.outbox_take(None, 500, hold).await.unwrap().len(),
        mine.len()
    );
}

/// A node hears at once that another made a plugin or workflow version current.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registry_change_on_one_node_is_heard_on_the_others() {
    use crate::model::Head;
    use crate::store::{NodeStore, PluginStore, WorkflowStore};
    let database = ScratchDatabase::create().await;
    let (a, b) = (open(&database, "a").await, open(&database, "b").await);
    let mut changes = b.registry_changes().expect("PostgreSQL notifies");
    let heard = |changes: &mut tokio::sync::watch::Receiver<()>| {
        let mut changes = changes.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(10), changes.changed())
                .await
                .expect("heard in time")
                .unwrap();
        }
    };
    // Once listening: what changed before is to be looked for.
    heard(&mut changes).await;
    changes.mark_unchanged();
    let mut head = Head::default();
    head.make_current("d1");
    a.put_head("p", &head).await.unwrap();
    heard(&mut changes).await;
    changes.mark_unchanged();
    a.put_workflow_head("w", &head).await.unwrap();
    heard(&mut changes).await;
    changes.mark_unchanged();
    // Nothing else is news.
    a.put_schedule_mark("w", 1).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), changes.changed())
            .await
            .is_err()
    );
}

/// What runs await is noted for the other nodes: they find the runs an event may be for
/// (by its key where the run correlates), never their own; only a run's holder notes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_runs_awaiting_an_event_are_found_from_any_other_node() {
    use crate::store::{Awaiting, RunStore};
    let database = ScratchDatabase::create().await;
    let (a, b) = (open(&database, "a").await, open(&database, "b").await);
    let (keyed, open_one) = (run("keyed", 1, None), run("open", 2, None));
    a.create(&keyed).await.unwrap();
    a.create(&open_one).await.unwrap();
    let by_order = |value: &str| Awaiting {
        topic: "paid".into(),
        key: Some((vec!["data".into(), "order_id".into()], value.into())),
    };
    a.note_awaits(&keyed.id, &[by_order("\"o-1\"")])
        .await
        .unwrap();
    let any = Awaiting {
        topic: "paid".into(),
        key: None,
    };
    a.note_awaits(&open_one.id, std::slice::from_ref(&any))
        .await
        .unwrap();
    assert!(b.awaited("paid").await.unwrap());
    assert!(!b.awaited("shipped").await.unwrap());
    let event = |order: &'static str| {
        move |path: &[String]| {
            (path == ["data".to_owned(), "order_id".to_owned()]).then(|| format!("\"{order}\""))
        }
    };
    let mut found = b.awaiting("paid", &event("o-1")).await.unwrap();
    found.sort();
    assert_eq!(found, [keyed.id.clone(), open_one.id.clone()]);
    assert_eq!(
        b.awaiting("paid", &event("o-2")).await.unwrap(),
        std::slice::from_ref(&open_one.id)
    );
    // Its holder finds them in its own index.
    assert!(a.awaiting("paid", &event("o-1")).await.unwrap().is_empty());
    // Only the holder notes; what it notes replaces what it noted.
    assert!(fenced(b.note_awaits(&keyed.id, &[]).await));
    a.note_awaits(&keyed.id, &[by_order("\"o-9\"")])
        .await
        .unwrap();
    assert_eq!(
        b.awaiting("paid", &event("o-1")).await.unwrap(),
        std::slice::from_ref(&open_one.id)
    );
    a.note_awaits(&keyed.id, &[]).await.unwrap();
    a.note_awaits(&open_one.id, &[]).await.unwrap();
    assert!(!b.awaited("paid").await.unwrap());
}

/// The embedded transport's queue shared by nodes: a delivery one node took is not handed
/// to another until it is settled, and the others do not wait for it meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delivery_one_node_took_goes_to_no_other_until_settled() {
    use crate::store::EventStore;
    let database = ScratchDatabase::create().await;
    let (a, b) = (open(&database, "a").await, open(&database, "b").await);
    for (i, id) in ["e1", "e2", "e3"].into_iter().enumerate() {
        a.enqueue(&super::events::delivery("s", id, 100 + i as u64))
            .await
            .unwrap();
    }
    let ids = |due: Vec<crate::model::Delivery>| -> Vec<String> {
        due.into_iter().map(|d| d.event.id).collect()
    };
    assert_eq!(ids(a.due("s", 200, 2).await.unwrap()), ["e1", "e2"]);
    assert_eq!(ids(b.due("s", 200, 10).await.unwrap()), ["e3"]);
    // Its own again, as the store hands them out until settled.
    assert_eq!(ids(a.due("s", 200, 10).await.unwrap()), ["e1", "e2"]);
    b.dequeue(&super::events::delivery("s", "e3", 102))
        .await
        .unwrap();
    assert!(
        b.next_due("s").await.unwrap().unwrap() > 1_000_000,
        "not due for b while a holds them"
    );
    a.dequeue(&super::events::delivery("s", "e1", 100))
        .await
        .unwrap();
    assert!(b.due("s", 200, 10).await.unwrap().is_empty());
    assert_eq!(ids(a.due("s", 200, 10).await.unwrap()), ["e2"]);
}

/// Journal entries of many runs sent at once go in one statement ([`PgStore`] gathers
/// them): each is still written only if its writer holds its run under its epoch, an entry
/// PostgreSQL refuses fails alone, and an entry sent twice is written once, the later.
/// (On a runtime of one thread, every append is queued before the writer takes any.)
#[tokio::test(flavor = "current_thread")]
async fn entries_sent_at_once_are_each_written_fenced_or_refused_on_their_own() {
    use crate::store::RunStore;
    let database = ScratchDatabase::create().await;
    let (a, b) = (open(&database, "a").await, open(&database, "b").await);
    let runs: Vec<Run> = (0..48).map(|i| run(&format!("r{i:02}"), i, None)).collect();
    for run in &runs {
        a.create(run).await.unwrap();
    }
    // b takes every third; a's copies of those are stale.
    for run in runs.iter().step_by(3) {
        b.claim(Claim::Run(&run.id)).await.unwrap();
    }
    let ok = entry(Direction::Execute, 1, Outcome::Ok);
    // A NUL, which PostgreSQL's jsonb refuses, in run 1's entry.
    let mut refused = entry(Direction::Execute, 1, Outcome::Retryable);
    refused.error = Some("a NUL: \u{0}".into());
    let mut again = entry(Direction::Execute, 2, Outcome::Ok);
    again.step = "again".into();
    let mut sends = vec![];
    for (i, run) in runs.iter().enumerate() {
        sends.push(a.append_journal(run, if i == 1 { &refused } else { &ok }));
    }
    // Run 2's entry a second time, changed: the same row twice in one burst.
    sends.push(a.append_journal(&runs[2], &again));
    let results = futures_util::future::join_all(sends).await;

    for (i, (run, result)) in runs.iter().zip(&results).enumerate() {
        let written = journal_epochs(&database, &run.id).await;
        match i {
            1 => {
                assert!(
                    matches!(result, Err(StoreError::Rejected { .. })),
                    "{result:?}"
                );
                assert!(written.is_empty());
            }
            i if i % 3 == 0 => {
                assert!(
                    matches!(result, Err(StoreError::Fenced(_))),
                    "{i}: {result:?}"
                );
                assert!(written.is_empty(), "{i}: {written:?}");
            }
            _ => {
                assert!(result.is_ok(), "{i}: {result:?}");
                assert_eq!(written, [(0, 0)], "{i}");
            }
        }
    }
    results[48].as_ref().unwrap();
    let journal = a.journal(&runs[2].id).await.unwrap();
    assert_eq!(journal, [again], "the later of the two");
}
