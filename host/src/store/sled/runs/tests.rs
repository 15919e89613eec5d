use std::collections::BTreeMap;

use super::*;
use crate::model::{Direction, Outcome};
use crate::store::Flush;
use crate::store::sled::encode;
use crate::store::sled::testing::store;
use crate::store::tests::runs::{closed, entry, id, ids, list, run, saved};

#[tokio::test]
async fn a_key_whose_run_was_never_written_is_free_and_a_discarded_run_leaves_nothing() {
    let (store, _dir) = store();
    // As if a crash came between the key and the record.
    store
        .idempotency
        .insert(idempotency_key("w", "k"), "ghost")
        .unwrap();
    let first = run("a", 1, Some("k"));
    assert!(matches!(store.create(&first).await.unwrap(), Created::New));
    store.discard(&first).await.unwrap();
    assert!(store.get(&first.id).await.unwrap().is_none());
    assert!(list(&store, None, None).await.is_empty());
    assert!(store.unfinished().unwrap().is_empty());
    assert!(store.pins(PinKind::Plugin, "p").await.unwrap().is_empty());
    let retry = run("b", 2, Some("k"));
    assert!(matches!(store.create(&retry).await.unwrap(), Created::New));
}

#[tokio::test]
async fn indexes_follow_saves_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        for (name, at) in [("a", 1), ("b", 2), ("c", 3)] {
            store.create(&run(name, at, None)).await.unwrap();
        }
        let mut other = run("d", 4, None);
        other.workflow = "v".into();
        store.create(&other).await.unwrap();
        let b = store.get(&id("b")).await.unwrap().unwrap();
        saved(&store, &b, RunStatus::Completed).await;
        store.flush().await.unwrap();
    }
    let store = SledStore::open(dir.path()).expect("dropping the store closed the database");
    let all = store
        .list(&ListQuery {
            limit: 2,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&all), ["d", "c"]);
    let rest = store
        .list(&ListQuery {
            limit: 3,
            cursor: all.next_cursor.clone(),
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&rest), ["b", "a"]);
    assert_eq!(rest.next_cursor, None);
    assert_eq!(list(&store, Some(RunStatus::Completed), None).await, ["b"]);
    assert_eq!(
        list(&store, Some(RunStatus::Pending), Some("w")).await,
        ["c", "a"]
    );
    assert_eq!(
        list(&store, Some(RunStatus::Completed), Some("v")).await,
        Vec::<String>::new()
    );
    assert_eq!(list(&store, None, Some("v")).await, ["d"]);
    let mut unfinished: Vec<String> = store
        .unfinished()
        .unwrap()
        .into_iter()
        .map(|r| r.to_string())
        .collect();
    unfinished.sort();
    assert_eq!(unfinished, ["a", "c", "d"]);
}

#[tokio::test]
async fn records_of_format_2_read_and_others_are_refused_by_name() {
    let (store, _dir) = store();
    let mut old = serde_json::to_value(run("a", 1, None)).unwrap();
    for field in ["workflow_version", "revision", "cancelled"] {
        old.as_object_mut().unwrap().remove(field);
    }
    old["format"] = 2.into();
    store
        .runs
        .insert("a", serde_json::to_vec(&old).unwrap())
        .unwrap();
    let read = store.get(&id("a")).await.unwrap().unwrap();
    assert_eq!(
        (read.format, read.workflow_version, read.revision),
        (3, None, 0)
    );
    old["format"] = 1.into();
    store
        .runs
        .insert("b", serde_json::to_vec(&old).unwrap())
        .unwrap();
    let error = store.get(&id("b")).await.unwrap_err().to_string();
    assert!(
        error.contains("`b`") && error.contains("format 1"),
        "{error}"
    );
}

