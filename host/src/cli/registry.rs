//! `flowhost plugins push | list | get | rollback` and `flowhost workflows push | list | get |
//! rollback | delete`: the admin API from the command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

use super::client::{Auth, Client, encode, send};
use super::runs::pretty;
use super::table::{Table, short};
use flowhost::plugins::signing::{SIGNATURE_HEADER, read_signature, signature_path};

/// `flowhost workflows ...`.
#[derive(Subcommand, Debug)]
pub enum WorkflowCommand {
    /// Push the definition in FILE (TOML or JSON, by its extension) as the current version of
    /// workflow NAME. The file holds the definition's keys (`steps = [...]`), or a
    /// `[workflows.NAME]` table as in a configuration file.
    Push {
        /// The workflow.
        name: String,
        /// The definition: `.toml` or `.json`.
        file: PathBuf,
    },
    /// List the host's workflows with their current versions.
    List,
    /// Show a workflow's versions and its current definition.
    Get {
        /// The workflow.
        name: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make the previous version of workflow NAME (or version --to) current again.
    Rollback {
        /// The workflow.
        name: String,
        /// The digest of the version to make current.
        #[arg(long)]
        to: Option<String>,
    },
    /// Retire workflow NAME: new starts are refused. Refused while runs pin it.
    Delete {
        /// The workflow.
        name: String,
    },
}

/// `flowhost plugins ...`.
#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Check that FILE is a flowhost plugin: prints the world it implements, its imports,
    /// its size and its compile time. Exits with status 1 if it is not a usable plugin.
    Check {
        /// The component file.
        file: PathBuf,
    },
    /// Sign FILE as a version of plugin NAME with the secret key KEY (`flowhost keys
    /// generate`): writes FILE.sig, which `plugins push` and the directory watch send with
    /// it.
    Sign {
        /// The component file.
        file: PathBuf,
        /// The secret key's file.
        #[arg(long)]
        key: PathBuf,
        /// The plugin's name in the host's configuration; default FILE's name without its
        /// extension.
        #[arg(long)]
        name: Option<String>,
        /// Where to write the signature; default FILE.sig.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Upload FILE as a new version of plugin NAME on a running host, and make it current.
    /// FILE.sig, if there is one, goes with it as its signature.
    Push {
        /// The plugin's name in the host's configuration.
        name: String,
        /// The component file.
        file: PathBuf,
        /// A label for the version (`1.4.2`, a commit).
        #[arg(long)]
        version: Option<String>,
    },
    /// List the host's plugins with their current versions.
    List,
    /// Show a plugin's versions: which is current, how many runs pin each.
    Get {
        /// The plugin.
        name: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make the previous version of plugin NAME (or version --to) current again.
    Rollback {
        /// The plugin.
        name: String,
        /// The digest of the version to make current.
        #[arg(long)]
        to: Option<String>,
    },
}

/// Runs one workflow command against a host; the report is what to print.
pub async fn run_workflow(client: &Client, command: &WorkflowCommand) -> anyhow::Result<String> {
    match command {
        WorkflowCommand::Push { name, file } => {
            let definition = read_definition(name, file)?;
            let request = client
                .request(
                    Method::PUT,
                    &format!("/v1/workflows/{}", encode(name)),
                    Auth::Admin,
                )?
                .json(&definition);
            let answer = send(request).await?;
            Ok(describe_workflow_change(name, &answer))
        }
        WorkflowCommand::List => {
            let answer = client.get("/v1/workflows", Auth::Admin).await?;
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
        WorkflowCommand::Get { name, json } => {
            let workflow = client
                .get(&format!("/v1/workflows/{}", encode(name)), Auth::Admin)
                .await?;
            if *json {
                return Ok(pretty(&workflow));
            }
            let mut table = Table::new(&["DIGEST", "CURRENT", "SOURCE", "REGISTERED", "PINNED"]);
            let versions = workflow["versions"]
                .as_array()
                .map_or(&[][..], Vec::as_slice);
            for version in versions {
                table.row(vec![
                    short(version["digest"].as_str().unwrap_or("")).to_owned(),
                    if version["current"] == true { "*" } else { "" }.to_owned(),
                    version["source"].as_str().unwrap_or("").to_owned(),
                    version["registered_at"].as_str().unwrap_or("").to_owned(),
                    version["pinned_runs"].to_string(),
                ]);
            }
            let current = versions.iter().find(|v| v["current"] == true);
            let mut report = format!("workflow {name}\n{table}");
            if let Some(current) = current {
                report.push_str(&format!(
                    "\ncurrent definition:\n{}",
                    pretty(&current["definition"])
                ));
            }
            Ok(report)
        }
        WorkflowCommand::Rollback { name, to } => {
            let path = format!("/v1/workflows/{}/rollback", encode(name));
            let answer = rollback(client, &path, to.as_deref()).await?;
            Ok(describe_workflow_change(name, &answer))
        }
        WorkflowCommand::Delete { name } => {
            let path = format!("/v1/workflows/{}", encode(name));
            send(client.request(Method::DELETE, &path, Auth::Admin)?).await?;
            Ok(format!("{name}: deleted; new starts are refused\n"))
        }
    }
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

/// Runs one plugin command against a host; the report is what to print.
pub async fn run_plugin(client: &Client, command: &PluginCommand) -> anyhow::Result<String> {
    match command {
        PluginCommand::Push {
            name,
            file,
            version,
        } => {
            let wasm =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let mut request = client
                .request(
                    Method::PUT,
                    &format!("/v1/plugins/{}", encode(name)),
                    Auth::Admin,
                )?
                .header(reqwest::header::CONTENT_TYPE, "application/wasm")
                .body(wasm);
            if let Some(version) = version {
                request = request.query(&[("version", version)]);
            }
            let signature = read_signature(file)
                .with_context(|| format!("reading {}", signature_path(file).display()))?;
            if let Some(signature) = signature {
                request = request.header(SIGNATURE_HEADER, signature.trim());
            }
            let answer = send(request).await?;
            Ok(describe_change(name, &answer))
        }
        PluginCommand::List => {
            let answer = client.get("/v1/plugins", Auth::Admin).await?;
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
        PluginCommand::Get { name, json } => {
            let plugin = client
                .get(&format!("/v1/plugins/{}", encode(name)), Auth::Admin)
                .await?;
            if *json {
                return Ok(pretty(&plugin));
            }
            let mut table = Table::new(&[
                "DIGEST",
                "VERSION",
                "CURRENT",
                "SOURCE",
                "SIZE",
                "REGISTERED",
                "PINNED",
                "SIGNED BY",
            ]);
            for version in plugin["versions"].as_array().into_iter().flatten() {
                table.row(vec![
                    short(version["digest"].as_str().unwrap_or("")).to_owned(),
                    version["version"].as_str().unwrap_or("-").to_owned(),
                    if version["current"] == true { "*" } else { "" }.to_owned(),
                    version["source"].as_str().unwrap_or("").to_owned(),
                    version["size"].to_string(),
                    version["registered_at"].as_str().unwrap_or("").to_owned(),
                    version["pinned_runs"].to_string(),
                    signer(&version["signed_by"]),
                ]);
            }
            Ok(format!("plugin {name}\n{table}"))
        }
        PluginCommand::Rollback { name, to } => {
            let path = format!("/v1/plugins/{}/rollback", encode(name));
            let answer = rollback(client, &path, to.as_deref()).await?;
            Ok(describe_change(name, &answer))
        }
        PluginCommand::Check { .. } | PluginCommand::Sign { .. } => {
            unreachable!("handled by main: it needs no host")
        }
    }
}

/// `POST path` (a rollback route) with the version to go back to, or none for the one before
/// the current one.
async fn rollback(client: &Client, path: &str, to: Option<&str>) -> anyhow::Result<Value> {
    let body = to.map(|digest| serde_json::json!({ "digest": digest }));
    client.post(path, Auth::Admin, body.as_ref()).await
}

/// Who signed a version: its key's name in the host's trusted keys, else the key; `-`.
fn signer(signed_by: &Value) -> String {
    match (signed_by["name"].as_str(), signed_by["key"].as_str()) {
        (Some(name), _) => name.to_owned(),
        (None, Some(key)) => key.chars().take(20).collect(),
        (None, None) => "-".to_owned(),
    }
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
