//! Hot swap: the plugin registry's API, runs pinned to their versions across swaps and
//! restarts, refused uploads, rollback, deletion, admin auth, the directory watch and the
//! CLI, on the real binary with `marked-v1` and `marked-v2`, two versions of a step plugin
//! that leave different marks.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use flowhost_test_artifacts::with_custom_section;

use crate::races::at_once;
use crate::server::Server;

pub const TOKEN: &str = "test-admin-token-0123456789";

pub fn wasm_v1() -> Vec<u8> {
    std::fs::read(flowhost_test_artifacts::MARKED_V1).unwrap()
}

pub fn wasm_v2() -> Vec<u8> {
    std::fs::read(flowhost_test_artifacts::MARKED_V2).unwrap()
}

pub fn digest(wasm: &[u8]) -> String {
    hex::encode(Sha256::digest(wasm))
}

/// `wasm` with a custom section appended: the same code under another digest.
fn variant(wasm: &[u8], n: u32) -> Vec<u8> {
    with_custom_section(wasm, &n.to_le_bytes())
}

/// The `marks` service: records which version served each call, and holds the calls of
/// the runs it is told to hold until they are released.
#[derive(Clone)]
pub struct Marks {
    url: String,
    state: Arc<MarksState>,
}

struct MarksState {
    calls: Mutex<Vec<Value>>,
    held: watch::Sender<HashSet<String>>,
}

async fn mark(State(state): State<Arc<MarksState>>, Json(call): Json<Value>) -> Json<Value> {
    let run = call["run_id"].as_str().unwrap_or_default().to_owned();
    state.calls.lock().unwrap().push(call);
    let mut held = state.held.subscribe();
    let _ = held.wait_for(|held| !held.contains(&run)).await;
    Json(json!({}))
}

impl Marks {
    pub async fn start() -> Marks {
        let state = Arc::new(MarksState {
            calls: Mutex::default(),
            held: watch::Sender::new(HashSet::new()),
        });
        let app = axum::Router::new()
            .route("/marks", axum::routing::post(mark))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Marks {
            url: format!("http://{addr}"),
            state,
        }
    }

    fn hold(&self, run: &str) {
        self.state.held.send_modify(|held| {
            held.insert(run.to_owned());
        });
    }

    fn release(&self, run: &str) {
        self.state.held.send_modify(|held| {
            held.remove(run);
        });
    }

