//! `flowhost plugin push | list | rollback` and `flowhost workflow push | list | rollback |
//! delete`: the admin API from the command line.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::{PluginCommand, Server, WorkflowCommand};

/// Runs `work` on a runtime of its own: the CLI is not async elsewhere.
fn block_on<T>(work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(work)
}

/// Runs one workflow command against a host; the report is what to print.
pub fn run_workflow(command: &WorkflowCommand) -> anyhow::Result<String> {
    block_on(async {
        match command {
            WorkflowCommand::Push { name, file, server } => {
                let definition = read_definition(name, file)?;
                let request = client(
                    server,
                    reqwest::Method::PUT,
                    &format!("/v1/workflows/{name}"),
                )?
                .json(&definition);
                let answer = send(request).await?;
                Ok(describe_workflow_change(name, &answer))
            }
            WorkflowCommand::List { server } => {
                let answer = send(client(server, reqwest::Method::GET, "/v1/workflows")?).await?;
                let mut report = format!(
                    "{:<32} {:<14} {:>8} {:>8}\n",
                    "WORKFLOW", "CURRENT", "VERSIONS", "PINNED"
                );
                for workflow in answer["workflows"].as_array().into_iter().flatten() {
                    let versions = workflow["versions"]
                        .as_array()
                        .map_or(&[][..], Vec::as_slice);
                    let pinned: u64 = versions
                        .iter()
                        .filter_map(|v| v["pinned_runs"].as_u64())
                        .sum();
                    report.push_str(&format!(
                        "{:<32} {:<14} {:>8} {:>8}\n",
                        workflow["name"].as_str().unwrap_or(""),
                        short(workflow["current"].as_str().unwrap_or("retired")),
                        versions.len(),
                        pinned,
                    ));
                }
                Ok(report)
            }
            WorkflowCommand::Rollback { name, to, server } => {
                let path = format!("/v1/workflows/{name}/rollback");
                let answer = rollback(server, &path, to.as_deref()).await?;
                Ok(describe_workflow_change(name, &answer))
            }
            WorkflowCommand::Delete { name, server } => {
                let path = format!("/v1/workflows/{name}");
                send(client(server, reqwest::Method::DELETE, &path)?).await?;
                Ok(format!("{name}: deleted; new starts are refused\n"))
            }
        }
    })
}

/// The definition in `file` as JSON: a `.json` file as it is, a TOML file's keys, or its
/// `[workflows.<name>]` table.
fn read_definition(name: &str, file: &std::path::Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut definition: Value = if file.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))?
    } else {
        figment::Figment::from(
            <figment::providers::Toml as figment::providers::Format>::string(&text),
        )
        .extract()
        .with_context(|| format!("parsing {}", file.display()))?
    };
    if let Some(table) = definition.pointer_mut(&format!("/workflows/{name}")) {
        definition = table.take();
    }
    Ok(definition)
}

/// "shipping: sha256:0a1b2c3d4e5f is current, new version"
fn describe_workflow_change(name: &str, answer: &Value) -> String {
    let what = match (answer["new"].as_bool(), answer["changed"].as_bool()) {
        (Some(true), _) => "new version",
        (_, Some(false)) => "it already was",
        _ => "known version",
    };
    let digest = answer["digest"].as_str().unwrap_or("?");
    format!("{name}: sha256:{} is current, {what}\n", short(digest))
}

/// Runs one admin command against a host; the report is what to print.
pub fn run(command: &PluginCommand) -> anyhow::Result<String> {
    block_on(async {
        match command {
            PluginCommand::Push {
                name,
                file,
                version,
                server,
            } => {
                let wasm =
                    std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
                let mut request =
                    client(server, reqwest::Method::PUT, &format!("/v1/plugins/{name}"))?
                        .header(reqwest::header::CONTENT_TYPE, "application/wasm")
                        .body(wasm);
                if let Some(version) = version {
                    request = request.query(&[("version", version)]);
                }
                let answer = send(request).await?;
                Ok(describe_change(name, &answer))
            }
            PluginCommand::List { server } => {
                let answer = send(client(server, reqwest::Method::GET, "/v1/plugins")?).await?;
                let mut report = format!(
                    "{:<24} {:<14} {:<16} {:>8}\n",
                    "PLUGIN", "CURRENT", "VERSION", "VERSIONS"
                );
                for plugin in answer["plugins"].as_array().into_iter().flatten() {
                    let current = &plugin["current"];
                    report.push_str(&format!(
                        "{:<24} {:<14} {:<16} {:>8}\n",
                        plugin["name"].as_str().unwrap_or(""),
                        short(current["digest"].as_str().unwrap_or("-")),
                        current["version"].as_str().unwrap_or("-"),
                        plugin["versions"],
                    ));
                }
                Ok(report)
            }
            PluginCommand::Rollback { name, to, server } => {
                let path = format!("/v1/plugins/{name}/rollback");
                let answer = rollback(server, &path, to.as_deref()).await?;
                Ok(describe_change(name, &answer))
            }
            PluginCommand::Check { .. } => unreachable!("handled by main"),
        }
    })
}

/// `POST path` (a rollback route) with the version to go back to, or none for the one before
/// the current one.
async fn rollback(server: &Server, path: &str, to: Option<&str>) -> anyhow::Result<Value> {
    let body = match to {
        Some(digest) => serde_json::json!({ "digest": digest }).to_string(),
        None => String::new(),
    };
    let request = client(server, reqwest::Method::POST, path)?
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    send(request).await
}

fn client(
    server: &Server,
    method: reqwest::Method,
    path: &str,
) -> anyhow::Result<reqwest::RequestBuilder> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;
    let url = format!("{}{path}", server.server.trim_end_matches('/'));
    Ok(client.request(method, url).bearer_auth(&server.token))
}

/// Sends `request`; a non-2xx answer is an error carrying the problem's `detail`.
async fn send(request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let response = request.send().await.context("reaching the host")?;
    let status = response.status();
    let body = response.text().await.context("reading the host's answer")?;
    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if !status.is_success() {
        let detail = json["detail"].as_str().unwrap_or(body.as_str());
        bail!("{status}: {detail}");
    }
    Ok(json)
}

/// "payment: sha256:0a1b2c3d4e5f (1.4.2) is current, new version"
fn describe_change(name: &str, answer: &Value) -> String {
    let digest = answer["digest"].as_str().unwrap_or("?");
    let label = answer["version"]
        .as_str()
        .map(|v| format!(" ({v})"))
        .unwrap_or_default();
    let what = match (answer["new"].as_bool(), answer["changed"].as_bool()) {
        (Some(true), _) => "new version",
        (_, Some(false)) => "it already was",
        _ => "known version",
    };
    format!(
        "{name}: sha256:{}{label} is current, {what}\n",
        short(digest)
    )
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}
