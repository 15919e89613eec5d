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