    /// `(step, direction, mark)` of every call of `run`, in order.
    fn of(&self, run: &str) -> Vec<(String, String, String)> {
        self.state
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c["run_id"] == run)
            .map(|c| {
                let field = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
                (field("step"), field("direction"), field("mark"))
            })
            .collect()
    }

    /// Waits until `run` has made a call for `step`.
    async fn until_called(&self, run: &str, step: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.of(run).iter().any(|(s, _, _)| s == step) {
            assert!(Instant::now() < deadline, "run {run} never reached {step}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A host with workflow `w` (steps `a`, `b`, `c` of plugin `marked`, configured with
/// `file`), reporting to `marks`, with `extra` appended; root keys in `extra` go first.
pub fn config(file: &str, marks: &Marks, extra: &str) -> String {
    let (root, tables) = match extra.find('[') {
        Some(at) => extra.split_at(at),
        None => (extra, ""),
    };
    format!(
        r#"admin-token = "{TOKEN}"
{root}
[services.marks]
urls = ["{}"]
timeout = "60s"
[plugins.marked]
path = {file:?}
services = ["marks"]
config = {{ report = "true" }}
[workflows.w]
steps = [
  {{ name = "a", plugin = "marked", retry = {{ attempts = 1 }} }},
  {{ name = "b", plugin = "marked", retry = {{ attempts = 1 }} }},
  {{ name = "c", plugin = "marked", retry = {{ attempts = 1 }} }},
]
{tables}"#,
        marks.url
    )
}

/// An admin request.
pub async fn admin(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> (u16, Value) {
    let mut request = server
        .client
        .request(method, format!("{}{path}", server.url))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn push(server: &Server, wasm: Vec<u8>, label: &str) -> (u16, Value) {
    admin(
        server,
        reqwest::Method::PUT,
        &format!("/v1/plugins/marked?version={label}"),
        Some(wasm),
    )
    .await
}

/// `GET /v1/plugins/marked`.
pub async fn describe(server: &Server) -> Value {
    let (status, plugin) = admin(server, reqwest::Method::GET, "/v1/plugins/marked", None).await;
    assert_eq!(status, 200, "{plugin}");
    plugin
}

pub async fn current(server: &Server) -> String {
    describe(server).await["current"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The digests of a described plugin's versions, newest first.
fn version_digests(plugin: &Value) -> Vec<String> {
    plugin["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["digest"].as_str().unwrap().to_owned())
        .collect()
}

/// `POST /v1/plugins/{name}/rollback`, to `digest` if given.
pub async fn rollback(server: &Server, name: &str, digest: Option<&str>) -> (u16, Value) {
    let body = digest.map(|d| json!({ "digest": d }).to_string().into_bytes());
    admin(
        server,
        reqwest::Method::POST,
        &format!("/v1/plugins/{name}/rollback"),
        body,
    )
    .await
}

/// Starts a run of `w` with `input` and id `id` without waiting.
async fn start(server: &Server, id: &str, mut input: Value) {
    input["id"] = json!(id);
    let (status, body) = server.post("/v1/workflows/w/runs", &input).await;
    assert_eq!(status, 202, "{body}");
}

fn marks_of(run: &Value) -> Vec<&str> {
    ["a", "b", "c"]
        .iter()
        .map(|step| run["context"][step].as_str().unwrap_or("-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_finishes_on_the_version_it_started_with_across_swaps_and_restarts() {
    let marks = Marks::start().await;
    let mut server = Server::start(&config(flowhost_test_artifacts::MARKED_V1, &marks, "")).await;
    let (v1, v2) = (digest(&wasm_v1()), digest(&wasm_v2()));
    assert_eq!(
        current(&server).await,
        v1,
        "the configured file is registered"
    );

    // A run on v1, held in its first step while v2 becomes current.
    marks.hold("old");
    start(&server, "old", json!({})).await;
    marks.until_called("old", "a").await;
    let (status, pushed) = push(&server, wasm_v2(), "2.0.0").await;
    assert_eq!(status, 201, "{pushed}");
    assert_eq!(pushed["digest"], v2.as_str());
    assert_eq!(pushed["version"], "2.0.0");
    assert_eq!(pushed["worlds"], json!(["step-plugin"]));

    // A new run takes v2 at once; the held one goes on with v1.
    let (status, new) = server
        .post("/v1/workflows/w/runs?wait=30s", &json!({}))
        .await;
    assert_eq!(status, 200, "{new}");
    assert_eq!(marks_of(&new), ["v2", "v2", "v2"]);
    assert_eq!(new["plugins"]["marked"], v2.as_str());
    let described = describe(&server).await;
    let pins: Vec<(String, u64)> = described["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["digest"].as_str().unwrap().to_owned(),
                v["pinned_runs"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(pins, [(v2.clone(), 0), (v1.clone(), 1)], "{described}");
    marks.release("old");
    let old = server.until_terminal("old").await;
    assert_eq!(old["status"], "completed", "{old}");
    assert_eq!(marks_of(&old), ["v1", "v1", "v1"]);
    assert_eq!(old["plugins"]["marked"], v1.as_str());

    // Across a restart, compensations included: a run on v1 is killed in its first step
    // after v2 became current again, and resumes on v1.
    let (status, rolled) = rollback(&server, "marked", None).await;
    assert_eq!(
        (status, rolled["digest"].as_str()),
        (200, Some(v1.as_str()))
    );
    marks.hold("crash");
    start(&server, "crash", json!({ "fail": "c" })).await;
    marks.until_called("crash", "a").await;
    let (status, repushed) = push(&server, wasm_v2(), "2.0.0").await;
    assert_eq!(
        status, 200,
        "a known version is made current again: {repushed}"
    );
    assert_eq!(
        (repushed["new"].as_bool(), repushed["changed"].as_bool()),
        (Some(false), Some(true))
    );
    server.kill();
    marks.release("crash");
    server.restart().await;
    assert_eq!(
        current(&server).await,
        v2,
        "a pushed version stays current across a restart"
    );
    let crash = server.until_terminal("crash").await;
    assert_eq!(crash["status"], "compensated", "{crash}");
    let calls = marks.of("crash");
    assert!(
        calls.iter().all(|(_, _, mark)| mark == "v1"),
        "every call of the run, before and after the restart, ran v1: {calls:?}"
    );
    let compensations: Vec<&str> = calls
        .iter()
        .filter(|(_, direction, _)| direction == "compensate")
        .map(|(step, _, _)| step.as_str())
        .collect();
    assert_eq!(compensations, ["b", "a"]);
    let (_, after) = server
        .post("/v1/workflows/w/runs?wait=30s", &json!({}))
        .await;
    assert_eq!(marks_of(&after), ["v2", "v2", "v2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_uploads_are_refused_and_replace_nothing() {
    let marks = Marks::start().await;
    let server = Server::start(&config(
        flowhost_test_artifacts::MARKED_V1,
        &marks,
        "[registry]\nmax-upload-mib = 2\n[plugins.audit]\npath = \"{AUDIT}\"\n[subscriptions.audit]\ntopic = \"#\"\nhandler = \"audit\"\n"
            .replace("{AUDIT}", flowhost_test_artifacts::AUDIT_LOG)
            .as_str(),
    ))
    .await;
    let v1 = digest(&wasm_v1());
    let mut truncated = wasm_v2();
    truncated.truncate(truncated.len() / 2);
    let handler = std::fs::read(flowhost_test_artifacts::AUDIT_LOG).unwrap();
    let command = std::fs::read(flowhost_test_artifacts::CLI_COMMAND).unwrap();
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "not wasm",
            b"{\"hello\": 1}".to_vec(),
            400,
            "not a WebAssembly file",
        ),
        ("empty", Vec::new(), 400, "the body must be the component"),
        (
            "core module",
            wat::parse_str("(module)").unwrap(),
            422,
            "core WebAssembly module",
        ),
        ("truncated", truncated, 422, "invalid component"),
        ("no world", command, 422, "implements neither"),
        (
            "wrong world",
            handler.clone(),
            422,
            "workflows.w.steps.a.plugin: plugin `marked` does not implement step-plugin",
        ),
        (
            "too large",
            vec![0; 3 * 1024 * 1024],
            413,
            "upload limit of 2 MiB",
        ),
    ];
    for (what, body, status, detail) in cases {
        let (got, problem) = push(&server, body, "bad").await;
        assert_eq!(got, status, "{what}: {problem}");
        let text = problem["detail"].as_str().unwrap_or_default();
        assert!(text.contains(detail), "{what}: {text}");
        assert_eq!(
            current(&server).await,
            v1,
            "{what} replaced the current version"
        );
    }
    // A step plugin where a handler is needed, and a name that is not configured.
    let (status, problem) = admin(
        &server,
        reqwest::Method::PUT,
        "/v1/plugins/audit",
        Some(wasm_v2()),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("subscriptions.audit.handler")
    );
    let (status, problem) = admin(
        &server,
        reqwest::Method::PUT,
        "/v1/plugins/ghost",
        Some(wasm_v2()),
    )
    .await;
    assert_eq!(status, 404, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("[plugins.ghost]")
    );
    let described = describe(&server).await;
    assert_eq!(
        described["versions"].as_array().unwrap().len(),
        1,
        "{described}"
    );
    let (_, run) = server
        .post("/v1/workflows/w/runs?wait=30s", &json!({}))
        .await;
    assert_eq!(marks_of(&run), ["v1", "v1", "v1"], "the host still runs v1");

    // Uploads have their own limit, above the one of other request bodies (1 MiB).
    let big = with_custom_section(&wasm_v2(), &vec![7; 1536 * 1024]);
    let (status, pushed) = push(&server, big.clone(), "big").await;
    assert_eq!(status, 201, "{pushed}");
    assert_eq!(current(&server).await, digest(&big));
}

/// Eight clients push the same new version at the same moment, then eight different
/// versions at the same moment: each version is stored once, exactly one of the eight
/// answers says the shared one was new, and the current version is one of those pushed,
/// which new runs take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_clients_pushing_at_once_store_each_version_once() {
    let marks = Marks::start().await;
    let server = Arc::new(
        Server::start(&config(
            flowhost_test_artifacts::MARKED_V1,
            &marks,
            "[registry]\nkeep-versions = 20\n",
        ))
        .await,
    );
    let count = |plugin: &Value, digest: &str| {
        version_digests(plugin)
            .iter()
            .filter(|d| d.as_str() == digest)
            .count()
    };

    let answers = at_once(8, |_| {
        let server = server.clone();
        async move { push(&server, wasm_v2(), "2").await }
    })
    .await;
    let v2 = digest(&wasm_v2());
    for (status, change) in &answers {
        assert!(matches!(status, 200 | 201), "{status}: {change}");
        assert_eq!(change["digest"], v2.as_str(), "{change}");
    }
    let new = answers.iter().filter(|(_, c)| c["new"] == true).count();
    assert_eq!(new, 1, "{answers:?}");
    let plugin = describe(&server).await;
    assert_eq!(count(&plugin, &v2), 1, "{plugin}");
    assert_eq!(current(&server).await, v2);

    let variants: Vec<Vec<u8>> = (0..8).map(|n| variant(&wasm_v1(), 100 + n)).collect();
    let answers = at_once(8, |i| {
        let (server, wasm) = (server.clone(), variants[i].clone());
        async move { push(&server, wasm, &format!("1.{i}")).await }
    })
    .await;
    for (status, change) in &answers {
        assert_eq!((*status, &change["new"]), (201, &json!(true)), "{change}");
    }
    let plugin = describe(&server).await;
    let digests: Vec<String> = variants.iter().map(|w| digest(w)).collect();
    for d in &digests {
        assert_eq!(count(&plugin, d), 1, "{plugin}");
    }
    assert_eq!(
        version_digests(&plugin).len(),
        10,
        "v1, v2 and eight variants: {plugin}"
    );
    let now = current(&server).await;
    assert!(
        digests.contains(&now),
        "{now} is none of the eight: {plugin}"
    );
    let (_, run) = server
        .post("/v1/workflows/w/runs?wait=30s", &json!({}))
        .await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["plugins"]["marked"], now.as_str(), "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_deletion_and_collection_keep_what_runs_need() {
    let marks = Marks::start().await;
    let server = Server::start(&config(
        flowhost_test_artifacts::MARKED_V1,
        &marks,
        "[registry]\nkeep-versions = 3\n",
    ))
    .await;
    let (v1, v2) = (digest(&wasm_v1()), digest(&wasm_v2()));
    let (status, problem) = rollback(&server, "marked", None).await;
    assert_eq!(status, 409, "nothing to roll back to: {problem}");
    assert_eq!(push(&server, wasm_v2(), "2").await.0, 201);
    let (status, rolled) = rollback(&server, "marked", None).await;
    assert_eq!(
        (status, rolled["digest"].as_str()),
        (200, Some(v1.as_str()))
    );
    let (_, run) = server
        .post("/v1/workflows/w/runs?wait=30s", &json!({}))
        .await;
    assert_eq!(marks_of(&run), ["v1", "v1", "v1"]);
    // Rolling to a named version.
    let (status, rolled) = rollback(&server, "marked", Some(&v2)).await;
    assert_eq!(
        (status, rolled["digest"].as_str()),
        (200, Some(v2.as_str()))
    );

    // The current version cannot go; one a run pins cannot go until the run ends.
    let path = |d: &str| format!("/v1/plugins/marked/versions/{d}");
    let (status, problem) = admin(&server, reqwest::Method::DELETE, &path(&v2), None).await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("current version")
    );
    marks.hold("pinning");
    start(&server, "pinning", json!({})).await;
    marks.until_called("pinning", "a").await;
    assert_eq!(push(&server, wasm_v1(), "1").await.0, 200);
    let (status, problem) = admin(&server, reqwest::Method::DELETE, &path(&v2), None).await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("pinned by 1 run"),
        "{problem}"
    );
    marks.release("pinning");
    assert_eq!(
        server.until_terminal("pinning").await["status"],
        "completed"
    );
    let (status, _) = admin(&server, reqwest::Method::DELETE, &path(&v2), None).await;
    assert_eq!(status, 204);
    let (status, _) = admin(&server, reqwest::Method::DELETE, &path(&v2), None).await;
    assert_eq!(status, 404, "deleted already");

    // Beyond keep-versions, the oldest unpinned versions are collected.
    let variants: Vec<Vec<u8>> = (1..=3).map(|n| variant(&wasm_v1(), n)).collect();
    for (n, wasm) in variants.iter().enumerate() {
        let (status, pushed) = push(&server, wasm.clone(), &format!("1.{n}")).await;
        assert_eq!(status, 201, "{pushed}");
    }
    let described = describe(&server).await;
    let kept = version_digests(&described);
    let expected: Vec<String> = variants.iter().rev().map(|w| digest(w)).collect();
    assert_eq!(kept, expected, "newest first, v1 collected");
    let (status, rolled) = rollback(&server, "marked", None).await;
    assert_eq!(
        (status, rolled["digest"].as_str()),
        (200, Some(expected[1].as_str()))
    );

    // Collection goes by when a version was last current, not when it was registered: the
    // first variant, made current again, outlives the third, current no more.
    assert_eq!(push(&server, variants[0].clone(), "1.0").await.0, 200);
    let newest = variant(&wasm_v1(), 4);
    assert_eq!(push(&server, newest.clone(), "1.4").await.0, 201);
    let described = describe(&server).await;
    let mut kept = version_digests(&described);
    kept.sort();
    let mut expected = vec![digest(&newest), digest(&variants[0]), digest(&variants[1])];
    expected.sort();
    assert_eq!(kept, expected, "{described}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_routes_need_the_admin_token_and_are_off_without_one() {
    let marks = Marks::start().await;
    let server = Server::start(&config(
        flowhost_test_artifacts::MARKED_V1,
        &marks,
        "trigger-token = \"test-trigger-token-0123456789\"\n",
    ))
    .await;
    let url = format!("{}/v1/plugins", server.url);
    let response = server.client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    for wrong in [
        "test-admin-token-012345678",
        "x",
        "test-trigger-token-0123456789",
    ] {
        let response = server
            .client
            .get(&url)
            .bearer_auth(wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{wrong}");
    }
    // A client of its own: the server closes the connection after refusing the body unread.
    let response = reqwest::Client::new()
        .put(format!("{url}/marked"))
        .bearer_auth("wrong-token-0123456789")
        .body(wasm_v2())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let response = server
        .client
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        current(&server).await,
        digest(&wasm_v1()),
        "the wrong token changed nothing"
    );

    // The trigger token guards starting runs and publishing, not reading.
    let start = format!("{}/v1/workflows/w/runs?wait=30s", server.url);
    let response = server
        .client
        .post(&start)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let response = server
        .client
        .post(&start)
        .bearer_auth("test-trigger-token-0123456789")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = server
        .client
        .post(format!("{}/v1/events/order.created", server.url))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(server.get("/v1/runs").await.0, 200);
    assert!(!server.log().contains(TOKEN), "the admin token was logged");

    // Without an admin token, the routes are off and say how to turn them on.
    let open = Server::start(
        &config(flowhost_test_artifacts::MARKED_V1, &marks, "")
            .replace(&format!("admin-token = \"{TOKEN}\"\n"), ""),
    )
    .await;
    let response = open
        .client
        .put(format!("{}/v1/plugins/marked", open.url))
        .bearer_auth(TOKEN)
        .body(wasm_v2())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let problem: Value = response.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("FLOWHOST_ADMIN_TOKEN"),
        "{problem}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_plugin_file_goes_live_by_itself() {
    let marks = Marks::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("marked.wasm");
    std::fs::write(&file, wasm_v1()).unwrap();
    let server = Server::start(&config(file.to_str().unwrap(), &marks, "")).await;
    assert_eq!(current(&server).await, digest(&wasm_v1()));

    // A build that writes the file in place, then one that renames a new file over it.
    for (wasm, rename) in [(wasm_v2(), false), (wasm_v1(), true)] {
        let started = Instant::now();
        if rename {
            let tmp = dir.path().join("marked.wasm.tmp");
            std::fs::write(&tmp, &wasm).unwrap();
            std::fs::rename(&tmp, &file).unwrap();
        } else {
            std::fs::write(&file, &wasm).unwrap();
        }
        while current(&server).await != digest(&wasm) {
            // The bound is loose: a test shares the machine; `cargo bench --bench swap`
            // measures how fast it is.
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "not live after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let (_, run) = server
        .post("/v1/workflows/w/runs?wait=30s", &json!({}))
        .await;
    assert_eq!(marks_of(&run), ["v1", "v1", "v1"]);

    // A broken build is refused; the current version stays.
    std::fs::write(&file, b"not wasm").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(current(&server).await, digest(&wasm_v1()));
    assert!(
        server.log().contains("rebuilt plugin refused"),
        "{}",
        server.log()
    );
    let described = describe(&server).await;
    assert_eq!(described["versions"][0]["source"], "watch", "{described}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_clients_see_no_failure_through_twenty_swaps() {
    let marks = Marks::start().await;
    // Only two versions kept: old ones are collected under load, never one a run pins.
    let server = Server::start(&config(
        flowhost_test_artifacts::MARKED_V1,
        &marks,
        "[registry]\nkeep-versions = 2\n",
    ))
    .await;
    // Twenty new versions, `marked-v2` and `marked-v1` in turn, each under its own digest.
    let swaps: Vec<(Vec<u8>, &str)> = (0..20)
        .map(|n| match n % 2 {
            0 => (variant(&wasm_v2(), n), "v2"),
            _ => (variant(&wasm_v1(), n), "v1"),
        })
        .collect();
    let mut versions = vec![(digest(&wasm_v1()), "v1")];
    versions.extend(swaps.iter().map(|(wasm, mark)| (digest(wasm), *mark)));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (client, url, stop) = (server.client.clone(), server.url.clone(), stop.clone());
        let versions = versions.clone();
        clients.push(tokio::spawn(async move {
            // (when the request was sent, the digest its run is pinned to)
            let (mut runs, mut failed) = (Vec::new(), Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let sent = Instant::now();
                let response = client
                    .post(format!("{url}/v1/workflows/w/runs?wait=30s"))
                    .json(&json!({}))
                    .send()
                    .await;
                let run: Value = match response {
                    Ok(r) if r.status() == 200 => r.json().await.unwrap(),
                    Ok(r) => {
                        failed.push(format!("{}", r.status()));
                        continue;
                    }
                    Err(e) => {
                        failed.push(e.to_string());
                        continue;
                    }
                };
                let pinned = run["plugins"]["marked"].as_str().unwrap().to_owned();
                let mark = versions.iter().find(|(d, _)| *d == pinned).unwrap().1;
                if run["status"] != "completed" || marks_of(&run) != [mark; 3] {
                    failed.push(run.to_string());
                }
                runs.push((sent, pinned));
            }
            (runs, failed)
        }));
    }
    // (digest, PUT sent, PUT answered)
    let mut pushed = Vec::new();
    for (n, (wasm, _)) in swaps.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let sent = Instant::now();
        let (status, body) = push(&server, wasm.clone(), &format!("s{n}")).await;
        assert_eq!(status, 201, "{body}");
        pushed.push((digest(wasm), sent, Instant::now()));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut runs, mut failures) = (Vec::new(), Vec::new());
    for client in clients {
        let (ok, failed) = client.await.unwrap();
        runs.extend(ok);
        failures.extend(failed);
    }
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    // A run whose request was sent after a PUT answered runs the version that PUT made
    // current, or a later one: never an older one.
    let mut checked = 0;
    for (n, (_, _, answered)) in pushed.iter().enumerate() {
        let this_or_later: Vec<&String> = pushed[n..].iter().map(|(d, _, _)| d).collect();
        for (sent, pinned) in &runs {
            if sent > answered {
                assert!(
                    this_or_later.contains(&pinned),
                    "a run started after swap {n} answered ran an older version"
                );
                checked += 1;
            }
        }
    }
    let marks_seen: HashSet<&str> = runs
        .iter()
        .map(|(_, pinned)| versions.iter().find(|(d, _)| d == pinned).unwrap().1)
        .collect();
    assert_eq!(marks_seen.len(), 2, "runs ran both versions");
    assert!(checked > 20, "only {checked} runs started after a swap");
    let described = describe(&server).await;
    assert_eq!(
        described["versions"].as_array().unwrap().len(),
        2,
        "{described}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_pushes_lists_and_rolls_back() {
    let marks = Marks::start().await;
    let server = Server::start(&config(flowhost_test_artifacts::MARKED_V1, &marks, "")).await;
    let cli = |args: &[&str], token: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_flowhost"));
        command
            .args(["plugin"])
            .args(args)
            .args(["--server", &server.url]);
        command.env_remove("FLOWHOST_ADMIN_TOKEN");
        if let Some(token) = token {
            command.env("FLOWHOST_ADMIN_TOKEN", token);
        }
        let output = command.output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let v2_digest = digest(&wasm_v2());
    let (code, out, err) = cli(
        &[
            "push",
            "marked",
            flowhost_test_artifacts::MARKED_V2,
            "--version",
            "2.0.0",
        ],
        Some(TOKEN),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&v2_digest[..12]) && out.contains("2.0.0") && out.contains("new version"),
        "{out}"
    );
    assert_eq!(current(&server).await, v2_digest);
    let (code, out, err) = cli(&["list"], Some(TOKEN));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("marked") && out.contains(&v2_digest[..12]),
        "{out}"
    );
    let (code, out, err) = cli(&["get", "marked"], Some(TOKEN));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with(&v2_digest[..12]) && l.contains("2.0.0") && l.contains('*')),
        "{out}"
    );
    let (code, out, err) = cli(&["rollback", "marked"], Some(TOKEN));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&digest(&wasm_v1())[..12]), "{out}");
    let (code, _, err) = cli(&["rollback", "marked"], Some(TOKEN));
    assert_eq!(code, Some(1));
    assert!(
        err.contains("409") && err.contains("no earlier version"),
        "{err}"
    );
    let (code, _, err) = cli(&["list"], Some("wrong-token-0123456789"));
    assert_eq!(code, Some(1));
    assert!(err.contains("403"), "{err}");
    let (code, _, err) = cli(&["list"], None);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("FLOWHOST_ADMIN_TOKEN") || err.contains("--token"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_deliveries_use_the_handler_version_current_when_they_run() {
    // Handler `notifier` starts as `audit-log` (logs each event) and becomes `notify`
    // (tells the notifications service): which one handled an event shows.
    let services = crate::server::Services::start().await;
    let marks = Marks::start().await;
    let server = Server::start(&config(
        flowhost_test_artifacts::MARKED_V1,
        &marks,
        &format!(
            r#"[services.notifications]
urls = ["{}"]
[plugins.notifier]
path = {:?}
services = ["notifications"]
config = {{ channel = "sms" }}
[subscriptions.confirmed]
topic = "order.confirmed"
handler = "notifier"
"#,
            services.url,
            flowhost_test_artifacts::AUDIT_LOG
        ),
    ))
    .await;
    let publish = |order: &'static str| {
        let server = &server;
        async move {
            let (status, event) = server
                .post("/v1/events/order.confirmed", &json!({ "order_id": order }))
                .await;
            assert_eq!(status, 202, "{event}");
            event["id"].as_str().unwrap().to_owned()
        }
    };
    let logged = |event: String| {
        let server = &server;
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !server
                .log()
                .contains(&format!("event {event} on order.confirmed"))
            {
                assert!(Instant::now() < deadline, "audit-log never handled {event}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let notified = |order: &'static str| {
        let services = &services;
        async move {
            services.order(order).await["notifications"]
                .as_array()
                .map_or(0, Vec::len)
        }
    };

    logged(publish("o-1").await).await;
    let notify = std::fs::read(flowhost_test_artifacts::NOTIFY).unwrap();
    let (status, pushed) = admin(
        &server,
        reqwest::Method::PUT,
        "/v1/plugins/notifier",
        Some(notify),
    )
    .await;
    assert_eq!(status, 201, "{pushed}");
    assert_eq!(pushed["worlds"], json!(["handler-plugin"]));
    publish("o-2").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while notified("o-2").await == 0 {
        assert!(
            Instant::now() < deadline,
            "the new version never handled o-2"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        notified("o-1").await,
        0,
        "o-1 was handled by the old version only"
    );

    // Rolled back, the next delivery is the old version's again.
    let (status, _) = rollback(&server, "notifier", None).await;
    assert_eq!(status, 200);
    logged(publish("o-3").await).await;
    assert_eq!(notified("o-3").await, 0);
}

/// Three nodes on one PostgreSQL database: a version pushed to one serves on the others
/// within about a second; a run started on v1 and taken over after its node died finishes
/// on v1 on the node that took it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_to_one_node_serves_on_every_node_and_a_pinned_run_finishes_on_its_version_wherever_it_resumes()
 {
    let database = flowhost::store::postgres::ScratchDatabase::create().await;
    let marks = Marks::start().await;
    let config = format!(
        "{}\n[cluster]\nlease = \"1s\"\n",
        crate::postgres::on(
            &database,
            &config(flowhost_test_artifacts::MARKED_V1, &marks, "")
        )
    );
    let mut a = Server::start(&config).await;
    let (b, c) = (Server::start(&config).await, Server::start(&config).await);
    let (v1, v2) = (digest(&wasm_v1()), digest(&wasm_v2()));
    marks.hold("moved");
    start(&a, "moved", json!({})).await;
    marks.until_called("moved", "a").await;

    let (status, pushed) = push(&a, wasm_v2(), "2.0.0").await;
    assert_eq!(status, 201, "{pushed}");
    for other in [&b, &c] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while current(other).await != v2 {
            assert!(Instant::now() < deadline, "{}", other.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (status, new) = other
            .post("/v1/workflows/w/runs?wait=30s", &json!({}))
            .await;
        assert_eq!(status, 200, "{new}");
        assert_eq!(marks_of(&new), ["v2", "v2", "v2"], "{new}");
    }

    // a dies with the run in its first step; another node takes it over, on v1.
    a.kill();
    marks.release("moved");
    let moved = b.until_terminal("moved").await;
    assert_eq!(moved["status"], "completed", "{moved}");
    assert_eq!(marks_of(&moved), ["v1", "v1", "v1"]);
    assert_eq!(moved["plugins"]["marked"], v1.as_str());
    assert!(
        b.logged("took over runs") + c.logged("took over runs") > 0,
        "the run was taken over"
    );
}
