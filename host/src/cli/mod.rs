//! The binary's client commands: runs, workflows, plugins, events and dead letters on a
//! running host, over its HTTP API. Each prints what it did, or one line saying why not
//! (exit status 1; 2 for a usage error, which clap reports).
//!
//! - [`client`]: the host's URL and tokens, requests, errors as one line;
//! - [`runs`]: `runs start | get | list | watch | journal | retry | cancel | signal`;
//! - [`registry`]: `workflows` and `plugins`;
//! - [`events`]: `events publish | subscriptions`, `dead-letters list | redeliver`;
//! - [`nodes`]: `nodes list`;
//! - [`replay`]: `replay RUN_ID`, a recorded run's attempts run again here;
//! - [`keys`]: `keys generate` and `plugins sign`, which need no host;
//! - [`step`]: `step run` and `handler run`, one call of a component, here and without a
//!   host;
//! - [`new`]: `new step|handler NAME --lang rust|js|python`, a plugin project;
//! - [`table`]: the tables they print;
//! - here: what the commands that load a component in this process share.

pub mod client;
pub mod events;
pub mod keys;
pub mod new;
pub mod nodes;
pub mod registry;
pub mod replay;
pub mod runs;
pub mod step;
pub mod table;

use std::path::Path;

use anyhow::{Context, bail};
use flowhost::PluginSettings;
use flowhost::capabilities::events::TopicPattern;
use flowhost::runtime::RuntimeConfig;

pub use self::client::{Client, Connection};

/// The plugin a component file is, as these commands name it: `name` if given, else the
/// file's name without its extension.
pub fn plugin_name(file: &Path, name: Option<&str>) -> anyhow::Result<String> {
    match name {
        Some(name) => Ok(name.to_owned()),
        None => file
            .file_stem()
            .and_then(|stem| stem.to_str())
            .map(str::to_owned)
            .context("the file's name does not say the plugin's: give --name"),
    }
}

/// The settings of plugin `name` loaded here, outside any host: granted nothing, but
/// free to publish on any topic, since what it publishes is shown, not sent.
pub fn local_settings(name: &str, runtime: &RuntimeConfig) -> PluginSettings {
    let mut settings = PluginSettings::ungranted(name, runtime);
    settings.publish = vec![TopicPattern::parse("#").expect("a pattern")].into();
    settings
}

/// `text` as `NAME=VALUE` (`form` says which words) split at its first `=`, or an error
/// naming `flag`.
pub fn pair(text: &str, flag: &str, form: &str) -> anyhow::Result<(String, String)> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => bail!("{flag} {text:?}: expected {form}"),
    }
}
