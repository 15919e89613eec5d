//! The directory watch: a configured plugin file that is rebuilt goes live by itself.
//!
//! The directories holding the configured files are watched (inotify on Linux, through
//! the `notify` crate). A change to one of the files is registered, after a short quiet
//! period (a build writes a file in several steps), through the same validation as an
//! upload: a file that does not build into a usable plugin is logged and changes nothing.
//! A file whose digest is the one registered last is not registered again. A file's
//! signature file (`FILE.sig`, see [`super::signing`]) counts as the file: a signature
//! written after its component is read with it.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use super::PluginRegistry;
use super::signing::signature_path;

/// How long a file must be quiet before it is read.
const QUIET: Duration = Duration::from_millis(100);
/// Longest a burst of changes is gathered before the files are read anyway.
const MAX_GATHER: Duration = Duration::from_secs(2);

/// Watches until dropped.
pub struct Watch {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching the files of `registry`'s configured plugins.
pub fn watch(registry: Arc<PluginRegistry>) -> notify::Result<Watch> {
    // The file each watched path is, by its canonical path: events name files under the
    // directory as it was given to the watcher.
    let mut files: HashMap<PathBuf, String> = HashMap::new();
    let mut dirs = BTreeSet::new();
    for (name, file) in registry.files() {
        let file = file.canonicalize()?;
        if let Some(dir) = file.parent() {
            dirs.insert(dir.to_owned());
        }
        files.insert(signature_path(&file), name.to_owned());
        files.insert(file, name.to_owned());
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let _ = tx.send(event);
    })?;
    for dir in &dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    let task = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            let mut changed = BTreeSet::new();
            if !note(&files, event, &mut changed) {
                continue;
            }
            // Gather further changes of watched files until they are quiet (other files in
            // the directory do not count), for at most `MAX_GATHER`.
            let gather_until = tokio::time::Instant::now() + MAX_GATHER;
            let mut quiet_until = tokio::time::Instant::now() + QUIET;
            loop {
                let deadline = quiet_until.min(gather_until);
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(event)) => {
                        if note(&files, event, &mut changed) {
                            quiet_until = tokio::time::Instant::now() + QUIET;
                        }
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            for name in changed {
                match registry.register_file(&name).await {
                    Ok(Some(registered)) => tracing::info!(
                        plugin = %name,
                        digest = &registered.version.digest[..12],
                        "rebuilt plugin registered"
                    ),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(plugin = %name, error = %e, "rebuilt plugin refused; the current version stays")
                    }
                }
            }
        }
    });
    tracing::info!(directories = dirs.len(), "watching plugin files");
    Ok(Watch {
        _watcher: watcher,
        task,
    })
}

/// Adds the plugins whose files `event` touched to `changed`; whether there were any.
fn note(
    files: &HashMap<PathBuf, String>,
    event: notify::Result<notify::Event>,
    changed: &mut BTreeSet<String>,
) -> bool {
    let event = match event {
        Ok(event) => event,
        Err(e) => {
            tracing::warn!(error = %e, "plugin watch error");
            return false;
        }
    };
    if event.kind.is_access() {
        return false;
    }
    let mut touched = false;
    for path in &event.paths {
        if let Some(name) = files.get(path) {
            changed.insert(name.clone());
            touched = true;
        } else if event.kind.is_remove() && files.keys().any(|file| file.parent() == Some(path)) {
            tracing::warn!(directory = %path.display(), "a watched plugin directory was removed; restart the host to watch it again");
        }
    }
    touched
}
