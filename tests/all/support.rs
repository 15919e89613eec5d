//! What every integration test needs: a host built from a TOML snippet, step calls with
//! JSON in and out, a loopback service and a log capture.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use flowhost::bindings::types::{StepError, StepInfo};
use flowhost::capabilities::events::MemorySink;
use flowhost::{CallError, Config, Plugin, Runtime};
use serde_json::Value;

/// A runtime with the plugins of one configuration loaded, and the sink its events go to.
pub struct Host {
    pub runtime: Runtime,
    pub registry: BTreeMap<String, Arc<Plugin>>,
    pub sink: Arc<MemorySink>,
}

/// A data directory the tests share for compiled code, so that only the first test to load
/// a plugin compiles it.
pub const SHARED_DATA_DIR: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/flowhost-data");

/// Workflow `two`: two no-op steps. A run ends in a millisecond, so what a test watches is
/// all in how it starts and ends.
pub const TWO_STEPS: &str = r#"
[plugins.noop]
path = "{NOOP}"
[workflows.two]
steps = [{ name = "a", plugin = "noop" }, { name = "b", plugin = "noop" }]
"#;

/// `toml` with `{NAME}` replaced by the path of the built plugin `NAME` (`{PROBE}`,
/// `{NOOP}`, `{FORWARD}`, ...).
pub fn with_plugins(toml: &str) -> String {
    let mut toml = toml.to_owned();
    for (name, path) in [
        ("{PROBE}", flowhost_test_artifacts::PROBE),
        ("{HOSTILE}", flowhost_test_artifacts::HOSTILE),
        ("{NOOP}", flowhost_test_artifacts::NOOP),
        ("{AUDIT_LOG}", flowhost_test_artifacts::AUDIT_LOG),
        ("{VALIDATE_USER}", flowhost_test_artifacts::VALIDATE_USER),
        ("{FORWARD}", flowhost_test_artifacts::FORWARD),
    ] {
        toml = toml.replace(name, path);
    }
    toml
}

/// Builds a host from `toml`, where `{NAME}` stands for the path of a built plugin
/// (`{PROBE}`, `{HOSTILE}`, ...). Compiled code is cached in the target directory, so only
/// the first test to load a plugin compiles it.
pub fn host(toml: &str) -> Host {
    try_host(toml).unwrap_or_else(|e| panic!("{e:#}"))
}

/// As [`host`], returning the error.
pub fn try_host(toml: &str) -> anyhow::Result<Host> {
    let toml = format!("data-dir = {SHARED_DATA_DIR:?}\n{}", with_plugins(toml));
    let config = Config::from_toml(&toml)?;
    let sink = Arc::new(MemorySink::default());
    let runtime = flowhost::runtime_for(&config, sink.clone())?;
    let registry = flowhost::plugins::load_files(&runtime, &config.plugins, &config.plugin_uses())?;
    Ok(Host {
        runtime,
        registry,
        sink,
    })
}

/// Step info for `step` of run `run-1`.
pub fn info(step: &str) -> StepInfo {
    StepInfo {
        run_id: "run-1".into(),
        workflow: "tests".into(),
        step: step.into(),
        attempt: 1,
        idempotency_key: format!("run-1:{step}:execute"),
    }
}

impl Host {
    /// Executes `step` of `plugin` with `ctx`, parsing the JSON it returns.
    pub async fn execute(
        &self,
        plugin: &str,
        step: &str,
        ctx: Value,
    ) -> Result<Result<Value, StepError>, CallError> {
        let plugin = self.registry.get(plugin).expect("plugin is configured");
        let result = self
            .runtime
            .execute(plugin, &info(step), &ctx.to_string())
            .await?;
        Ok(result.map(|json| serde_json::from_str(&json).expect("the plugin returns JSON")))
    }

    /// Executes `step` and unwraps both layers.
    pub async fn ok(&self, plugin: &str, step: &str, ctx: Value) -> Value {
        match self.execute(plugin, step, ctx).await {
            Ok(Ok(value)) => value,
            other => panic!("{plugin}/{step}: {other:?}"),
        }
    }
}

/// Captures what `tracing` writes on this thread while the guard lives. Plugin calls run
/// on the calling thread (wasm runs on a fiber of it), so a current-thread test sees all.
pub struct LogCapture {
    buffer: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl LogCapture {
    pub fn start() -> Self {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || SharedWriter(writer.clone()))
            .finish();
        Self {
            buffer,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap()).into_owned()
    }
}

struct SharedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A loopback HTTP service that answers every request with its method, path and headers as
/// JSON, or with the status in a `status` query parameter.
pub async fn echo_service() -> String {
    use axum::extract::Request;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    async fn echo(request: Request) -> axum::response::Response {
        let headers: serde_json::Map<String, Value> = request
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    Value::String(v.to_str().unwrap_or("").into()),
                )
            })
            .collect();
        let status = request
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("status="))
            .and_then(|s| s.parse().ok())
            .unwrap_or(200);
        let body = serde_json::json!({
            "method": request.method().as_str(),
            "path": request.uri().path(),
            "headers": headers,
        });
        (StatusCode::from_u16(status).unwrap(), body.to_string()).into_response()
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, axum::Router::new().fallback(echo))
            .await
            .unwrap()
    });
    url
}
