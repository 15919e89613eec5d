//! `flowhost step run` and `flowhost handler run`: one step of a plugin, executed or
//! compensated, or one event handled, here, with the real capabilities and no server: the
//! inner loop of writing a plugin, and the test a project made by `flowhost new` runs.
//! Services are the URLs given, the cache is this process's, events and log lines are kept
//! and printed with the outcome.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};

use flowhost::Config;
use flowhost::bindings::types::{Event, StepError, StepInfo};
use flowhost::capabilities::events::MemorySink;
use flowhost::config::ServiceConfig;
use flowhost::model::Direction;
use flowhost::runtime::{Plugin, Runtime};

/// `flowhost step ...`.
#[derive(clap::Subcommand, Debug)]
pub enum StepCommand {
    /// Execute (or compensate) one step of the component FILE here, with the real
    /// capabilities, and print its output, the events it published and its log. Exit
    /// status 0 only if the step succeeded (and, with --expect, gave that output).
    Run(StepRun),
}

/// `flowhost handler ...`.
#[derive(clap::Subcommand, Debug)]
pub enum HandlerCommand {
    /// Hand one event to the handler component FILE here, with the real capabilities, and
    /// print the outcome, the events it published and its log. Exit status 0 only if it
    /// handled the event.
    Run(HandlerRun),
}

/// `flowhost step run ...`.
#[derive(Args, Debug)]
pub struct StepRun {
    /// The plugin's component.
    pub file: PathBuf,
    /// The step's name (a plugin serving several steps dispatches on it).
    #[arg(long)]
    pub step: String,
    /// The run context, a JSON object: a file, or `-` for standard input. Default `{}`.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Compensate the step instead of executing it.
    #[arg(long)]
    pub compensate: bool,
    /// The attempt number the step sees.
    #[arg(long, default_value_t = 1)]
    pub attempt: u32,
    /// A JSON file with the output the step must give: anything else fails the command.
    #[arg(long)]
    pub expect: Option<PathBuf>,
    #[command(flatten)]
    pub local: Local,
}

/// `flowhost handler run ...`.
#[derive(Args, Debug)]
pub struct HandlerRun {
    /// The plugin's component.
    pub file: PathBuf,
    /// The event, a JSON file (or `-`): `{"topic", "data"}`, and optionally `id`,
    /// `source` and `correlation_id`.
    #[arg(long)]
    pub event: PathBuf,
    #[command(flatten)]
    pub local: Local,
}

/// What a plugin run here is given, whatever it serves.
#[derive(Args, Debug)]
pub struct Local {
    /// A service the plugin may call, as NAME=URL (repeat for more).
    #[arg(long = "service", value_name = "NAME=URL")]
    pub services: Vec<String>,
    /// A setting the plugin reads through `config`, as KEY=VALUE (repeat for more).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// The plugin's name (its cache namespace, and what its log lines name); default the
    /// file's name without its extension.
    #[arg(long)]
    pub name: Option<String>,
    /// Print one JSON object: outcome, output, error, events, log.
    #[arg(long)]
    pub json: bool,
}

/// What one call did, as printed.
struct Report {
    outcome: &'static str,
    output: Option<Value>,
    error: Option<String>,
    events: Vec<Value>,
    log: Vec<(String, String)>,
    took_ms: u128,
}

/// Runs the step; the report, and whether the step succeeded (as expected).
pub fn run(command: &StepRun) -> anyhow::Result<(String, bool)> {
    let context = read_json(command.input.as_deref(), "--input")?;
    if !context.is_object() {
        bail!("--input must be a JSON object (the run context)");
    }
    let expected = match &command.expect {
        Some(path) => Some(read_json(Some(path), "--expect")?),
        None => None,
    };
    let context = context.to_string();
    let direction = direction(command);
    let (result, mut report, name) =
        call(&command.file, &command.local, |host, plugin| async move {
            let info = StepInfo {
                run_id: "local".into(),
                workflow: "local".into(),
                step: command.step.clone(),
                attempt: command.attempt,
                idempotency_key: format!("local:{}:{}", command.step, direction.as_str()),
            };
            host.call_step(&plugin, direction, &info, &context, None)
                .await
        })?;
    match result {
        Ok(Ok(output)) => {
            report.output = Some(serde_json::from_str(&output).unwrap_or(Value::String(output)));
        }
        Ok(Err(StepError::Retryable(message))) => report.fail("retryable", message),
        Ok(Err(StepError::Fatal(message))) => report.fail("fatal", message),
        Err(error) => report.fail("host error", error.to_string()),
    }
    if let (Some(expected), Some(output)) = (&expected, &report.output)
        && expected != output
    {
        report.fail(
            "unexpected output",
            format!("expected {expected}, got {output}"),
        );
    }
    let title = format!("{name} step {} ({})", command.step, direction.as_str());
    report.print(&title, command.local.json)
}

/// Hands the event to the handler; the report, and whether it handled it.
pub fn handle(command: &HandlerRun) -> anyhow::Result<(String, bool)> {
    let given = read_json(Some(&command.event), "--event")?;
    let text = |field: &str| given.get(field).and_then(Value::as_str).map(str::to_owned);
    let Some(topic) = text("topic") else {
        bail!("--event must be a JSON object with a `topic` and its `data`");
    };
    let event = Event {
        id: text("id").unwrap_or_else(|| "local-1".into()),
        topic,
        source: text("source").unwrap_or_else(|| "local".into()),
        time_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as u64),
        correlation_id: text("correlation_id"),
        data: given.get("data").unwrap_or(&Value::Null).to_string(),
    };
    let title = format!("handler of {}", event.topic);
    let (result, mut report, name) = call(&command.file, &command.local, |host, plugin| {
        let event = event.clone();
        async move { host.handle(&plugin, "local", &event).await }
    })?;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(message)) => report.fail("failed", message),
        Err(error) => report.fail("host error", error.to_string()),
    }
    report.print(&format!("{name} {title}"), command.local.json)
}

