//! Builds every plugin in `plugins/` (its own workspace, for wasm32-wasip2) and writes a
//! constant per component into `$OUT_DIR/plugins.rs`, so tests never name a hand-built path.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap();
    let plugins = root.join("plugins");
    for watched in [
        "sdk",
        "examples",
        "tests",
        "Cargo.toml",
        "Cargo.lock",
        ".cargo",
    ] {
        println!("cargo:rerun-if-changed={}", plugins.join(watched).display());
    }
    println!("cargo:rerun-if-changed={}", root.join("wit").display());

    ensure_wasm_target();
    let target_dir = plugins.join("target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(&plugins)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir);
    // The outer build's settings are for the host, not for guests.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let cargo_setting = key.starts_with("CARGO_") && key != "CARGO_HOME";
        let rust_setting =
            key.starts_with("RUST") && !matches!(key.as_ref(), "RUSTUP_HOME" | "RUSTUP_TOOLCHAIN");
        if cargo_setting || rust_setting {
            build.env_remove(key.as_ref());
        }
    }
    let output = build.output().expect("running cargo for the plugins");
    if !output.status.success() {
        panic!(
            "building plugins/ failed (is the target installed? `rustup target add wasm32-wasip2`):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let release = target_dir.join("wasm32-wasip2/release");
    let mut components: Vec<PathBuf> = std::fs::read_dir(&release)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
        .collect();
    components.sort();
    let mut constants = String::new();
    for path in components {
        let stem = path.file_stem().unwrap().to_string_lossy();
        let name = stem.replace('-', "_").to_uppercase();
        constants.push_str(&format!(
            "/// `{stem}.wasm`, built from `plugins/`.\npub const {name}: &str = {:?};\n",
            path.display().to_string()
        ));
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("plugins.rs");
    std::fs::write(out, constants).unwrap();
}

/// Installs the `wasm32-wasip2` standard library with rustup when the toolchain lacks it, so
/// that `cargo test` on a fresh clone needs no set-up step.
fn ensure_wasm_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(rustc).args(["--print", "sysroot"]).output().expect("running rustc");
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot.join("lib/rustlib/wasm32-wasip2").exists() {
        return;
    }
    println!("cargo:warning=installing the wasm32-wasip2 target with rustup");
    let status = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status()
        .expect("running rustup (install the wasm32-wasip2 target by hand without it)");
    assert!(status.success(), "`rustup target add wasm32-wasip2` failed");
}
