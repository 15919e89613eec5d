//! `flowhost replay RUN_ID`: a recorded run's plugin attempts run again here, on the
//! versions the run pinned (fetched from the host) or on files given instead, with the
//! recorded answers and no network, and where they behave differently
//! ([`flowhost::replay`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use reqwest::Method;
use serde_json::json;

use flowhost::Config;
use flowhost::capabilities::events::MemorySink;
use flowhost::model::JournalEntry;

use super::client::{Auth, Client, encode, send_for_bytes};

/// `flowhost replay ...`.
#[derive(Args, Debug)]
pub struct Replay {
    /// The run: one of a workflow with `record = true`.
    pub run_id: String,
    /// Replay plugin NAME on FILE instead of the version the run pinned (repeat for more).
    #[arg(long = "plugin", value_name = "NAME=FILE")]
    pub plugins: Vec<String>,
    /// Print one JSON object: each attempt and its differences.
    #[arg(long)]
    pub json: bool,
}

/// Replays the run; the report, and whether every attempt behaved as recorded.
pub async fn run(client: &Client, command: &Replay) -> anyhow::Result<(String, bool)> {
    let mut files = BTreeMap::new();
    for plugin in &command.plugins {
        let (name, file) = super::pair(plugin, "--plugin", "NAME=FILE")?;
        files.insert(name, PathBuf::from(file));
    }
    let path = format!("/v1/runs/{}", encode(&command.run_id));
    let run = client.get(&path, Auth::Open).await?;
    let journal = client.get(&format!("{path}/journal"), Auth::Open).await?;
    let workflow = run["workflow"].as_str().unwrap_or_default().to_owned();
    // Which plugin serves each step, by the run's view of its definition.
    let targets: BTreeMap<String, String> = run["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|step| step["kind"] == "plugin")
        .filter_map(|step| {
            Some((
                step["name"].as_str()?.to_owned(),
                step["target"].as_str()?.to_owned(),
            ))
        })
        .collect();
    let entries: Vec<JournalEntry> =
        serde_json::from_value(journal["attempts"].clone()).context("reading the run's journal")?;
    if !entries.iter().any(|entry| entry.recording.is_some()) {
        bail!(
            "run {} has no recorded attempt: its workflow `{workflow}` needs record = true",
            command.run_id
        );
    }
    let mut config = Config::default();
    config.runtime.compiled_cache = false;
    let runtime = flowhost::runtime_for(&config, Arc::new(MemorySink::default()))?;
    let mut loaded = BTreeMap::new();
    let mut replayed = Vec::new();
    for entry in entries.iter().filter(|entry| entry.recording.is_some()) {
        let Some(name) = targets.get(&entry.step) else {
            bail!("step `{}` is not a plugin step of the run", entry.step);
        };
        if !loaded.contains_key(name) {
            let wasm = match files.get(name) {
                Some(file) => {
                    std::fs::read(file).with_context(|| format!("reading {}", file.display()))?
                }
                None => {
                    let Some(digest) = run["plugins"][name].as_str() else {
                        bail!(
                            "the run pins no version of plugin `{name}`: give --plugin {name}=FILE"
                        );
                    };
                    let path = format!(
                        "/v1/plugins/{}/versions/{}/component",
                        encode(name),
                        encode(digest)
                    );
                    let request = client.request(Method::GET, &path, Auth::Admin)?;
                    let bytes = send_for_bytes(request).await.with_context(|| {
                        format!(
                            "fetching plugin `{name}` {}",
                            &digest[..12.min(digest.len())]
                        )
                    })?;
                    bytes.to_vec()
                }
            };
            let plugin = runtime
                .load(super::local_settings(name, &config.runtime), &wasm)
                .with_context(|| format!("loading plugin `{name}`"))?;
            loaded.insert(name.clone(), plugin);
        }
        let plugin = &loaded[name];
        let result = flowhost::replay::replay(&runtime, plugin, &command.run_id, &workflow, entry)
            .await
            .expect("a recorded entry");
        replayed.push(result);
    }
    let same = replayed.iter().all(|r| r.differences.is_empty());
    let report = if command.json {
        format!(
            "{}\n",
            serde_json::to_string_pretty(
                &json!({ "run_id": command.run_id, "same": same, "attempts": replayed })
            )?
        )
    } else {
        let mut text = String::new();
        for attempt in &replayed {
            let what = if attempt.differences.is_empty() {
                "same".to_owned()
            } else {
                format!("{} difference(s)", attempt.differences.len())
            };
            text.push_str(&format!(
                "{} {} #{}: {what}\n",
                attempt.step,
                attempt.direction.as_str(),
                attempt.attempt
            ));
            for difference in &attempt.differences {
                let at = difference
                    .index
                    .map(|i| format!(" {i}"))
                    .unwrap_or_default();
                text.push_str(&format!(
                    "  {:?}{at}:\n    recorded: {}\n    replayed: {}\n",
                    difference.aspect, difference.recorded, difference.replayed
                ));
            }
        }
        text.push_str(if same {
            "every recorded attempt behaved as recorded\n"
        } else {
            "the replay differs from the recording\n"
        });
        text
    };
    Ok((report, same))
}
