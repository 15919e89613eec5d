//! Compiled plugin code, cached on disk.
//!
//! A Python or JS component takes seconds to compile and milliseconds to load once
//! compiled, so compiled code is serialized to `<data-dir>/compiled/<digest>-<engine>.cwasm`,
//! keyed by the SHA-256 of the wasm and the engine's compatibility hash (wasmtime version and
//! every setting that changes code generation). A file that fails to load is recompiled and
//! replaced.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of compiled components for one engine configuration.
pub struct CompiledCache {
    dir: PathBuf,
    /// Hex of the engine's compatibility hash.
    engine_key: String,
}

/// Where a component came from, for `plugin check` and logs.
#[derive(Debug, Clone, Copy)]
pub struct Compiled {
    /// Whether it was loaded from the cache rather than compiled.
    pub cached: bool,
    /// Time spent compiling or loading.
    pub took: Duration,
}

impl CompiledCache {
    /// Uses (and creates) `dir` for code compiled by `engine`.
    pub fn new(dir: PathBuf, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// Loads the compiled code of the wasm whose digest is `digest`, or compiles `wasm` and
    /// stores the result.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        digest: &str,
        wasm: &[u8],
    ) -> wasmtime::Result<(Component, Compiled)> {
        let path = self.path(digest);
        let start = Instant::now();
        if path.exists() {
            match deserialize(engine, &path) {
                Ok(component) => {
                    return Ok((
                        component,
                        Compiled {
                            cached: true,
                            took: start.elapsed(),
                        },
                    ));
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "compiled code unusable; recompiling")
                }
            }
        }
        let (component, compiled) = compile(engine, wasm)?;
        if let Err(e) = self.store(&path, &component) {
            tracing::warn!(path = %path.display(), error = %e, "could not cache compiled code");
        }
        Ok((component, compiled))
    }

    /// Removes the compiled code of the wasm whose digest is `digest`, if there is any.
    pub fn remove(&self, digest: &str) {
        let path = self.path(digest);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "could not remove compiled code");
        }
    }

    /// Writes atomically: a crash leaves the old file or the new one, never half of one.
    fn store(&self, path: &Path, component: &Component) -> anyhow::Result<()> {
        let bytes = component.serialize()?;
        let tmp = path.with_extension(format!("{}.tmp", ulid::Ulid::new()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

/// Compiles `wasm` without caching.
pub fn compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<(Component, Compiled)> {
    let start = Instant::now();
    let component = Component::new(engine, wasm)?;
    Ok((
        component,
        Compiled {
            cached: false,
            took: start.elapsed(),
        },
    ))
}

/// The SHA-256 of `wasm`, in hex: a plugin version's identity.
pub fn digest(wasm: &[u8]) -> String {
    hex::encode(Sha256::digest(wasm))
}

#[expect(
    unsafe_code,
    reason = "wasmtime cannot verify serialized code; see the safety note"
)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: the file is one this host wrote with `Component::serialize` into its own data
    // directory, under a name carrying the engine's compatibility hash; wasmtime checks the
    // header and version again. The data directory must be writable by the host only, as it
    // also holds the run store.
    unsafe { Component::deserialize_file(engine, path) }
}
