//! Workflow definitions that change under runs in flight: the real binary, killed, restarted
//! with another configuration. Finding 2 of issue 10: runs in flight when the host stopped,
//! restarted with the workflow's steps changed, all stayed `running` forever, and nothing was
//! logged, because the engine indexed a run's steps by their position in the *current*
//! definition.

use serde_json::Value;

use crate::server::{Server, Services, order};

const ADMIN_TOKEN: &str = "a-test-admin-token-of-some-length";

/// The example's configuration with an admin token.
fn configured(services: &Services) -> String {
    format!("admin-token = \"{ADMIN_TOKEN}\"\n{}", services.config())
}

/// `config` with the order saga changed: a step added at the front, the last one removed.
fn changed(config: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    for line in config.lines() {
        if line == "[workflows.order_processing]" {
            lines.push("[plugins.noop]".into());
            lines.push(format!("path = {:?}", flowhost_test_artifacts::NOOP));
        }
        if line
            .trim_start()
            .starts_with("{ name = \"send_confirmation\"")
        {
            continue;
        }
        if line.trim_start().starts_with("{ name = \"validate_user\"") {
            lines.push(r#"    { name = "audit", plugin = "noop", compensate = false },"#.into());
        }
        lines.push(line.into());
    }
    lines.join("\n")
}

/// `config` without the order saga, its last section.
fn removed(config: &str) -> String {
    let start = config.find("[workflows.order_processing]").unwrap();
    assert!(
        !config[start + 1..].contains("\n["),
        "the saga is the last section"
    );
    config[..start].to_owned()
}

fn step_names(run: &Value) -> Vec<&str> {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect()
}

async fn admin_get(server: &Server, path: &str) -> (u16, Value) {
    let response = server
        .client
        .get(format!("{}{path}", server.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn runs_in_flight_finish_on_their_own_definition_after_it_changes() {
    let services = Services::start().await;
    let config = configured(&services);
    let mut server = Server::start(&config).await;
    services.delay(200).await; // every service call takes a while: runs are in flight
    let mut ids = Vec::new();
    for i in 0..10 {
        let (status, run) = server
            .post(
                "/v1/workflows/order_processing/runs",
                &order(&format!("v-{i}"), 7, 20.0),
            )
            .await;
        assert_eq!(status, 202, "{run}");
        ids.push(run["id"].as_str().unwrap().to_owned());
    }
    let (_, first) = admin_get(&server, "/v1/workflows/order_processing").await;
    let old = first["current"].as_str().unwrap().to_owned();
    assert_eq!(first["versions"][0]["pinned_runs"], 10, "{first}");
    server.kill();

    server.reconfigure(&changed(&config));
    services.delay(0).await;
    server.restart().await;
    for (i, id) in ids.iter().enumerate() {
        let run = server.until_terminal(id).await;
        assert_eq!(run["status"], "completed", "{run}");
        assert_eq!(run["workflow_version"], old.as_str());
        assert_eq!(
            step_names(&run),
            [
                "validate_user",
                "reserve_inventory",
                "process_payment",
                "create_order",
                "send_confirmation"
            ],
            "its own steps, the removed one included"
        );
        let ledger = services.order(&format!("v-{i}")).await;
        assert_eq!(ledger["payments"]["captured"].as_array().unwrap().len(), 1);
    }
    assert_eq!(
        server.logged("workflow definition changed"),
        1,
        "{}",
        server.log()
    );
    let line = server
        .log()
        .lines()
        .find(|l| l.contains("workflow definition changed"))
        .unwrap()
        .to_owned();
    assert!(line.contains("runs_in_flight=10"), "{line}");

    let (_, fresh) = server
        .post(
            "/v1/workflows/order_processing/runs?wait=30s",
            &order("v-new", 7, 20.0),
        )
        .await;
    assert_eq!(fresh["status"], "completed", "{fresh}");
    assert_eq!(
        step_names(&fresh),
        [
            "audit",
            "validate_user",
            "reserve_inventory",
            "process_payment",
            "create_order"
        ]
    );
    let (status, described) = admin_get(&server, "/v1/workflows/order_processing").await;
    assert_eq!(status, 200, "{described}");
    let versions = described["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{described}");
    assert_eq!(described["current"], versions[0]["digest"]);
    assert_eq!(versions[1]["digest"], old.as_str());
    assert!(
        versions.iter().all(|v| v["pinned_runs"] == 0),
        "all ended: {described}"
    );
    assert_eq!(versions[0]["definition"]["steps"][0]["name"], "audit");
    let (_, listed) = admin_get(&server, "/v1/workflows").await;
    assert_eq!(
        listed["workflows"][0]["name"], "order_processing",
        "{listed}"
    );
    let (status, _) = server.get("/v1/workflows").await;
    assert_eq!(status, 401, "an admin route");
}

#[tokio::test]
async fn a_removed_workflow_finishes_its_runs_and_starts_no_new_ones() {
    let services = Services::start().await;
    let config = configured(&services);
    let mut server = Server::start(&config).await;
    services.delay(200).await;
    let (status, run) = server
        .post(
            "/v1/workflows/order_processing/runs",
            &order("gone-1", 7, 20.0),
        )
        .await;
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    server.kill();

    let without = removed(&config);
    assert!(!without.contains("order_processing"), "{without}");
    server.reconfigure(&without);
    services.delay(0).await;
    server.restart().await;
    assert_eq!(server.until_terminal(&id).await["status"], "completed");
    let (status, problem) = server
        .post(
            "/v1/workflows/order_processing/runs",
            &order("gone-2", 7, 20.0),
        )
        .await;
    assert_eq!(status, 404, "{problem}");
    let (_, described) = admin_get(&server, "/v1/workflows/order_processing").await;
    assert_eq!(described["current"], Value::Null, "{described}");
    assert!(
        server.logged("workflow left the configuration") == 1,
        "{}",
        server.log()
    );
}
