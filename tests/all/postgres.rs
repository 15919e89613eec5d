//! The host on PostgreSQL (`[store] kind = "postgres"`), each test in a database of its own:
//! the order saga completes and compensates and survives `kill -9`; eight clients racing
//! with one key get one run.

use std::collections::HashSet;

use flowhost::store::postgres::ScratchDatabase;
use serde_json::json;

use crate::races::race;
use crate::sagas::count;
use crate::server::{Server, Services, order};
use crate::support::{TWO_STEPS, with_plugins};

/// `config` on the PostgreSQL store in `database`.
fn on(database: &ScratchDatabase, config: &str) -> String {
    format!(
        "{config}\n[store]\nkind = \"postgres\"\nurl = {:?}\npool-size = 8\n",
        database.url
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_order_saga_completes_compensates_and_survives_a_kill_on_postgres() {
    let database = ScratchDatabase::create().await;
    let services = Services::start().await;
    let mut server = Server::start(&on(&database, &services.config())).await;
    let (status, done) = server
        .post(
            "/v1/workflows/order_processing/runs?wait=30s",
            &order("o-1", 7, 50.0),
        )
        .await;
    assert_eq!(
        (status, done["status"].as_str()),
        (200, Some("completed")),
        "{done}"
    );
    let (status, undone) = server
        .post(
            "/v1/workflows/order_processing/runs?wait=30s",
            &order("o-2", 7, 5000.0),
        )
        .await;
    assert_eq!(
        (status, undone["status"].as_str()),
        (200, Some("compensated")),
        "{undone}"
    );
    server.kill();
    server.restart().await;
    for (run, status) in [(&done, "completed"), (&undone, "compensated")] {
        let id = run["id"].as_str().unwrap();
        let (code, read) = server.get(&format!("/v1/runs/{id}")).await;
        assert_eq!(
            (code, read["status"].as_str()),
            (200, Some(status)),
            "{read}"
        );
        let (_, journal) = server.get(&format!("/v1/runs/{id}/journal")).await;
        assert!(
            !journal["attempts"].as_array().unwrap().is_empty(),
            "{journal}"
        );
    }
    let (_, page) = server
        .get("/v1/runs?workflow=order_processing&status=compensated")
        .await;
    let listed: Vec<&str> = page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [undone["id"].as_str().unwrap()]);
    // One payment captured, and the declined order holds no reservation.
    let ledger = services.order("o-1").await;
    assert_eq!(count(&ledger, "payments", "captured"), 1, "{ledger}");
    let ledger = services.order("o-2").await;
    assert_eq!(count(&ledger, "reservations", "active"), 0, "{ledger}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_clients_sending_one_start_at_once_get_one_run_on_postgres() {
    let database = ScratchDatabase::create().await;
    let server = Server::start(&on(&database, &with_plugins(TWO_STEPS))).await;
    let url = format!("{}/v1/workflows/two/runs", server.url);
    let keyed = race::<8>(50, move |client, i| {
        client
            .post(&url)
            .header("Idempotency-Key", format!("checkout-{i}"))
            .json(&json!({ "n": i }))
    })
    .await;
    let mut runs = HashSet::new();
    for (i, ids) in keyed.iter().enumerate() {
        let named: HashSet<&String> = ids.iter().collect();
        assert_eq!(named.len(), 1, "key checkout-{i}: {ids:?}");
        runs.extend(named);
    }
    assert_eq!(runs.len(), 50);
    for id in runs {
        let run = server.until_terminal(id).await;
        assert_eq!(run["status"], "completed", "{run}");
    }
}
