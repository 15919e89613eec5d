//! `flowhost keys generate` and `flowhost plugins sign`: signing keys and plugin signatures,
//! made locally (no host), as [`flowhost::plugins::signing`] defines them.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

use flowhost::plugins::signing::{SecretKey, signature_path};
use flowhost::runtime::compile::digest;

/// `flowhost keys ...`.
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Generate an ed25519 signing key: the secret key to FILE (readable by its owner only),
    /// the public key to FILE.pub, for `registry.trusted-keys`. Refuses to replace either.
    Generate {
        /// Where to write the secret key.
        file: PathBuf,
    },
}

/// Runs a keys command; the report is what to print.
pub fn run(command: &KeysCommand) -> anyhow::Result<String> {
    match command {
        KeysCommand::Generate { file } => {
            let key = SecretKey::generate()?;
            let public = key.write(file)?;
            Ok(format!(
                "secret key: {}\npublic key: {} ({})\ntrust it with: [registry.trusted-keys] NAME = \"{}\"\n",
                file.display(),
                public.display(),
                key.public(),
                key.public(),
            ))
        }
    }
}

/// Signs the component `file` as plugin `name` (default: the file's name without its
/// extension) with the secret key in `key`, writing the signature to `out` (default
/// `file.sig`, where `plugins push` and the directory watch look for it).
pub fn sign(
    file: &Path,
    key: &Path,
    name: Option<&str>,
    out: Option<&Path>,
) -> anyhow::Result<String> {
    let wasm = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let name = super::plugin_name(file, name)?;
    let key = SecretKey::read(key)?;
    let digest = digest(&wasm);
    let signature = key.sign(&name, &digest);
    let out = out.map_or_else(|| signature_path(file), Path::to_owned);
    std::fs::write(&out, format!("{signature}\n"))
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(format!(
        "{}: signed as plugin `{name}` (sha256:{}) by {}\n",
        out.display(),
        &digest[..12],
        key.public()
    ))
}
