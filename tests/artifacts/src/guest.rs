//! Cargo for guest crates, run from inside another cargo run (this crate's build script, a
//! test that builds a plugin project).

use std::process::Command;

/// `cargo` (the running one, when cargo started us) without the outer run's settings:
/// its `CARGO_*` and `RUST*` variables are for the host build, not for guests. `CARGO_HOME`
/// and rustup's own stay, so the same toolchain and crate cache serve.
pub fn cargo() -> Command {
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let cargo_setting = key.starts_with("CARGO_") && key != "CARGO_HOME";
        let rust_setting =
            key.starts_with("RUST") && !matches!(key.as_ref(), "RUSTUP_HOME" | "RUSTUP_TOOLCHAIN");
        if cargo_setting || rust_setting {
            cargo.env_remove(key.as_ref());
        }
    }
    cargo
}
