//! Several nodes on one PostgreSQL database: a dead node's runs finish on the others, and a
//! node that lost its lease writes nothing more of the runs it held.

use std::time::Duration;

use flowhost::store::postgres::ScratchDatabase;
use serde_json::Value;

use crate::postgres::on;
use crate::sagas::count;
use crate::server::{Server, Services, WAITING_WORKFLOWS, order};
use crate::support::with_plugins;

/// `config` for one node of a cluster on `database`, with a short lease.
fn node(database: &ScratchDatabase, config: &str, lease: &str) -> String {
    format!("{}\n[cluster]\nlease = {lease:?}\n", on(database, config))
}

/// A client of the scratch database, to look at what the nodes wrote.
async fn sql(database: &ScratchDatabase) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&database.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// Every acknowledged order ended as its total says, and the ledger agrees: nobody charged
/// twice, nothing left reserved or charged for a compensated run.
async fn check_orders(api: &Server, services: &Services, acknowledged: &[(String, String, bool)]) {
    for (order_id, run_id, declined) in acknowledged {
        let run = api.until_terminal(run_id).await;
        let ledger = services.order(order_id).await;
        let payments =
            count(&ledger, "payments", "captured") + count(&ledger, "payments", "refunded");
        assert!(payments <= 1, "charged twice: {ledger}");
        match (run["status"].as_str().unwrap(), declined) {
            ("completed", false) => {
                assert_eq!(count(&ledger, "payments", "captured"), 1, "{run} {ledger}");
                assert_eq!(count(&ledger, "orders", "active"), 1, "{ledger}");
            }
            ("compensated", true) => {
                assert_eq!(count(&ledger, "payments", "captured"), 0, "{ledger}");
                assert_eq!(count(&ledger, "reservations", "active"), 0, "{ledger}");
                assert_eq!(count(&ledger, "orders", "active"), 0, "{ledger}");
            }
            (status, _) => panic!("order {order_id} (run {run_id}) ended {status}: {run}"),
        }
    }
}

