//! The `flowhost` binary: a thin CLI over the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use flowhost::capabilities::Capabilities;
use flowhost::capabilities::events::MemorySink;
use flowhost::{Config, PluginSettings, Runtime};

/// A workflow host for WebAssembly plugins.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with plugin components.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Check that FILE is a flowhost plugin: prints the world it implements, its imports,
    /// its size and its compile time. Exits with status 2 if it is not a usable plugin.
    Check {
        /// The component file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Plugin(PluginCommand::Check { file }) => match check(&file) {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {}: {e:#}", file.display());
                ExitCode::from(2)
            }
        },
    }
}

/// Loads `file` as a plugin granted nothing and describes it.
fn check(file: &std::path::Path) -> anyhow::Result<String> {
    let wasm = std::fs::read(file)?;
    let mut config = Config::default();
    config.runtime.compiled_cache = false;
    config.runtime.max_instances = 4;
    let capabilities = Capabilities::new(&config, Arc::new(MemorySink::default()))?;
    let runtime = Runtime::new(&config, capabilities)?;
    let name = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin");
    let plugin = runtime.load(PluginSettings::ungranted(name, &config), &wasm)?;
    let worlds: Vec<String> = plugin.worlds().iter().map(ToString::to_string).collect();
    let mut report = format!(
        "{}: implements {}\n  size:    {} bytes\n  compile: {:.0?}\n  digest:  sha256:{}\n  imports:\n",
        file.display(),
        worlds.join(", "),
        plugin.size(),
        plugin.compiled().took,
        plugin.digest(),
    );
    for import in plugin.imports() {
        report.push_str(&format!("    {import}\n"));
    }
    Ok(report)
}
