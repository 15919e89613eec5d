//! A plugin upload: the bytes `PUT /v1/plugins/{name}` hands the runtime, and the
//! `Flowhost-Signature` header beside them. Either is refused with an error or loads; never
//! a panic.

#![no_main]

use std::sync::{Arc, LazyLock};

use flowhost::capabilities::events::MemorySink;
use flowhost::plugins::signing::TrustedKeys;
use flowhost::{Config, PluginSettings, Runtime};
use libfuzzer_sys::fuzz_target;

static TOKIO: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
});

static RUNTIME: LazyLock<(Config, Runtime)> = LazyLock::new(|| {
    let mut config = Config::default();
    config.runtime.compiled_cache = false;
    config.runtime.max_instances = 2;
    let runtime = flowhost::runtime_for(&config, Arc::new(MemorySink::default())).unwrap();
    (config, runtime)
});

static KEYS: LazyLock<TrustedKeys> = LazyLock::new(|| {
    let keys = [(
        "fuzz".to_owned(),
        "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=".to_owned(),
    )];
    TrustedKeys::parse(&keys.into_iter().collect()).unwrap()
});

fuzz_target!(|data: &[u8]| {
    let (config, runtime) = &*RUNTIME;
    // The first line, if any, is the signature header; the rest the component.
    let (signature, wasm) = match data.iter().position(|b| *b == b'\n') {
        Some(end) => (std::str::from_utf8(&data[..end]).ok(), &data[end + 1..]),
        None => (None, data),
    };
    if let Some(signature) = signature {
        let _ = KEYS.check("fuzz", "sha256:00", Some(signature));
    }
    let _guard = TOKIO.enter();
    let _ = runtime.load(PluginSettings::ungranted("fuzz", &config.runtime), wasm);
});
