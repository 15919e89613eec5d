//! `flowhost runs start | get | list | watch | journal | retry | cancel | signal`: runs from
//! the command line, as `temporal workflow` and `restate invocations` have them.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Map, Value};

use super::client::{Auth, Client, encode, send};
use super::table::{Table, cut};

/// The statuses a run ends in (until an operator's retry).
const TERMINAL: [&str; 5] = [
    "completed",
    "compensated",
    "compensation_failed",
    "failed",
    "cancelled",
];

/// `flowhost runs ...`.
#[derive(Subcommand, Debug)]
pub enum RunsCommand {
    /// Start a run of WORKFLOW. With --wait, show each step as it ends and exit non-zero
    /// unless the run completed.
    Start {
        /// The workflow.
        workflow: String,
        /// The run's input: a JSON object in FILE, or `-` for standard input. Default `{}`.
        #[arg(long, value_name = "FILE")]
        input: Option<String>,
        /// Follow the run until it ends.
        #[arg(long)]
        wait: bool,
        /// A key of yours: starting again with it returns the same run.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// The run's id, instead of a fresh one (starting again with it returns the run).
        #[arg(long)]
        id: Option<String>,
        /// Print the run (at its end, with --wait) as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Show a run: its status, context and steps.
    Get {
        /// The run.
        id: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// List runs, newest first.
    List {
        /// Only runs of this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// Only runs in this status.
        #[arg(long)]
        status: Option<String>,
        /// Only runs created within this long (`1h`, `2d`).
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<Duration>,
        /// Only runs created at or after this time (RFC 3339).
        #[arg(long)]
        after: Option<String>,
        /// Only runs created before this time (RFC 3339).
        #[arg(long)]
        before: Option<String>,
        /// Only runs whose search field FIELD has VALUE (repeat for more).
        #[arg(long = "where", value_name = "FIELD=VALUE", value_parser = field_value)]
        filters: Vec<(String, String)>,
        /// Runs per page (1 to 500).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Where the previous page ended.
        #[arg(long)]
        cursor: Option<String>,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Follow a run live, showing each step as it changes, until it ends; exit non-zero
    /// unless it completed.
    Watch {
        /// The run.
        id: String,
        /// How often to look, e.g. `250ms`.
        #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration)]
        interval: Duration,
    },
    /// Every attempt of a run's steps.
    Journal {
        /// The run.
        id: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Drive the compensation of a failed or compensation_failed run again.
    Retry {
        /// The run.
        id: String,
    },
    /// Cancel a pending or running run: its completed steps are compensated.
    Cancel {
        /// The run.
        id: String,
    },
    /// Send signal NAME to a run's await step.
    Signal {
        /// The run.
        id: String,
        /// The signal.
        name: String,
        /// The signal's data: JSON text, `@FILE`, or `-` for standard input. Default null.
        #[arg(long)]
        data: Option<String>,
    },
}

/// `FIELD=VALUE`.
fn field_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((field, value)) if !field.is_empty() => Ok((field.to_owned(), value.to_owned())),
        _ => Err(format!("`{text}` is not FIELD=VALUE")),
    }
}

/// Runs one command; the report is what to print.
pub async fn run(client: &Client, command: &RunsCommand) -> anyhow::Result<String> {
    match command {
        RunsCommand::Start {
            workflow,
            input,
            wait,
            idempotency_key,
            id,
            json,
        } => {
            let mut body = match input {
                Some(source) => read_json(source)?,
                None => Value::Object(Map::new()),
            };
            let Some(object) = body.as_object_mut() else {
                bail!("the input must be a JSON object");
            };
            if let Some(id) = id {
                object.insert("id".into(), Value::String(id.clone()));
            }
            let path = format!("/v1/workflows/{}/runs", encode(workflow));
            let mut request = client
                .request(Method::POST, &path, Auth::Trigger)?
                .json(&body);
            if let Some(key) = idempotency_key {
                request = request.header("idempotency-key", key);
            }
            let run = send(request).await?;
            let id = run["id"].as_str().unwrap_or_default().to_owned();
            if !wait {
                return Ok(if *json {
                    pretty(&run)
                } else {
                    format!(
                        "run {id} of {workflow}: {}\n",
                        run["status"].as_str().unwrap_or("?")
                    )
                });
            }
            if *json {
                let run = follow(client, &id, Duration::from_millis(250), |_| {}).await?;
                println!("{}", pretty(&run).trim_end());
                return ended(&run).map(|()| String::new());
            }
            println!("run {id} of {workflow} started");
            watch(client, &id, Duration::from_millis(250)).await
        }
        RunsCommand::Get { id, json } => {
            let run = client.get(&run_path(id), Auth::Open).await?;
            Ok(if *json { pretty(&run) } else { describe(&run) })
        }
        RunsCommand::List {
            workflow,
            status,
            since,
            after,
            before,
            filters,
            limit,
            cursor,
            json,
        } => {
            let mut query: Vec<(String, String)> = Vec::new();
            let mut add = |key: &str, value: &str| query.push((key.to_owned(), value.to_owned()));
            if let Some(workflow) = workflow {
                add("workflow", workflow);
            }
            if let Some(status) = status {
                add("status", status);
            }
            let after = match (since, after) {
                (Some(_), Some(_)) => bail!("--since and --after say the same thing: give one"),
                (Some(since), None) => {
                    let time = std::time::SystemTime::now() - *since;
                    Some(humantime::format_rfc3339_millis(time).to_string())
                }
                (None, after) => after.clone(),
            };
            if let Some(after) = &after {
                add("created_after", after);
            }
            if let Some(before) = before {
                add("created_before", before);
            }
            for (field, value) in filters {
                add(&format!("context[{field}]"), value);
            }
            add("limit", &limit.to_string());
            if let Some(cursor) = cursor {
                add("cursor", cursor);
            }
            let query: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&query)
                .finish();
            let page = client.get(&format!("/v1/runs?{query}"), Auth::Open).await?;
            if *json {
                return Ok(pretty(&page));
            }
            let mut table = Table::new(&["ID", "WORKFLOW", "STATUS", "CREATED", "ENDED", "ERROR"]);
            for run in page["runs"].as_array().into_iter().flatten() {
                table.row(vec![
                    text(&run["id"]),
                    text(&run["workflow"]),
                    text(&run["status"]),
                    text(&run["created_at"]),
                    run["ended_at"].as_str().unwrap_or("-").to_owned(),
                    cut(run["error"]["message"].as_str().unwrap_or(""), 60),
                ]);
            }
            Ok(super::table::page(
                &table,
                "no runs match",
                page["next_cursor"].as_str(),
            ))
        }
        RunsCommand::Watch { id, interval } => watch(client, id, *interval).await,
        RunsCommand::Journal { id, json } => {
            let journal = client
                .get(&format!("{}/journal", run_path(id)), Auth::Open)
                .await?;
            if *json {
                return Ok(pretty(&journal));
            }
            let mut table = Table::new(&[
                "STEP",
                "DIRECTION",
                "ATTEMPT",
                "OUTCOME",
                "STARTED",
                "TOOK",
                "ERROR",
            ]);
            for attempt in journal["attempts"].as_array().into_iter().flatten() {
                let started = attempt["started_ms"].as_u64().unwrap_or(0);
                let took = attempt["ended_ms"]
                    .as_u64()
                    .unwrap_or(started)
                    .saturating_sub(started);
                let step = match attempt["branch"].as_str() {
                    Some(branch) => format!("{branch}/{}", text(&attempt["step"])),
                    None => text(&attempt["step"]),
                };
                table.row(vec![
                    step,
                    text(&attempt["direction"]),
                    attempt["attempt"].to_string(),
                    text(&attempt["outcome"]),
                    humantime::format_rfc3339_millis(
                        std::time::UNIX_EPOCH + Duration::from_millis(started),
                    )
                    .to_string(),
                    format!("{took}ms"),
                    cut(attempt["error"].as_str().unwrap_or(""), 60),
                ]);
            }
            Ok(table.to_string())
        }
        RunsCommand::Retry { id } => {
            let run = client
                .post(&format!("{}/retry", run_path(id)), Auth::Trigger, None)
                .await?;
            Ok(format!(
                "run {id}: retry accepted, {}\n",
                text(&run["status"])
            ))
        }
        RunsCommand::Cancel { id } => {
            let run = client
                .post(&format!("{}/cancel", run_path(id)), Auth::Trigger, None)
                .await?;
            Ok(format!(
                "run {id}: cancel accepted, {}\n",
                text(&run["status"])
            ))
        }
        RunsCommand::Signal { id, name, data } => {
            let data = match data {
                Some(source) => read_json(source)?,
                None => Value::Null,
            };
            let path = format!("{}/signals/{}", run_path(id), encode(name));
            let accepted = client.post(&path, Auth::Trigger, Some(&data)).await?;
            Ok(format!(
                "run {id}: signal {name} delivered as message {}\n",
                text(&accepted["message_id"])
            ))
        }
    }
}

fn run_path(id: &str) -> String {
    format!("/v1/runs/{}", encode(id))
}

/// Follows run `id` until it ends, printing each step's changes as they come; the run's
/// end decides the exit: an error unless it completed.
async fn watch(client: &Client, id: &str, interval: Duration) -> anyhow::Result<String> {
    let started = Instant::now();
    let run = follow(client, id, interval, |line| println!("{line}")).await?;
    println!(
        "run {id} {} after {:.1?}",
        text(&run["status"]),
        started.elapsed()
    );
    ended(&run).map(|()| String::new())
}

/// Polls run `id` every `interval` until it is terminal, telling `show` a line for every
/// step that changed (its status or its attempts) since the last look; the run at its end.
async fn follow(
    client: &Client,
    id: &str,
    interval: Duration,
    mut show: impl FnMut(String),
) -> anyhow::Result<Value> {
    let started = Instant::now();
    let mut seen: BTreeMap<String, (String, u64, u64)> = BTreeMap::new();
    let mut status = String::new();
    loop {
        let run = client.get(&run_path(id), Auth::Open).await?;
        for step in run["steps"].as_array().into_iter().flatten() {
            let now = (
                text(&step["status"]),
                step["attempts"].as_u64().unwrap_or(0),
                step["compensation_attempts"].as_u64().unwrap_or(0),
            );
            let name = step_name(step);
            if now.0 == "pending" && !seen.contains_key(&name) {
                continue;
            }
            if seen.get(&name) != Some(&now) {
                show(step_line(started.elapsed(), &name, step));
                seen.insert(name, now);
            }
        }
        let run_status = text(&run["status"]);
        if run_status != status {
            if !status.is_empty() {
                show(format!(
                    "{:>9}  run is {run_status}",
                    elapsed(started.elapsed())
                ));
            }
            status = run_status;
        }
        if TERMINAL.contains(&status.as_str()) {
            return Ok(run);
        }
        tokio::time::sleep(interval).await;
    }
}

/// An error unless `run` completed: `run <id> ended <status>: <step>: <message>`.
fn ended(run: &Value) -> anyhow::Result<()> {
    let status = text(&run["status"]);
    if status == "completed" {
        return Ok(());
    }
    let error = &run["error"];
    let why = match (error["step"].as_str(), error["message"].as_str()) {
        (Some(step), Some(message)) if !step.is_empty() => format!(": {step}: {message}"),
        (_, Some(message)) => format!(": {message}"),
        _ => String::new(),
    };
    bail!("run {} ended {status}{why}", text(&run["id"]))
}

/// `   +0.123s  process_payment        completed   attempt 1`
fn step_line(at: Duration, name: &str, step: &Value) -> String {
    let status = text(&step["status"]);
    let attempts = step["attempts"].as_u64().unwrap_or(0);
    let undo = step["compensation_attempts"].as_u64().unwrap_or(0);
    let mut detail = match (attempts, undo) {
        (0, 0) => String::new(),
        (n, 0) => format!("attempt {n}"),
        (n, u) => format!("attempt {n}, compensation {u}"),
    };
    if let Some(target) = step["target"].as_str()
        && matches!(step["kind"].as_str(), Some("await"))
    {
        detail = format!("waiting for {target}");
    }
    if let Some(due) = step["due_at"].as_str()
        && status == "waiting"
    {
        detail = format!("{detail} until {due}").trim().to_owned();
    }
    if let Some(child) = step["child"].as_str() {
        detail = format!("{detail} child {child}").trim().to_owned();
    }
    if let Some(error) = step["error"].as_str() {
        detail = format!("{detail}: {}", cut(error, 80));
    }
    format!("{:>9}  {name:<28} {status:<20} {detail}", elapsed(at))
        .trim_end()
        .to_owned()
}

fn elapsed(at: Duration) -> String {
    format!("+{:.3}s", at.as_secs_f64())
}

/// A step's name, with its branch: `stock/reserve`.
fn step_name(step: &Value) -> String {
    let name = text(&step["name"]);
    match step["branch"].as_str() {
        Some(branch) => format!("{branch}/{name}"),
        None => name,
    }
}

/// `run`, as a person reads it.
fn describe(run: &Value) -> String {
    let mut out = format!(
        "run       {}\nworkflow  {} ({})\nstatus    {}\ncreated   {}\n",
        text(&run["id"]),
        text(&run["workflow"]),
        super::table::short(run["workflow_version"].as_str().unwrap_or("-")),
        text(&run["status"]),
        text(&run["created_at"]),
    );
    if let Some(ended) = run["ended_at"].as_str() {
        out.push_str(&format!("ended     {ended}\n"));
    }
    if let Some(parent) = run["parent"].as_str() {
        out.push_str(&format!("parent    {parent}\n"));
    }
    if let Some(trace) = run["trace_id"].as_str() {
        out.push_str(&format!("trace     {trace}\n"));
    }
    if let Some(message) = run["error"]["message"].as_str() {
        out.push_str(&format!(
            "error     {}: {message}\n",
            run["error"]["step"].as_str().unwrap_or("")
        ));
    }
    let plugins: Vec<String> = run["plugins"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, digest)| {
            format!(
                "{name}@{}",
                super::table::short(digest.as_str().unwrap_or(""))
            )
        })
        .collect();
    out.push_str(&format!("plugins   {}\n\n", plugins.join(" ")));
    let mut table = Table::new(&["STEP", "KIND", "STATUS", "ATTEMPTS", "ENDED", "DETAIL"]);
    for step in run["steps"].as_array().into_iter().flatten() {
        let detail = step["error"]
            .as_str()
            .map(|e| cut(e, 60))
            .or_else(|| step["child"].as_str().map(|c| format!("child {c}")))
            .or_else(|| step["due_at"].as_str().map(|d| format!("until {d}")))
            .or_else(|| step["target"].as_str().map(str::to_owned))
            .unwrap_or_default();
        table.row(vec![
            step_name(step),
            step["kind"].as_str().unwrap_or("-").to_owned(),
            text(&step["status"]),
            format!(
                "{}/{}",
                step["attempts"].as_u64().unwrap_or(0),
                step["compensation_attempts"].as_u64().unwrap_or(0)
            ),
            step["ended_at"].as_str().unwrap_or("-").to_owned(),
            detail,
        ]);
    }
    out.push_str(&table.to_string());
    out.push_str(&format!("\ncontext   {}\n", run["context"]));
    out
}

/// JSON from `source`: `-` for standard input, `@FILE` or a file path for a file (for
/// `--input`), or the JSON text itself.
pub fn read_json(source: &str) -> anyhow::Result<Value> {
    let text = if source == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        text
    } else if let Some(file) = source.strip_prefix('@') {
        std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?
    } else if PathBuf::from(source).is_file() {
        std::fs::read_to_string(source).with_context(|| format!("reading {source}"))?
    } else {
        source.to_owned()
    };
    serde_json::from_str(&text).with_context(|| format!("`{}` is not JSON", cut(source, 40)))
}

/// A string value as it is; anything else as JSON.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `value` as indented JSON, with a newline.
pub fn pretty(value: &Value) -> String {
    format!(
        "{}\n",
        serde_json::to_string_pretty(value).unwrap_or_default()
    )
}