#[tokio::test]
async fn a_stale_index_entry_is_ignored() {
    let (store, _dir) = store();
    let mut a = run("a", 1, None);
    store.create(&a).await.unwrap();
    // As if a crash hit between writing the record and removing the old entry.
    a.status = RunStatus::Completed;
    store
        .by_status
        .insert(status_key(RunStatus::Completed, &a), &[])
        .unwrap();
    store
        .runs
        .insert("a", serde_json::to_vec(&a).unwrap())
        .unwrap();
    assert!(
        list(&store, Some(RunStatus::Pending), None)
            .await
            .is_empty(),
        "the pending entry is stale"
    );
    assert_eq!(list(&store, Some(RunStatus::Completed), None).await, ["a"]);
}

/// A listing of every status walks one range per status, newest first. A run that moves
/// to a status whose range the listing already walked past is found from its old entry; a
/// run with entries in two statuses is listed once.
#[tokio::test]
async fn a_run_that_changes_status_while_listed_is_listed_once() {
    let (store, _dir) = store();
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        store.create(&run(name, i as u64 + 1, None)).await.unwrap();
    }
    let b = store.get(&id("b")).await.unwrap().unwrap();
    let b = saved(&store, &b, RunStatus::Completed).await;
    // Both of b's entries there (its old one not yet removed): listed once.
    store
        .by_status
        .insert(status_key(RunStatus::Pending, &b), &[])
        .unwrap();
    assert_eq!(list(&store, None, None).await, ["c", "b", "a"]);
    // Only the old entry there (as seen by a listing that had walked past the new one's
    // place): still listed, as the record says it is.
    store
        .by_status
        .remove(status_key(RunStatus::Completed, &b))
        .unwrap();
    assert_eq!(list(&store, None, None).await, ["c", "b", "a"]);
    assert!(list(&store, Some(RunStatus::Pending), None).await.len() == 2);
    // Paged one at a time, still each once.
    let pages = all_pages(
        &store,
        ListQuery {
            limit: 1,
            ..ListQuery::default()
        },
    )
    .await;
    assert_eq!(pages, ["c", "b", "a"]);
}