/// Loads the component `file` with what `local` grants, makes the call `body` makes of it,
/// and gives back its result, the report of what it published and logged, and the plugin's
/// name.
fn call<T, F, Fut>(file: &Path, local: &Local, body: F) -> anyhow::Result<(T, Report, String)>
where
    F: FnOnce(Runtime, Plugin) -> Fut,
    Fut: Future<Output = T>,
{
    let wasm = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let name = super::plugin_name(file, local.name.as_deref())?;
    let mut config = Config::default();
    config.runtime.compiled_cache = false;
    config.runtime.max_instances = 4;
    let mut granted = Vec::new();
    for service in &local.services {
        let (service, url) = super::pair(service, "--service", "NAME=URL")?;
        let mut entry: ServiceConfig = serde_json::from_value(json!({ "urls": [url] }))?;
        // One attempt: what the plugin does with a failure is what is being tried.
        entry.retries = 0;
        config.services.insert(service.clone(), entry);
        granted.push(service);
    }
    let mut settings = super::local_settings(&name, &config.runtime);
    settings.services = granted.into();
    let mut values = BTreeMap::new();
    for setting in &local.config {
        let (key, value) = super::pair(setting, "--config", "KEY=VALUE")?;
        values.insert(key, value);
    }
    settings.config = Arc::new(values);

    let log = Arc::new(Mutex::new(Vec::new()));
    // The host's own warnings (a refused service call, say) to stderr; the plugin's lines
    // are kept for the report.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"))
        .add_directive("flowhost::plugin=off".parse().expect("a directive"));
    let subscriber = tracing_subscriber::registry()
        .with(PluginLog(log.clone()))
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter),
        );
    let _logging = tracing::subscriber::set_default(subscriber);
    let sink = Arc::new(MemorySink::default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (result, took) = runtime.block_on(async {
        let host = flowhost::runtime_for(&config, sink.clone())?;
        let plugin = host.load(settings, &wasm)?;
        let started = Instant::now();
        let result = body(host, plugin).await;
        anyhow::Ok((result, started.elapsed()))
    })?;
    let report = Report {
        outcome: "ok",
        output: None,
        error: None,
        events: sink
            .events()
            .iter()
            .map(|event| {
                json!({
                    "topic": event.topic,
                    "key": event.key,
                    "data": serde_json::from_str::<Value>(&event.data)
                        .unwrap_or_else(|_| Value::String(event.data.clone())),
                })
            })
            .collect(),
        log: std::mem::take(&mut *log.lock().expect("log lock")),
        took_ms: took.as_millis(),
    };
    Ok((result, report, name))
}

fn direction(command: &StepRun) -> Direction {
    if command.compensate {
        Direction::Compensate
    } else {
        Direction::Execute
    }
}

/// The JSON in file `path` (`-` for standard input), `{}` without one; `flag` names it in
/// errors.
fn read_json(path: Option<&Path>, flag: &str) -> anyhow::Result<Value> {
    let text = match path {
        None => return Ok(json!({})),
        Some(path) if path == Path::new("-") => std::io::read_to_string(std::io::stdin())?,
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
    };
    serde_json::from_str(&text).with_context(|| format!("{flag} is not JSON"))
}

impl Report {
    /// Marks the call failed: `outcome` says how.
    fn fail(&mut self, outcome: &'static str, error: String) {
        self.outcome = outcome;
        self.error = Some(error);
    }

    /// The report as printed (`json` or text under `title`), and whether the call
    /// succeeded.
    fn print(&self, title: &str, json: bool) -> anyhow::Result<(String, bool)> {
        let printed = if json {
            format!("{}\n", serde_json::to_string_pretty(&self.json())?)
        } else {
            self.text(title)
        };
        Ok((printed, self.outcome == "ok"))
    }

    fn json(&self) -> Value {
        json!({
            "outcome": self.outcome,
            "output": self.output,
            "error": self.error,
            "events": self.events,
            "log": self.log.iter().map(|(level, message)| json!({ "level": level, "message": message })).collect::<Vec<_>>(),
            "took_ms": self.took_ms,
        })
    }

    fn text(&self, title: &str) -> String {
        let mut text = format!("{title}: {} in {} ms\n", self.outcome, self.took_ms);
        if let Some(output) = &self.output {
            text.push_str(&format!("output: {output}\n"));
        }
        if let Some(error) = &self.error {
            text.push_str(&format!("error: {error}\n"));
        }
        text.push_str(&format!("events: {}\n", self.events.len()));
        for event in &self.events {
            text.push_str(&format!(
                "  {} {}\n",
                event["topic"].as_str().unwrap_or(""),
                event["data"]
            ));
        }
        text.push_str(&format!("log: {}\n", self.log.len()));
        for (level, message) in &self.log {
            text.push_str(&format!("  {level:<5} {message}\n"));
        }
        text
    }
}

/// Keeps the plugin's log lines (target `flowhost::plugin`): level and message.
struct PluginLog(Arc<Mutex<Vec<(String, String)>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for PluginLog {
    fn on_event(&self, event: &tracing::Event<'_>, _: LayerContext<'_, S>) {
        if event.metadata().target() != "flowhost::plugin" {
            return;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        let level = event.metadata().level().as_str().to_lowercase();
        self.0.lock().expect("log lock").push((level, message.0));
    }
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_owned();
        }
    }
}
