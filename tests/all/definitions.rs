//! Workflow definitions pushed over the API and the CLI, on the real binary: validated before
//! anything changes, current for new runs at once, pinned by the runs in flight, rolled back,
//! retired; input schemas.

use std::process::Command;

use serde_json::{Value, json};

use crate::server::Server;
use crate::support::with_plugins;

const ADMIN_TOKEN: &str = "a-test-admin-token-of-some-length";

fn config() -> String {
    with_plugins(&format!(
        r#"
admin-token = "{ADMIN_TOKEN}"
[plugins.noop]
path = "{{NOOP}}"
[plugins.forward]
path = "{{FORWARD}}"
[workflows.nap]
steps = [
    {{ name = "a", plugin = "noop" }},
    {{ name = "nap", sleep = "1s" }},
    {{ name = "b", plugin = "noop" }},
]
"#
    ))
}

async fn put(server: &Server, name: &str, body: &str) -> (u16, Value) {
    let response = server
        .client
        .put(format!("{}/v1/workflows/{name}", server.url))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn admin(server: &Server, method: reqwest::Method, path: &str) -> (u16, Value) {
    let response = server
        .client
        .request(method, format!("{}{path}", server.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

fn steps(run: &Value) -> Vec<&str> {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_pushed_definition_runs_new_starts_while_runs_in_flight_finish_on_theirs() {
    let mut server = Server::start(&config()).await;
    let (_, old) = server.post("/v1/workflows/nap/runs", &json!({})).await;
    let old_id = old["id"].as_str().unwrap().to_owned();
    let body = json!({"steps": [
        {"name": "a", "plugin": "noop"},
        {"name": "b", "plugin": "noop"},
        {"name": "c", "plugin": "noop"},
    ]})
    .to_string();
    let (status, pushed) = put(&server, "nap", &body).await;
    assert_eq!(status, 201, "{pushed}");
    assert_eq!(
        (pushed["new"].as_bool(), pushed["changed"].as_bool()),
        (Some(true), Some(true))
    );
    let (status, again) = put(&server, "nap", &body).await;
    assert_eq!(
        (status, again["changed"].as_bool()),
        (200, Some(false)),
        "{again}"
    );
    // The answer came: a start now follows the new definition.
    let (_, new) = server
        .post("/v1/workflows/nap/runs?wait=10s", &json!({}))
        .await;
    assert_eq!(new["status"], "completed", "{new}");
    assert_eq!(steps(&new), ["a", "b", "c"]);
    assert_eq!(new["workflow_version"], pushed["digest"]);
    // The run that was asleep finishes on the definition it started with.
    let old = server.until_terminal(&old_id).await;
    assert_eq!(old["status"], "completed", "{old}");
    assert_eq!(steps(&old), ["a", "nap", "b"]);
    let (_, described) = admin(&server, reqwest::Method::GET, "/v1/workflows/nap").await;
    let versions = described["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{described}");
    assert_eq!(versions[0]["source"], "api");
    assert_eq!(versions[0]["current"], true);
    // A restart keeps the pushed version current: the configuration did not change.
    server.restart().await;
    let (_, after) = server
        .post("/v1/workflows/nap/runs?wait=10s", &json!({}))
        .await;
    assert_eq!(steps(&after), ["a", "b", "c"], "{after}");
    // A rollback brings the configuration's version back.
    let (status, rolled) =
        admin(&server, reqwest::Method::POST, "/v1/workflows/nap/rollback").await;
    assert_eq!(status, 200, "{rolled}");
    let (_, back) = server.post("/v1/workflows/nap/runs", &json!({})).await;
    assert_eq!(steps(&back), ["a", "nap", "b"], "{back}");
    // Deleting is refused while that run pins it, and nothing changes.
    let (status, problem) = admin(&server, reqwest::Method::DELETE, "/v1/workflows/nap").await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("pinned by runs in flight (1)"),
        "{problem}"
    );
    let back = server.until_terminal(back["id"].as_str().unwrap()).await;
    assert_eq!(back["status"], "completed");
    let (status, _) = admin(&server, reqwest::Method::DELETE, "/v1/workflows/nap").await;
    assert_eq!(status, 204);
    let (status, _) = server.post("/v1/workflows/nap/runs", &json!({})).await;
    assert_eq!(status, 404);
    // A name only the API knows survives a restart.
    let (status, _) = put(
        &server,
        "extra",
        r#"{"steps":[{"name":"a","plugin":"noop"}]}"#,
    )
    .await;
    assert_eq!(status, 201);
    server.restart().await;
    let (_, extra) = server
        .post("/v1/workflows/extra/runs?wait=10s", &json!({}))
        .await;
    assert_eq!(extra["status"], "completed", "{extra}");
}

#[tokio::test]
async fn malformed_definitions_are_refused_naming_the_field_and_change_nothing() {
    let server = Server::start(&config()).await;
    let (_, before) = admin(&server, reqwest::Method::GET, "/v1/workflows/nap").await;
    for (body, status, detail) in [
        ("{", 400, "malformed JSON"),
        (
            r#"{"steps": []}"#,
            422,
            "steps: a workflow needs at least one step",
        ),
        (
            r#"{"steps":[{"name":"a","plugin":"noop","retyr":{}}]}"#,
            422,
            "retyr",
        ),
        (
            r#"{"steps":[{"name":"a","plugin":"noop","retry":{"attempts":-1}}]}"#,
            422,
            "/steps/0/retry/attempts",
        ),
        (
            r#"{"steps":[{"name":"a","plugin":"nope"}]}"#,
            422,
            "steps.a.plugin: unknown plugin `nope`",
        ),
        (
            r#"{"steps":[{"name":"a","plugin":"forward"}]}"#,
            422,
            "steps.a.plugin: plugin `forward` does not implement step-plugin",
        ),
        (
            r#"{"steps":[{"name":"a","plugin":"noop","when":"context.x >"}]}"#,
            422,
            "steps.a.when: `context.x >` is not a valid CEL expression",
        ),
        (
            r#"{"steps":[{"name":"a","plugin":"noop","retry":{"attempts":0}}]}"#,
            422,
            "steps.a.retry.attempts: must be at least 1",
        ),
        (
            r#"{"steps":[{"name":"a","plugin":"noop"},{"name":"a","plugin":"noop"}]}"#,
            422,
            "duplicate step `a`",
        ),
        (
            r#"{"steps":[{"name":"a","sleep":"soon"}]}"#,
            422,
            "steps[0].sleep",
        ),
        (
            r#"{"steps":[{"name":"a"}]}"#,
            422,
            "steps.a: a step needs one of",
        ),
        (
            r#"{"steps":[{"name":"a","plugin":"noop"}],"trigger":"x.*"}"#,
            422,
            "trigger: a workflow's trigger",
        ),
        (
            r#"{"steps":[{"name":"a","plugin":"noop"}],"input-schema":{"type":"nope"}}"#,
            422,
            "input-schema",
        ),
        (
            r#"{"steps":[{"name":"a","plugin":"noop"}],"schedule":"every day"}"#,
            422,
            "schedule: `every day` is not a cron pattern",
        ),
        (
            r#"{"steps":[{"name":"a","plugin":"noop"}],"schedule":"0 0 2 * * *","schedule-timezone":"Mars/Olympus"}"#,
            422,
            "schedule-timezone: `Mars/Olympus` is not an IANA time zone",
        ),
        (
            r#"{"steps":[{"name":"a","plugin":"noop"}],"catch-up":"all"}"#,
            422,
            "schedule: schedule-timezone and catch-up need a schedule",
        ),
        (
            r#"{"steps":[{"name":"a","await":{"topic":"t","signal":"s"}}]}"#,
            422,
            "steps.a.await: an await names one `topic` or one `signal`",
        ),
        (
            r#"{"steps":[{"name":"a","await":{"signal":"s"},"on-timeout":"continue"}]}"#,
            422,
            "steps.a.on-timeout",
        ),
        (
            r#"{"steps":[{"name":"a","await":{"topic":"t","match":"evnt.x"}}]}"#,
            422,
            "steps.a.await.match: unknown variable `evnt`",
        ),
    ] {
        let (got, problem) = put(&server, "nap", body).await;
        assert_eq!(got, status, "{body}: {problem}");
        let text = problem["detail"].as_str().unwrap_or_default();
        assert!(text.contains(detail), "{body}: {text}");
    }
    let (status, _) = put(
        &server,
        "bad name",
        r#"{"steps":[{"name":"a","plugin":"noop"}]}"#,
    )
    .await;
    assert_eq!(status, 400);
    let unauthorised = server
        .client
        .put(format!("{}/v1/workflows/nap", server.url))
        .body(r#"{"steps":[{"name":"a","plugin":"noop"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorised.status().as_u16(), 401);
    let (_, after) = admin(&server, reqwest::Method::GET, "/v1/workflows/nap").await;
    assert_eq!(before, after, "nothing changed");
    let (_, run) = server.post("/v1/workflows/nap/runs", &json!({})).await;
    assert_eq!(steps(&run), ["a", "nap", "b"]);
}

#[tokio::test]
async fn the_cli_pushes_toml_and_lists_and_the_schema_is_served() {
    let server = Server::start(&config()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nap.toml");
    std::fs::write(
        &file,
        "[workflows.nap]\nsteps = [{ name = \"a\", plugin = \"noop\" }, { name = \"z\", plugin = \"noop\" }]\n",
    )
    .unwrap();
    let cli = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_flowhost"))
            .arg("workflow")
            .args(args)
            .args(["--server", &server.url, "--token", ADMIN_TOKEN])
            .output()
            .unwrap();
        (
            output.status.code().unwrap(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (status, out, err) = cli(&["push", "nap", file.to_str().unwrap()]);
    assert_eq!(status, 0, "{err}");
    assert!(
        out.contains("nap: sha256:") && out.contains("new version"),
        "{out}"
    );
    let (_, run) = server
        .post("/v1/workflows/nap/runs?wait=10s", &json!({}))
        .await;
    assert_eq!(steps(&run), ["a", "z"]);
    let (status, out, _) = cli(&["get", "nap"]);
    assert_eq!(status, 0);
    assert!(
        out.starts_with("workflow nap\nDIGEST") && out.contains("\"name\": \"z\""),
        "{out}"
    );
    let (status, out, _) = cli(&["list"]);
    assert_eq!(status, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with("nap ") && l.contains(" 2 ")),
        "{out}"
    );
    std::fs::write(&file, "steps = [{ name = \"a\", plugin = \"missing\" }]\n").unwrap();
    let (status, _, err) = cli(&["push", "nap", file.to_str().unwrap()]);
    assert_ne!(status, 0);
    assert!(
        err.contains("422") && err.contains("unknown plugin `missing`"),
        "{err}"
    );
    let (status, schema) = server.get("/v1/schemas/workflow.json").await;
    assert_eq!(status, 200);
    assert!(schema["properties"]["steps"].is_object(), "{schema}");
    assert!(schema.to_string().contains("sleep-until"));
}

#[tokio::test]
async fn an_input_that_does_not_match_the_schema_is_refused_with_its_path() {
    let config = with_plugins(
        r#"
[plugins.noop]
path = "{NOOP}"
[workflows.orders]
steps = [{ name = "a", plugin = "noop" }]
input-schema = { type = "object", required = ["order_id"], properties = { order_id = { type = "string" }, total = { type = "number", minimum = 0 } } }
"#,
    );
    let server = Server::start(&config).await;
    for (body, path) in [
        (json!({"total": 5}), "order_id"),
        (json!({"order_id": 7}), "/order_id"),
        (json!({"order_id": "o-1", "total": -1}), "/total"),
    ] {
        let (status, problem) = server.post("/v1/workflows/orders/runs", &body).await;
        assert_eq!(status, 400, "{body}: {problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains("input-schema") && detail.contains(path),
            "{detail}"
        );
    }
    let (_, listed) = server.get("/v1/runs?workflow=orders").await;
    assert_eq!(
        listed["runs"].as_array().unwrap().len(),
        0,
        "no run was made"
    );
    let (status, run) = server
        .post(
            "/v1/workflows/orders/runs?wait=10s",
            &json!({"order_id": "o-1", "total": 5}),
        )
        .await;
    assert_eq!(
        (status, run["status"].as_str()),
        (200, Some("completed")),
        "{run}"
    );
}

#[tokio::test]
async fn a_parallel_step_with_a_mistake_is_refused_naming_it() {
    let server = Server::start(&config()).await;
    let step = |name: &str| json!({ "name": name, "plugin": "noop" });
    let nested = json!({ "name": "b", "parallel": [[step("c")], [step("d")]] });
    for (branches, key) in [
        (json!([[step("a")]]), "steps.fan.parallel"),
        (json!([[step("a")], [step("a")]]), "steps"),
        (json!([[step("a")], [nested]]), "steps.b.parallel"),
        (
            json!([[step("a")], [{ "name": "b", "await": { "signal": "go" } }]]),
            "steps.b.await",
        ),
        (
            json!([[step("a")], [{ "name": "b", "plugin": "nope" }]]),
            "steps.b.plugin",
        ),
        (json!({ "a": [step("a")] }), "/steps/0/parallel"),
    ] {
        let body = json!({ "steps": [{ "name": "fan", "parallel": branches }] });
        let (status, answer) = put(&server, "fan", &body.to_string()).await;
        assert_eq!(status, 422, "{body}: {answer}");
        let detail = answer["detail"].as_str().unwrap();
        assert!(detail.contains(key), "{key} in {detail}");
    }
    let body = json!({ "steps": [{ "name": "fan", "parallel": [[step("a")], [step("b")]], "max-parallel": 0 }] });
    let (status, answer) = put(&server, "fan", &body.to_string()).await;
    assert_eq!(status, 422, "{answer}");
    let (status, _) = admin(&server, reqwest::Method::GET, "/v1/workflows/fan").await;
    assert_eq!(status, 404, "nothing was registered");
    let body = json!({ "steps": [{ "name": "fan", "parallel": [[step("a")], [step("b")]], "max-parallel": 1 }] });
    let (status, answer) = put(&server, "fan", &body.to_string()).await;
    assert_eq!(status, 201, "{answer}");
}

#[tokio::test]
async fn a_child_workflow_step_must_name_another_known_workflow() {
    let server = Server::start(&config()).await;
    for (child, reason) in [
        ("nope", "unknown workflow `nope`"),
        ("kid", "nest for ever: `kid` → `kid`"),
    ] {
        let body = json!({ "steps": [{ "name": "ship", "workflow": child }] });
        let (status, answer) = put(&server, "kid", &body.to_string()).await;
        assert_eq!(status, 422, "{answer}");
        let detail = answer["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("steps.ship.workflow") && detail.contains(reason),
            "{detail}"
        );
    }
    let body = json!({ "steps": [{ "name": "ship", "plugin": "noop", "input": "context" }] });
    let (status, answer) = put(&server, "kid", &body.to_string()).await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .starts_with("steps.ship.input"),
        "{answer}"
    );
    let body = json!({ "steps": [{ "name": "ship", "workflow": "nap", "input": "{'order': context.id}" }] });
    let (status, answer) = put(&server, "kid", &body.to_string()).await;
    assert_eq!(status, 201, "{answer}");
    // nap running kid, which runs nap, would nest for ever.
    let body = json!({ "steps": [{ "name": "again", "workflow": "kid" }] });
    let (status, answer) = put(&server, "nap", &body.to_string()).await;
    assert_eq!(status, 422, "{answer}");
    let detail = answer["detail"].as_str().unwrap();
    assert!(detail.contains("`nap` → `kid` → `nap`"), "{detail}");
}
