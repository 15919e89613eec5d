//! `flowhost plugin check`, run as the real binary.

use std::process::Command;

fn check(file: &str) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_flowhost"))
        .args(["plugin", "check", file])
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn describes_a_plugin() {
    let (status, out, _) = check(flowhost_test_artifacts::VALIDATE_USER);
    assert_eq!(status, 0);
    assert!(out.contains("implements step-plugin"), "{out}");
    assert!(out.contains("flowhost:plugin/services@0.1.0"), "{out}");
    assert!(out.contains("flowhost:plugin/cache@0.1.0"), "{out}");
    assert!(out.contains("size:") && out.contains("compile:"), "{out}");

    let (status, out, _) = check(flowhost_test_artifacts::AUDIT_LOG);
    assert_eq!(status, 0);
    assert!(out.contains("implements handler-plugin"), "{out}");
}

#[test]
fn refuses_what_is_not_a_plugin_with_one_line_and_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"hello").unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, wat::parse_str("(module)").unwrap()).unwrap();
    let missing = dir.path().join("missing.wasm");

    for (file, expected) in [
        (garbage.to_str().unwrap(), "not a WebAssembly file"),
        (core.to_str().unwrap(), "core WebAssembly module"),
        (flowhost_test_artifacts::CLI_COMMAND, "implements neither"),
        (missing.to_str().unwrap(), "No such file"),
    ] {
        let (status, out, err) = check(file);
        assert_eq!(status, 2, "{file}: {out}{err}");
        assert_eq!(err.lines().count(), 1, "{file}: one line: {err}");
        assert!(
            err.contains(expected) && err.contains(file),
            "{file}: {err}"
        );
    }
}

/// `flowhost check` with `config.toml` in a fresh directory, plus `env` and `args`.
fn check_config(config: &str, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flowhost.toml"), config).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_flowhost"))
        .current_dir(dir.path())
        .args(["check", "--config", "flowhost.toml"])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn probe_config() -> String {
    format!(
        "data-dir = \"state\"\n[plugins.probe]\npath = {:?}\n",
        flowhost_test_artifacts::PROBE
    )
}

#[test]
fn check_loads_the_configuration_and_its_plugins() {
    let (status, out, err) = check_config(&probe_config(), &[], &[]);
    assert_eq!(status, 0, "{err}");
    let summary = out.lines().next().unwrap();
    assert!(
        summary.starts_with("config: ") && summary.contains("plugins=[probe]"),
        "{out}"
    );
    assert!(summary.contains("memory-limit=64MiB"), "{out}");
    assert!(out.contains("plugin probe: step-plugin"), "{out}");

    // Environment over the file, flags over both.
    let env = [
        ("FLOWHOST_RUNTIME__MEMORY_LIMIT_MIB", "32"),
        ("FLOWHOST_DATA_DIR", "env-dir"),
    ];
    let (status, out, err) = check_config(&probe_config(), &env, &["--data-dir", "flag-dir"]);
    assert_eq!(status, 0, "{err}");
    assert!(
        out.contains("memory-limit=32MiB") && out.contains("data-dir=flag-dir"),
        "{out}"
    );
}

#[test]
fn check_names_what_is_wrong() {
    let config = format!("{}sandbox = false\n", probe_config());
    let (status, _, err) = check_config(&config, &[], &[]);
    assert_eq!(status, 2);
    assert!(
        err.contains("sandbox") && err.contains("flowhost.toml"),
        "{err}"
    );

    let env = [("FLOWHOST_RUNTIME__MEMORY_LIMIT_MIB", "0")];
    let (status, _, err) = check_config(&probe_config(), &env, &[]);
    assert_eq!(status, 2);
    assert!(err.contains("runtime.memory-limit-mib"), "{err}");

    let (status, _, err) = check_config("[plugins.gone]\npath = \"gone.wasm\"\n", &[], &[]);
    assert_eq!(status, 2);
    assert!(
        err.contains("plugins.gone") && err.contains("gone.wasm"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn check_refuses_a_workflow_step_served_by_a_handler() {
    let config = format!(
        "[plugins.audit]\npath = {:?}\n[workflows.w]\nsteps = [{{ name = \"s\", plugin = \"audit\" }}]\n",
        flowhost_test_artifacts::AUDIT_LOG
    );
    let (status, _, err) = check_config(&config, &[], &[]);
    assert_eq!(status, 2);
    assert!(
        err.contains("workflows.w.steps.s.plugin")
            && err.contains("does not implement step-plugin"),
        "{err}"
    );
    let config = "[plugins.p]\npath = \"p.wasm\"\n[workflows.w]\nsteps = [{ name = \"s\", plugin = \"ghost\" }, { name = \"s\", plugin = \"p\" }]\n";
    let (status, _, err) = check_config(config, &[], &[]);
    assert_eq!(status, 2);
    assert!(
        err.contains("workflows.w.steps") && err.contains("duplicate step `s`"),
        "{err}"
    );
}
