//! Loading: bad input is refused with one clear line and nothing half-loaded; compiled code
//! is cached on disk.

use std::sync::Arc;

use flowhost::capabilities::events::MemorySink;
use flowhost::runtime::LoadError;
use flowhost::{Config, PluginSettings, Runtime};

use crate::support::try_host;

fn runtime(config: &Config) -> Runtime {
    flowhost::runtime_for(config, Arc::new(MemorySink::default())).unwrap()
}

#[test]
fn bad_components_are_refused_with_a_reason() {
    let mut config = Config::default();
    config.runtime.compiled_cache = false;
    let runtime = runtime(&config);
    let load = |wasm: &[u8]| {
        runtime
            .load(PluginSettings::ungranted("p", &config.runtime), wasm)
            .err()
            .unwrap()
    };

    assert!(matches!(load(b"definitely not wasm"), LoadError::NotWasm));
    assert!(matches!(
        load(&wat::parse_str("(module)").unwrap()),
        LoadError::CoreModule
    ));
    let mut truncated = std::fs::read(flowhost_test_artifacts::NOOP).unwrap();
    truncated.truncate(truncated.len() / 2);
    assert!(
        matches!(load(&truncated), LoadError::Compile(_)),
        "{}",
        load(&truncated)
    );
    let command = std::fs::read(flowhost_test_artifacts::CLI_COMMAND).unwrap();
    let err = load(&command);
    assert!(matches!(err, LoadError::NoWorld(_)), "{err}");
    assert!(err.to_string().contains("wasi:cli/run"), "{err}");
    let foreign = wat::parse_str(
        r#"(component (import "acme:secret/vault" (instance (export "open" (func)))))"#,
    )
    .unwrap();
    let err = load(&foreign);
    assert!(matches!(err, LoadError::Link(_)), "{err}");
    assert!(err.to_string().contains("acme:secret/vault"), "{err}");
}

#[test]
fn configuration_errors_name_the_plugin_and_file() {
    let err = try_host("[plugins.ghost]\npath = \"/nonexistent/ghost.wasm\"\n")
        .err()
        .unwrap();
    let message = format!("{err:#}");
    assert!(
        message.contains("plugins.ghost") && message.contains("/nonexistent/ghost.wasm"),
        "{message}"
    );

    let err = try_host(
        "[plugins.cmd]\npath = \"{CLI_COMMAND}\"\n"
            .replace("{CLI_COMMAND}", flowhost_test_artifacts::CLI_COMMAND)
            .as_str(),
    )
    .err()
    .unwrap();
    let message = format!("{err:#}");
    assert!(
        message.contains("plugins.cmd") && message.contains("neither"),
        "{message}"
    );

    let err = try_host("[plugins.p]\npath = \"{PROBE}\"\nservices = [\"payments\"]\n")
        .err()
        .unwrap();
    assert_eq!(
        format!("{err:#}"),
        "plugins.p.services: unknown service `payments`"
    );

    let err = try_host("[plugins.p]\npath = \"{PROBE}\"\nsandbox = false\n")
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("sandbox"), "{err:#}");
}

#[test]
fn compiled_code_is_cached_on_disk_and_survives_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf().into(),
        ..Config::default()
    };
    let wasm = std::fs::read(flowhost_test_artifacts::PROBE).unwrap();
    let load = || {
        runtime(&config)
            .load(PluginSettings::ungranted("probe", &config.runtime), &wasm)
            .unwrap()
    };

    let first = load();
    assert!(!first.compiled().cached);
    let second = load();
    assert!(
        second.compiled().cached,
        "a new runtime (a restart) loads the compiled code"
    );
    assert!(
        second.compiled().took * 2 < first.compiled().took,
        "loading ({:?}) is much faster than compiling ({:?})",
        second.compiled().took,
        first.compiled().took
    );

    let cached: Vec<_> = std::fs::read_dir(dir.path().join("compiled"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(
        cached[0]
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(first.digest())
    );
    // Replace, never rewrite in place: `second` still maps the file, and truncating a mapped
    // file is a SIGBUS (the cache itself only ever renames new files into place).
    std::fs::remove_file(&cached[0]).unwrap();
    std::fs::write(&cached[0], b"garbage").unwrap();
    let third = load();
    assert!(!third.compiled().cached, "a corrupt file is recompiled");
    assert!(load().compiled().cached, "and replaced");
}
