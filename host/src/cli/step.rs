//! `flowhost step run`: one step of a plugin, executed or compensated here, with the real
//! capabilities and no server: the inner loop of writing a step. Services are the URLs
//! given, the cache is this process's, events and log lines are kept and printed with the
//! output.

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
use flowhost::bindings::types::{StepError, StepInfo};
use flowhost::capabilities::events::MemorySink;
use flowhost::config::ServiceConfig;
use flowhost::model::Direction;

/// `flowhost step ...`.
#[derive(clap::Subcommand, Debug)]
pub enum StepCommand {
    /// Execute (or compensate) one step of the component FILE here, with the real
    /// capabilities, and print its output, the events it published and its log. Exit
    /// status 0 only if the step succeeded.
    Run(StepRun),
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
    /// A service the step may call, as NAME=URL (repeat for more).
    #[arg(long = "service", value_name = "NAME=URL")]
    pub services: Vec<String>,
    /// A setting the step reads through `config`, as KEY=VALUE (repeat for more).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// The plugin's name (its cache namespace, and what its log lines name); default the
    /// file's name without its extension.
    #[arg(long)]
    pub name: Option<String>,
    /// The attempt number the step sees.
    #[arg(long, default_value_t = 1)]
    pub attempt: u32,
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

/// Runs the step; the report, and whether the step succeeded.
pub fn run(command: &StepRun) -> anyhow::Result<(String, bool)> {
    let context = read_input(command.input.as_deref())?;
    let wasm = std::fs::read(&command.file)
        .with_context(|| format!("reading {}", command.file.display()))?;
    let name = super::plugin_name(&command.file, command.name.as_deref())?;
    let mut config = Config::default();
    config.runtime.compiled_cache = false;
    config.runtime.max_instances = 4;
    let mut granted = Vec::new();
    for service in &command.services {
        let (service, url) = super::pair(service, "--service", "NAME=URL")?;
        let mut entry: ServiceConfig = serde_json::from_value(json!({ "urls": [url] }))?;
        // One attempt: what the step does with a failure is what is being tried.
        entry.retries = 0;
        config.services.insert(service.clone(), entry);
        granted.push(service);
    }
    let mut settings = super::local_settings(&name, &config.runtime);
    settings.services = granted.into();
    let mut values = BTreeMap::new();
    for setting in &command.config {
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
        let info = StepInfo {
            run_id: "local".into(),
            workflow: "local".into(),
            step: command.step.clone(),
            attempt: command.attempt,
            idempotency_key: format!("local:{}:{}", command.step, direction(command).as_str()),
        };
        let started = Instant::now();
        let result = host
            .call_step(&plugin, direction(command), &info, &context, None)
            .await;
        anyhow::Ok((result, started.elapsed()))
    })?;
    let (outcome, output, error) = match result {
        Ok(Ok(output)) => {
            let output = serde_json::from_str(&output).unwrap_or(Value::String(output));
            ("ok", Some(output), None)
        }
        Ok(Err(StepError::Retryable(message))) => ("retryable", None, Some(message)),
        Ok(Err(StepError::Fatal(message))) => ("fatal", None, Some(message)),
        Err(error) => ("host error", None, Some(error.to_string())),
    };
    let report = Report {
        outcome,
        output,
        error,
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
    let succeeded = outcome == "ok";
    let printed = if command.json {
        format!("{}\n", serde_json::to_string_pretty(&report.json())?)
    } else {
        report.text(&name, command)
    };
    Ok((printed, succeeded))
}

fn direction(command: &StepRun) -> Direction {
    if command.compensate {
        Direction::Compensate
    } else {
        Direction::Execute
    }
}

/// The run context: the file's JSON object, `{}` without one.
fn read_input(input: Option<&Path>) -> anyhow::Result<String> {
    let text = match input {
        None => return Ok("{}".to_owned()),
        Some(path) if path == Path::new("-") => std::io::read_to_string(std::io::stdin())?,
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
    };
    let context: Value = serde_json::from_str(&text).context("--input is not JSON")?;
    if !context.is_object() {
        bail!("--input must be a JSON object (the run context)");
    }
    Ok(context.to_string())
}

impl Report {
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

    fn text(&self, name: &str, command: &StepRun) -> String {
        let mut text = format!(
            "{name} step {} ({}): {} in {} ms\n",
            command.step,
            direction(command).as_str(),
            self.outcome,
            self.took_ms
        );
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