/// Journal entries of each run, in order, name epochs that never go back: one owner after
/// another, none writing once the next took over.
async fn check_one_owner_per_epoch(database: &ScratchDatabase) -> usize {
    let rows = sql(database)
        .await
        .query(
            "SELECT run_id, array_agg(epoch ORDER BY seq) FROM journal GROUP BY run_id",
            &[],
        )
        .await
        .unwrap();
    let mut taken_over = 0;
    for row in &rows {
        let (run, epochs): (&str, Vec<i64>) = (row.get(0), row.get(1));
        assert!(epochs.is_sorted(), "run {run}: entries by epoch {epochs:?}");
        if epochs.last() > epochs.first() {
            taken_over += 1;
        }
    }
    taken_over
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_under_load_has_its_runs_finished_by_the_others() {
    let database = ScratchDatabase::create().await;
    let services = Services::start().await;
    let config = node(&database, &services.config(), "2s");
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Server::start(&config).await);
    }
    // Every service call takes a while: runs are in flight when the node dies.
    services.delay(100).await;
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let clients: Vec<_> = (0..16)
        .map(|client| {
            let urls = urls.clone();
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut at = client % urls.len();
                let mut acknowledged = Vec::new();
                for i in 0..12 {
                    let order_id = format!("k-{client}-{i}");
                    let declined = i % 5 == 0;
                    let total = if declined { 5000.0 } else { 20.0 };
                    // A client whose node is gone goes to the next one, with the same key:
                    // a start the dead node took before it died is that run.
                    for _ in 0..urls.len() {
                        let answer = http
                            .post(format!("{}/v1/workflows/order_processing/runs", urls[at]))
                            .header("Idempotency-Key", &order_id)
                            .json(&order(&order_id, 7, total))
                            .send()
                            .await;
                        match answer {
                            Ok(answer) if [200, 202].contains(&answer.status().as_u16()) => {
                                let run: Value = answer.json().await.unwrap();
                                let id = run["id"].as_str().unwrap().to_owned();
                                acknowledged.push((order_id, id, declined));
                                break;
                            }
                            Ok(answer) => {
                                panic!("{}: {}", answer.status(), answer.text().await.unwrap())
                            }
                            Err(_) => at = (at + 1) % urls.len(),
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(60)).await;
                }
                acknowledged
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    nodes[0].kill();
    let mut acknowledged = Vec::new();
    for client in clients {
        acknowledged.extend(client.await.unwrap());
    }
    assert_eq!(acknowledged.len(), 16 * 12);
    check_orders(&nodes[1], &services, &acknowledged).await;
    let ledger = services.ledger().await;
    let completed = acknowledged
        .iter()
        .filter(|(_, _, declined)| !declined)
        .count();
    assert_eq!(
        count(&ledger, "payments", "captured"),
        completed,
        "{ledger}"
    );

    let taken_over = check_one_owner_per_epoch(&database).await;
    assert!(
        taken_over > 0,
        "no run of the dead node was finished elsewhere"
    );
    assert!(
        nodes[1].logged("took over runs") + nodes[2].logged("took over runs") > 0,
        "{}",
        nodes[1].log()
    );
    let (status, listed) = nodes[2].get("/v1/nodes").await;
    assert_eq!(status, 200, "{listed}");
    let listed = listed["nodes"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 3, "{listed:?}");
    let dead = nodes[0].url.trim_start_matches("http://");
    for node in &listed {
        let live = node["id"] != dead;
        assert_eq!(node["live"], live, "{node}");
        assert_eq!(node["runs"], 0, "every run is finished: {node}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_paused_past_its_lease_writes_nothing_more_of_its_runs() {
    let database = ScratchDatabase::create().await;
    let services = Services::start().await;
    let config = node(&database, &services.config(), "1s");
    let (paused, other) = (Server::start(&config).await, Server::start(&config).await);
    services.delay(250).await;
    let mut acknowledged = Vec::new();
    for i in 0..8 {
        let order_id = format!("p-{i}");
        let declined = i % 4 == 0;
        let total = if declined { 5000.0 } else { 20.0 };
        let (status, run) = paused
            .post(
                "/v1/workflows/order_processing/runs",
                &order(&order_id, 7, total),
            )
            .await;
        assert_eq!(status, 202, "{run}");
        acknowledged.push((order_id, run["id"].as_str().unwrap().to_owned(), declined));
    }
    // Mid-step, every run: then the node stops, past its lease.
    tokio::time::sleep(Duration::from_millis(400)).await;
    paused.signal("STOP");
    check_orders(&other, &services, &acknowledged).await;
    let journal = |rows: Vec<tokio_postgres::Row>| -> Vec<(String, i32, i64)> {
        rows.iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    };
    let client = sql(&database).await;
    let before = journal(
        client
            .query(
                "SELECT run_id, seq, epoch FROM journal ORDER BY run_id, seq",
                &[],
            )
            .await
            .unwrap(),
    );
    let revisions = "SELECT id, revision, status FROM runs ORDER BY id";
    let records = |rows: Vec<tokio_postgres::Row>| -> Vec<(String, i64, String)> {
        rows.iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    };
    let ended = records(client.query(revisions, &[]).await.unwrap());

    // Woken, it finishes the steps it was in, and is refused every write of them.
    paused.signal("CONT");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while paused.logged("letting it go") == 0 {
        assert!(std::time::Instant::now() < deadline, "{}", paused.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(paused.logged("lease had run out") > 0, "{}", paused.log());
    // Long enough for what else it would write.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = journal(
        client
            .query(
                "SELECT run_id, seq, epoch FROM journal ORDER BY run_id, seq",
                &[],
            )
            .await
            .unwrap(),
    );
    assert_eq!(
        after, before,
        "the paused node wrote journal entries after it lost them"
    );
    assert_eq!(records(client.query(revisions, &[]).await.unwrap()), ended);
    assert!(
        check_one_owner_per_epoch(&database).await > 0,
        "nothing was taken over"
    );
    check_orders(&other, &services, &acknowledged).await;
    // And it is a live node again, owning nothing.
    let (_, listed) = paused.get("/v1/nodes").await;
    for node in listed["nodes"].as_array().unwrap() {
        assert_eq!(node["live"], true, "{node}");
        assert_eq!(node["runs"], 0, "{node}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signal_or_cancel_sent_to_any_node_reaches_a_run_another_node_holds() {
    let database = ScratchDatabase::create().await;
    let services = Services::start().await;
    let config = node(
        &database,
        &format!("{}{}", services.config(), WAITING_WORKFLOWS),
        "10s",
    );
    let (a, b) = (Server::start(&config).await, Server::start(&config).await);
    let start = |workflow: &'static str, i: usize| {
        let a = &a;
        async move {
            let (status, run) = a
                .post(
                    &format!("/v1/workflows/{workflow}/runs"),
                    &order(&format!("{workflow}-{i}"), 7, 20.0),
                )
                .await;
            assert_eq!(status, 202, "{run}");
            run["id"].as_str().unwrap().to_owned()
        }
    };
    let mut approvals = Vec::new();
    for i in 0..4 {
        approvals.push(start("approval", i).await);
    }
    let naps = [start("nap", 0).await, start("nap", 1).await];
    for id in approvals.iter().chain(&naps) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (_, run) = b.get(&format!("/v1/runs/{id}")).await;
            let waiting = run["steps"]
                .as_array()
                .unwrap()
                .iter()
                .any(|step| step["status"] == "waiting");
            if waiting {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{run}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Held by a, asked of b.
    for id in &approvals[..2] {
        let (status, answer) = b
            .post(
                &format!("/v1/runs/{id}/signals/approved"),
                &serde_json::json!({"by": "b"}),
            )
            .await;
        assert_eq!(status, 202, "{answer}");
    }
    for id in [&approvals[2], &naps[0]] {
        let (status, answer) = b.post(&format!("/v1/runs/{id}/cancel"), &Value::Null).await;
        assert_eq!(status, 202, "{answer}");
    }
    for id in &approvals[..2] {
        assert_eq!(b.until_terminal(id).await["status"], "completed");
    }
    for id in [&approvals[2], &naps[0]] {
        assert_eq!(a.until_terminal(id).await["status"], "cancelled");
    }
    assert!(check_one_owner_per_epoch(&database).await > 0);
    // The rest wait on a still.
    let (_, listed) = b.get("/v1/nodes").await;
    let owned: Vec<(String, u64)> = listed["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["address"].as_str().unwrap().to_owned(),
                n["runs"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(owned.len(), 2, "{listed}");
    for (address, runs) in owned {
        let expected = if address == a.url { 2 } else { 0 };
        assert_eq!(runs, expected, "{address}: {listed}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn timers_and_a_schedule_on_three_nodes_fire_once_each_through_a_restart_of_all() {
    const TIMERS: usize = 1000;
    let database = ScratchDatabase::create().await;
    let config = node(
        &database,
        &with_plugins(
            r#"
[plugins.noop]
path = "{NOOP}"
[workflows.timer]
steps = [{ name = "a", plugin = "noop" }, { name = "nap", sleep = "8s" }, { name = "b", plugin = "noop" }]
[workflows.tick]
schedule = "* * * * * *"
catch-up = "none"
steps = [{ name = "a", plugin = "noop" }]
"#,
        ),
        "10s",
    );
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Server::start(&config).await);
    }
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let urls = urls.clone();
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                for i in (client..TIMERS).step_by(8) {
                    let answer = http
                        .post(format!("{}/v1/workflows/timer/runs", urls[i % 3]))
                        .json(&serde_json::json!({ "i": i }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(answer.status(), 202, "{}", answer.text().await.unwrap());
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    // Every timer is set; every node dies and comes back, with the timers still to fire.
    for node in &mut nodes {
        node.kill();
    }
    for node in &mut nodes {
        node.restart().await;
    }
    let client = sql(&database).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let done: i64 = client
            .query_one(
                "SELECT count(*) FROM runs WHERE workflow = 'timer' AND status = 'completed'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if done as usize == TIMERS {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{done} of {TIMERS} completed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The step after each timer ran once: each timer fired once, on one node.
    let fired = client
        .query(
            "SELECT j.run_id, count(*) FROM journal j JOIN runs r ON r.id = j.run_id
             WHERE r.workflow = 'timer' AND j.entry ->> 'step' = 'b' GROUP BY j.run_id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(fired.len(), TIMERS);
    for row in &fired {
        let (run, times): (&str, i64) = (row.get(0), row.get(1));
        assert_eq!(times, 1, "run {run} fired {times} times");
    }
    // Each firing of the schedule is one run that ran its step once, whichever node
    // started it.
    let ticks = client
        .query(
            "SELECT r.id, (SELECT count(*) FROM journal j WHERE j.run_id = r.id)
             FROM runs r WHERE r.workflow = 'tick' AND r.status = 'completed'",
            &[],
        )
        .await
        .unwrap();
    assert!(ticks.len() >= 3, "{} ticks", ticks.len());
    for row in &ticks {
        let (run, entries): (&str, i64) = (row.get(0), row.get(1));
        assert_eq!(entries, 1, "tick {run}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_child_ended_on_another_node_wakes_its_parent_there_and_is_undone_from_the_first() {
    let database = ScratchDatabase::create().await;
    let services = Services::start().await;
    // The child waits for a signal, so that a node other than its parent's can end it.
    let workflows = r#"
[workflows.fulfilment]
steps = [
    { name = "approve", await = { signal = "approved", timeout = "1h" } },
    { name = "create_order", plugin = "order" },
]
[workflows.ordered]
steps = [
    { name = "validate_user", plugin = "validate_user", compensate = false },
    { name = "reserve_inventory", plugin = "inventory" },
    { name = "fulfil", workflow = "fulfilment" },
    { name = "nap", sleep = "1h" },
]
"#;
    let config = node(
        &database,
        &format!("{}{workflows}", services.config()),
        "10s",
    );
    let (a, b) = (Server::start(&config).await, Server::start(&config).await);
    let (status, run) = a
        .post("/v1/workflows/ordered/runs", &order("o-child", 7, 20.0))
        .await;
    assert_eq!(status, 202, "{run}");
    let parent = run["id"].as_str().unwrap().to_owned();
    let child = format!("{parent}.fulfil");
    let waits_at = |server: &'static str, id: String, at: &'static str| {
        let server = if server == "a" { &a } else { &b };
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                let (_, run) = server.get(&format!("/v1/runs/{id}")).await;
                let waiting = run["steps"].as_array().is_some_and(|steps| {
                    steps
                        .iter()
                        .any(|s| s["name"] == at && s["status"] == "waiting")
                });
                if waiting {
                    return;
                }
                assert!(std::time::Instant::now() < deadline, "never at {at}: {run}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    waits_at("a", child.clone(), "approve").await;
    // Ended on b, which took it from a: the parent, which a held, goes on at b.
    let (status, answer) = b
        .post(
            &format!("/v1/runs/{child}/signals/approved"),
            &serde_json::json!({"by": "b"}),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(b.until_terminal(&child).await["status"], "completed");
    waits_at("b", parent.clone(), "nap").await;
    // Cancelled on a: the parent moves back, and undoes the child b ended.
    let (status, answer) = a
        .post(&format!("/v1/runs/{parent}/cancel"), &Value::Null)
        .await;
    assert_eq!(status, 202, "{answer}");
    let run = a.until_terminal(&parent).await;
    assert_eq!(run["status"], "cancelled", "{run}");
    let (_, ended) = a.get(&format!("/v1/runs/{child}")).await;
    assert_eq!(ended["status"], "compensated", "{ended}");
    let ledger = services.order("o-child").await;
    assert_eq!(count(&ledger, "orders", "active"), 0, "{ledger}");
    assert_eq!(count(&ledger, "reservations", "active"), 0, "{ledger}");
    assert!(check_one_owner_per_epoch(&database).await >= 2);
}

/// PostgreSQL stopped and started again under load on three nodes, for longer than their
/// leases: every node answers 503 while it is down (never another 5xx), every start that was
/// acknowledged completes once it is back, with no restart of a node, and the journal shows
/// one owner per epoch through the claims that follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarted_under_load_on_three_nodes_loses_nothing_acknowledged() {
    use crate::postgres::PrivatePostgres;
    use crate::support::{TWO_STEPS, with_plugins};
    let postgres = PrivatePostgres::start_new();
    let config = format!(
        "{}\n[store]\nkind = \"postgres\"\nurl = {:?}\npool-size = 8\n[cluster]\nlease = \"2s\"\n",
        with_plugins(TWO_STEPS),
        postgres.url()
    );
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Server::start(&config).await);
    }
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn(crate::postgres::load_until(urls, 12, stop.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    postgres.stop();
    // Past every lease.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    for node in &nodes {
        let (ready, checks) = node.get("/readyz").await;
        assert_eq!(ready, 503, "{checks}");
    }
    postgres.start();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acknowledged, refused) = load.await.unwrap();
    assert!(refused > 0, "nothing was refused while PostgreSQL was down");
    assert!(acknowledged.len() > 16, "{} runs", acknowledged.len());
    for (i, id) in acknowledged.iter().enumerate() {
        let run = nodes[i % 3].until_terminal(id).await;
        assert_eq!(run["status"], "completed", "{run}");
    }
    for node in &nodes {
        let (ready, checks) = node.get("/readyz").await;
        assert_eq!(ready, 200, "{checks}");
    }
    let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    for row in client
        .query(
            "SELECT run_id, array_agg(epoch ORDER BY seq) FROM journal GROUP BY run_id",
            &[],
        )
        .await
        .unwrap()
    {
        let (run, epochs): (&str, Vec<i64>) = (row.get(0), row.get(1));
        assert!(epochs.is_sorted(), "run {run}: entries by epoch {epochs:?}");
    }
}

/// Events awaited by runs on three nodes, published through any node and carried by NATS
/// JetStream to whichever node pulls them: each reaches the run it matches, wherever that
/// run is held, and only that run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_awaited_event_reaches_its_run_whichever_node_takes_it() {
    use crate::events::{NATS_URL, delete_stream, nats_section};
    use crate::workflows::{settlement, until_step};
    let database = ScratchDatabase::create().await;
    let stream = format!("cluster_awaits_{}", std::process::id());
    delete_stream(NATS_URL, &stream).await;
    // The settlement workflow of the one-node tests, its events on NATS JetStream.
    let workflows = format!("{}{}", settlement(false), nats_section(NATS_URL, &stream));
    let config = node(&database, &workflows, "10s");
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Server::start(&config).await);
    }
    let mut runs = Vec::new();
    for i in 0..13 {
        let (status, run) = nodes[i % 3]
            .post(
                "/v1/workflows/settle/runs",
                &serde_json::json!({"order_id": format!("o-{i}")}),
            )
            .await;
        assert_eq!(status, 202, "{run}");
        runs.push(run["id"].as_str().unwrap().to_owned());
    }
    for (i, id) in runs.iter().enumerate() {
        until_step(&nodes[i % 3], id, "settled", "waiting").await;
    }
    // Each published on another node than its run's; o-12's never is.
    for i in 0..12 {
        let (status, answer) = nodes[(i + 1) % 3]
            .post(
                "/v1/events/payment.settled",
                &serde_json::json!({"order_id": format!("o-{i}"), "amount": i}),
            )
            .await;
        assert_eq!(status, 202, "{answer}");
    }
    for (i, id) in runs.iter().enumerate().take(12) {
        let run = nodes[i % 3].until_terminal(id).await;
        assert_eq!(run["status"], "completed", "{run}");
        assert_eq!(run["context"]["amount"], i, "{run}");
    }
    let (_, unsettled) = nodes[0].get(&format!("/v1/runs/{}", runs[12])).await;
    assert_eq!(
        crate::sagas::step(&unsettled, "settled")["status"],
        "waiting",
        "{unsettled}"
    );
    drop(nodes);
    delete_stream(NATS_URL, &stream).await;
}

/// `examples/cluster/flowhost.toml` (read without the environment) is a valid configuration
/// for nodes sharing PostgreSQL and NATS, and its plugins and workflows are those of
/// `examples/order-processing`, which it copies: the copies have not drifted.
#[test]
fn the_cluster_example_is_valid_and_serves_the_order_example() {
    let read = |example: &str| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples")
            .join(example)
            .join("flowhost.toml");
        let toml = std::fs::read_to_string(&path).unwrap();
        flowhost::Config::from_toml(&toml).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()))
    };
    let (cluster, order) = (read("cluster"), read("order-processing"));
    assert_eq!(cluster.store.kind, flowhost::store::StoreKind::Postgres);
    assert!(cluster.store.url.is_some());
    assert!(
        cluster.cluster.node_id.is_none(),
        "set per node by the run script"
    );
    assert!(matches!(
        cluster.events.transport,
        flowhost::events::transport::TransportConfig::Nats(_)
    ));
    for (name, definition) in &cluster.workflows {
        assert_eq!(
            Some(definition),
            order.workflows.get(name),
            "workflow {name}"
        );
    }
    for (name, plugin) in &cluster.plugins {
        let theirs = &order.plugins[name];
        assert_eq!(
            plugin.path.original(),
            theirs.path.original(),
            "plugin {name}"
        );
        assert_eq!(
            (&plugin.services, &plugin.publish, &plugin.config),
            (&theirs.services, &theirs.publish, &theirs.config),
            "plugin {name}"
        );
    }
    assert_eq!(
        cluster.subscriptions.keys().collect::<Vec<_>>(),
        order.subscriptions.keys().collect::<Vec<_>>()
    );
}