#[tokio::test]
async fn pins_are_counted_from_the_runs_that_can_still_call_a_plugin() {
    let (store, _dir) = store();
    let a = run("a", 1, None);
    let mut b = run("b", 2, None);
    b.plugins.insert("p".into(), "pd2".into());
    b.plugins.insert("q".into(), "qd1".into());
    store.create(&a).await.unwrap();
    store.create(&b).await.unwrap();
    // An index entry a crashed creation left behind, without its record, does not count;
    // nor does a stale entry of a status the run has left.
    let mut ghost = run("ghost", 3, None);
    ghost.plugins.insert("p".into(), "pd1".into());
    store
        .by_status
        .insert(status_key(RunStatus::Running, &ghost), &[])
        .unwrap();
    store
        .by_status
        .insert(status_key(RunStatus::Compensating, &b), &[])
        .unwrap();
    assert_eq!(
        store.pins(PinKind::Plugin, "p").await.unwrap(),
        BTreeMap::from([("pd1".into(), 1), ("pd2".into(), 1)])
    );
    assert_eq!(
        store.pins(PinKind::Workflow, "w").await.unwrap(),
        BTreeMap::from([("wd1".into(), 2)])
    );
    assert!(
        store
            .pins(PinKind::Workflow, "other")
            .await
            .unwrap()
            .is_empty()
    );
    // Waiting for an operator, it still pins; closed, it pins no more.
    let waiting = saved(&store, &a, RunStatus::CompensationFailed).await;
    assert_eq!(store.pins(PinKind::Plugin, "p").await.unwrap().len(), 2);
    closed(&store, &waiting, RunStatus::Compensated, 50).await;
    assert_eq!(
        store.pins(PinKind::Plugin, "p").await.unwrap(),
        BTreeMap::from([("pd2".into(), 1)])
    );
    assert_eq!(store.pins(PinKind::Plugin, "q").await.unwrap().len(), 1);
    assert!(
        store
            .pins(PinKind::Plugin, "none")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn closed_runs_are_deleted_with_everything_they_had() {
    let (store, _dir) = store();
    let keep = run("keep", 1, None);
    store.create(&keep).await.unwrap();
    let mut old = run("old", 2, Some("k"));
    store.create(&old).await.unwrap();
    store
        .append_journal(&old, &entry(Direction::Execute, 1, Outcome::Ok))
        .await
        .unwrap();
    old = store.get(&old.id).await.unwrap().unwrap();
    let old = closed(&store, &old, RunStatus::Completed, 100).await;
    // A listing whose run is not closed (a crash before its save) deletes nothing.
    store.by_ended.insert(ended_key(90, &keep.id), &[]).unwrap();
    assert_eq!(
        store.ended_before(100, 10).await.unwrap(),
        [(90, keep.id.clone())]
    );
    store.delete(&keep.id, 90).await.unwrap();
    assert!(store.get(&keep.id).await.unwrap().is_some());
    assert!(store.ended_before(100, 10).await.unwrap().is_empty());
    let due = store.ended_before(101, 10).await.unwrap();
    assert_eq!(due, [(100, old.id.clone())]);
    store.delete(&old.id, 100).await.unwrap();
    store.delete(&old.id, 100).await.unwrap();
    assert!(store.get(&old.id).await.unwrap().is_none());
    assert!(store.journal(&old.id).await.unwrap().is_empty());
    assert_eq!(list(&store, None, None).await, ["keep"]);
    assert!(
        list(&store, Some(RunStatus::Completed), Some("w"))
            .await
            .is_empty()
    );
    assert!(store.ended_before(u64::MAX, 10).await.unwrap().is_empty());
    // Its key is free again.
    assert!(matches!(
        store.create(&run("new", 3, Some("k"))).await.unwrap(),
        Created::New
    ));
}

#[tokio::test]
async fn a_database_of_the_previous_release_gains_its_indexes_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        // What the previous release wrote: records and the indexes it had, no more.
        let mut done = run("done", 1, None);
        done.status = RunStatus::Completed;
        done.ended_ms = Some(5);
        let waiting = run("waiting", 2, None);
        for mut old in [done, waiting] {
            old.workflow_version = None;
            store.runs.insert(&old.id, encode(&old).unwrap()).unwrap();
            store
                .by_status
                .insert(status_key(old.status, &old), &[])
                .unwrap();
        }
        store.meta.remove("schema").unwrap();
        store.flush().await.unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(
        list(&store, Some(RunStatus::Completed), Some("w")).await,
        ["done"]
    );
    assert_eq!(
        list(&store, Some(RunStatus::Pending), Some("w")).await,
        ["waiting"]
    );
    assert_eq!(
        store.pins(PinKind::Plugin, "p").await.unwrap(),
        BTreeMap::from([("pd1".into(), 1)]),
        "the waiting run keeps its plugin"
    );
    assert_eq!(store.ended_before(10, 10).await.unwrap(), [(5, id("done"))]);
    assert!(store.get(&id("done")).await.unwrap().unwrap().closed);
    assert!(!store.get(&id("waiting")).await.unwrap().unwrap().closed);
}

/// A run of workflow `workflow` indexed by `search`.
fn searchable(id: &str, workflow: &str, created_ms: u64, search: &[(&str, &str)]) -> Run {
    Run {
        workflow: workflow.into(),
        search: search
            .iter()
            .map(|(field, value)| ((*field).to_owned(), (*value).to_owned()))
            .collect(),
        ..run(id, created_ms, None)
    }
}

/// Every page of `query`, `limit` runs at a time, as one list of ids.
async fn all_pages(store: &SledStore, mut query: ListQuery) -> Vec<String> {
    let mut found = Vec::new();
    loop {
        let page = store.list(&query).await.unwrap();
        assert!(page.runs.len() <= query.limit);
        found.extend(ids(&page).into_iter().map(str::to_owned));
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => return found,
        }
    }
}

