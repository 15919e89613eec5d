//! The real `flowhost` binary serving a configuration, and the example's mock services,
//! both on loopback.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A host's HTTP API, as a client sees it.
pub struct Api {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    pub client: reqwest::Client,
}

/// A `flowhost serve` process with its own data directory, which outlives restarts.
pub struct Server {
    child: Option<Child>,
    api: Api,
    dir: tempfile::TempDir,
    listen: String,
    /// Environment variables the process gets, besides this one's.
    env: Vec<(String, String)>,
}

impl std::ops::Deref for Server {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Server {
    /// Starts `flowhost serve` on `config` (a TOML snippet; `data-dir` is set here).
    pub async fn start(config: &str) -> Server {
        Self::start_with_env(config, &[]).await
    }

    /// [`Self::start`], the process getting `env` besides this one's environment.
    pub async fn start_with_env(config: &str, env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::write(
            dir.path().join("flowhost.toml"),
            format!("data-dir = {data:?}\n{config}"),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let mut server = Server {
            child: None,
            api: Api::new(format!("http://{listen}")),
            dir,
            listen,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_flowhost"))
            .args(["serve", "--config"])
            .arg(self.dir.path().join("flowhost.toml"))
            .args(["--listen", &self.listen])
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = self
                .client
                .get(format!("{}/healthz", self.url))
                .send()
                .await
                && response.status().is_success()
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("flowhost exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "flowhost did not come up:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("flowhost.log")
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to the process.
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("running");
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGTERM, then waits for the process to exit; how long that took and whether it
    /// exited cleanly.
    pub fn terminate(&mut self) -> (Duration, bool) {
        let mut child = self.child.take().expect("running");
        let start = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = child.wait().unwrap();
        (start.elapsed(), exit.success())
    }

    /// Starts the server again on the same data directory and port (killing it first if it
    /// still runs).
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// Replaces the configuration the next (re)start reads.
    pub fn reconfigure(&self, config: &str) {
        let data = self.dir.path().join("data");
        std::fs::write(
            self.dir.path().join("flowhost.toml"),
            format!("data-dir = {data:?}\n{config}"),
        )
        .unwrap();
    }

    /// How many times the log has `text` on a line.
    pub fn logged(&self, text: &str) -> usize {
        self.log()
            .lines()
            .filter(|line| line.contains(text))
            .count()
    }
}

impl Api {
    pub fn new(url: String) -> Api {
        Api {
            url,
            client: reqwest::Client::new(),
        }
    }

    /// `POST path` with a JSON body; the status and the JSON answer.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    /// `GET path`; the status and the JSON answer.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    /// Polls run `id` until it is terminal.
    pub async fn until_terminal(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, run) = self.get(&format!("/v1/runs/{id}")).await;
            let status = run["status"].as_str().unwrap_or_default();
            let ended = [
                "completed",
                "compensated",
                "compensation_failed",
                "failed",
                "cancelled",
            ];
            if ended.contains(&status) {
                return run;
            }
            assert!(Instant::now() < deadline, "run {id} stuck: {run}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The example's mock services, in this process on a free port.
pub struct Services {
    pub url: String,
    client: reqwest::Client,
}

impl Services {
    pub async fn start() -> Services {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(order_services::run(listener, std::future::pending()));
        Services {
            url,
            client: reqwest::Client::new(),
        }
    }

    /// The ledger.
    pub async fn ledger(&self) -> Value {
        self.client
            .get(format!("{}/ledger", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The ledger of one order.
    pub async fn order(&self, order_id: &str) -> Value {
        let url = format!("{}/ledger/orders/{order_id}", self.url);
        self.client
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Makes the next `times` requests to `route` answer `status`.
    pub async fn fail(&self, route: &str, times: u32, status: u16) {
        let body = json!({"route": route, "times": times, "status": status});
        let response = self
            .client
            .post(format!("{}/admin/fail", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{}",
            response.text().await.unwrap()
        );
    }

    /// Delays every request by `ms`.
    pub async fn delay(&self, ms: u64) {
        let response = self
            .client
            .post(format!("{}/admin/delay", self.url))
            .json(&json!({"ms": ms}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }

    /// The example's own configuration (`examples/order-processing/flowhost.toml`) against
    /// these services, with the admin token `token`, so that every route is reachable.
    pub fn example_config(&self, token: &str) -> String {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .canonicalize()
            .unwrap();
        let example = std::fs::read_to_string(root.join("examples/order-processing/flowhost.toml"))
            .unwrap()
            .lines()
            .filter(|line| !line.starts_with("data-dir"))
            .collect::<Vec<_>>()
            .join("\n")
            .replace("../../", &format!("{}/", root.display()))
            .replace("http://127.0.0.1:9100", &self.url);
        format!("admin-token = {token:?}\n{example}")
    }

    /// The flowhost configuration of the order saga against these services: fast step
    /// retries, and no service-level retries, so that each failure is one step attempt.
    pub fn config(&self) -> String {
        let plugin = |name: &str| format!("{}/{name}.wasm", PLUGIN_DIR.as_str());
        let url = &self.url;
        let services: String = ["users", "inventory", "payments", "orders", "notifications"]
            .iter()
            .map(|s| format!("[services.{s}]\nurls = [\"{url}\"]\nretries = 0\ntimeout = \"5s\"\n"))
            .collect();
        let retry = "retry = { attempts = 3, initial-backoff = \"10ms\", max-backoff = \"50ms\" }";
        format!(
            r#"
{services}
[plugins.validate_user]
path = "{validate_user}"
services = ["users"]
[plugins.inventory]
path = "{inventory}"
services = ["inventory"]
[plugins.payment]
path = "{payment}"
services = ["payments"]
[plugins.order]
path = "{order}"
services = ["orders"]
[plugins.send_confirmation]
path = "{send_confirmation}"
publish = ["order.*"]
[plugins.notify]
path = "{notify}"
services = ["notifications"]

[subscriptions.notify-customer]
topic = "order.confirmed"
handler = "notify"
retry = {{ attempts = 3, initial-backoff = "10ms", max-backoff = "50ms" }}

[workflows.order_processing]
steps = [
    {{ name = "validate_user", plugin = "validate_user", compensate = false, {retry} }},
    {{ name = "reserve_inventory", plugin = "inventory", {retry} }},
    {{ name = "process_payment", plugin = "payment", {retry} }},
    {{ name = "create_order", plugin = "order", {retry} }},
    {{ name = "send_confirmation", plugin = "send_confirmation", compensate = false, {retry} }},
]
"#,
            validate_user = plugin("validate_user"),
            inventory = plugin("inventory"),
            payment = plugin("payment"),
            order = plugin("order"),
            send_confirmation = plugin("send_confirmation"),
            notify = plugin("notify"),
        )
    }
}

/// Where the Rust plugins are built.
pub static PLUGIN_DIR: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    std::path::Path::new(flowhost_test_artifacts::NOOP)
        .parent()
        .unwrap()
        .display()
        .to_string()
});

/// An order context in the seed's fields.
pub fn order(order_id: &str, user_id: u64, total: f64) -> Value {
    json!({
        "order_id": order_id,
        "user_id": user_id,
        "items": [{"product_id": "p-1", "quantity": 2}, {"product_id": "p-2", "quantity": 1}],
        "total_amount": total,
        "payment_method": "card",
    })
}

/// Two workflows of the order plugins that wait: `approval` at an await step for the signal
/// `approved`, `nap` in a sleep of an hour.
pub const WAITING_WORKFLOWS: &str = r#"
[workflows.approval]
search = ["order_id"]
steps = [
    { name = "validate_user", plugin = "validate_user", compensate = false },
    { name = "approve", await = { signal = "approved", timeout = "1h" } },
    { name = "reserve_inventory", plugin = "inventory" },
]
[workflows.nap]
search = ["order_id"]
steps = [
    { name = "validate_user", plugin = "validate_user", compensate = false },
    { name = "nap", sleep = "1h" },
    { name = "reserve_inventory", plugin = "inventory" },
]
"#;