#[tokio::test]
async fn runs_are_found_by_their_search_fields_and_creation_time() {
    let (store, _dir) = store();
    let runs = [
        searchable("a", "orders", 10, &[("order_id", "o-1"), ("user_id", "7")]),
        searchable("b", "orders", 20, &[("order_id", "o-2"), ("user_id", "7")]),
        searchable("c", "orders", 30, &[("order_id", "o-1"), ("user_id", "8")]),
        searchable("d", "refunds", 40, &[("order_id", "o-1")]),
        searchable("e", "orders", 50, &[]),
    ];
    for run in &runs {
        store.create(run).await.unwrap();
    }
    saved(&store, &runs[2], RunStatus::Completed).await;
    let query = |search: &[(&str, &str)]| ListQuery {
        search: search
            .iter()
            .map(|(f, v)| ((*f).to_owned(), (*v).to_owned()))
            .collect(),
        limit: 1,
        ..ListQuery::default()
    };
    // Newest first, every page, across workflows unless one is asked for.
    assert_eq!(
        all_pages(&store, query(&[("order_id", "o-1")])).await,
        ["d", "c", "a"]
    );
    assert_eq!(
        all_pages(
            &store,
            ListQuery {
                workflow: Some("orders".into()),
                ..query(&[("order_id", "o-1")])
            }
        )
        .await,
        ["c", "a"]
    );
    // Every filter holds: a second field, the status, the time.
    assert_eq!(
        all_pages(&store, query(&[("order_id", "o-1"), ("user_id", "7")])).await,
        ["a"]
    );
    assert_eq!(
        all_pages(
            &store,
            ListQuery {
                status: Some(RunStatus::Completed),
                ..query(&[("order_id", "o-1")])
            }
        )
        .await,
        ["c"]
    );
    assert_eq!(
        all_pages(
            &store,
            ListQuery {
                created_after: Some(20),
                created_before: Some(40),
                ..query(&[("order_id", "o-1")])
            }
        )
        .await,
        ["c"]
    );
    assert!(
        all_pages(&store, query(&[("order_id", "o-9")]))
            .await
            .is_empty()
    );
    assert!(
        all_pages(&store, query(&[("nope", "o-1")]))
            .await
            .is_empty()
    );
    // Creation time alone bounds the status indexes' ranges: [after, before).
    let window = |after, before| ListQuery {
        created_after: after,
        created_before: before,
        limit: 2,
        ..ListQuery::default()
    };
    assert_eq!(
        all_pages(&store, window(Some(20), Some(50))).await,
        ["d", "c", "b"]
    );
    assert_eq!(all_pages(&store, window(Some(50), None)).await, ["e"]);
    assert_eq!(all_pages(&store, window(None, Some(11))).await, ["a"]);
    assert!(
        all_pages(&store, window(Some(40), Some(40)))
            .await
            .is_empty()
    );
    assert!(
        all_pages(&store, window(Some(41), Some(20)))
            .await
            .is_empty()
    );
    assert_eq!(
        all_pages(
            &store,
            ListQuery {
                workflow: Some("orders".into()),
                status: Some(RunStatus::Pending),
                ..window(Some(15), None)
            }
        )
        .await,
        ["e", "b"]
    );

    // A run that goes leaves no search entry behind; a discarded one neither.
    let c = store.get(&id("c")).await.unwrap().unwrap();
    let c = closed(&store, &c, RunStatus::Completed, 100).await;
    store.delete(&c.id, 100).await.unwrap();
    store.discard(&runs[0]).await.unwrap();
    assert_eq!(
        all_pages(&store, query(&[("order_id", "o-1")])).await,
        ["d"]
    );
    assert_eq!(store.by_field.len(), 3, "b's two fields and d's one");
}
