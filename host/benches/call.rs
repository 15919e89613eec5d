//! The cost of one plugin call, all included: a fresh store with its WASI and capability
//! contexts, instantiation from the pre-instance, the export call, and the store's drop
//! (which returns the instance's slot to the pool).
//!
//! `cargo bench --bench call` prints, per benchmark, the fastest, slowest, median (p50) and
//! mean time of one call:
//! - `baseline_empty_component`: instantiate and drop a component with nothing in it on the
//!   same engine, with no WASI and no capabilities: the floor the machine sets today;
//! - `noop_step`: the no-op step plugin through `Runtime::execute`;
//! - `noop_step_warm`: the same step in the instance the previous call left, as a run's
//!   consecutive steps of one plugin are (`Runtime::call_step_in`);
//! - `cache_step`: the probe plugin's `cache_get` step: JSON in the guest plus one cache call.

use std::sync::Arc;

use divan::Bencher;
use flowhost::bindings::types::StepInfo;
use flowhost::capabilities::events::MemorySink;
use flowhost::runtime::{CallOptions, Direction, WarmInstance};
use flowhost::{Config, Runtime};

fn main() {
    divan::main();
}

struct Fixture {
    executor: tokio::runtime::Runtime,
    runtime: Runtime,
    registry: std::collections::BTreeMap<String, Arc<flowhost::Plugin>>,
}

fn fixture() -> Fixture {
    let toml = format!(
        "data-dir = {:?}\n[plugins.noop]\npath = {:?}\n[plugins.probe]\npath = {:?}\n",
        concat!(env!("CARGO_TARGET_TMPDIR"), "/flowhost-bench"),
        flowhost_test_artifacts::NOOP,
        flowhost_test_artifacts::PROBE,
    );
    let config = Config::from_toml(&toml).unwrap();
    let runtime = flowhost::runtime_for(&config, Arc::new(MemorySink::default())).unwrap();
    let registry =
        flowhost::plugins::load_files(&runtime, &config.plugins, &config.plugin_uses()).unwrap();
    let executor = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    Fixture {
        executor,
        runtime,
        registry,
    }
}

fn info(step: &str) -> StepInfo {
    StepInfo {
        run_id: "01JBENCHRUN".into(),
        workflow: "bench".into(),
        step: step.into(),
        attempt: 1,
        idempotency_key: format!("01JBENCHRUN:{step}:execute"),
    }
}

#[divan::bench(sample_count = 2000)]
fn baseline_empty_component(bencher: Bencher) {
    use wasmtime::component::{Component, Linker};
    let f = fixture();
    let engine = f.runtime.engine();
    let component = Component::new(engine, "(component)").unwrap();
    let pre = Linker::<()>::new(engine)
        .instantiate_pre(&component)
        .unwrap();
    bencher.bench_local(|| {
        f.executor.block_on(async {
            let mut store = wasmtime::Store::new(engine, ());
            pre.instantiate_async(&mut store).await.unwrap();
        })
    });
}

#[divan::bench(sample_count = 2000)]
fn noop_step(bencher: Bencher) {
    let f = fixture();
    let plugin = f.registry.get("noop").unwrap();
    let info = info("noop");
    bencher.bench_local(|| {
        f.executor
            .block_on(f.runtime.execute(plugin, &info, "{}"))
            .unwrap()
            .unwrap()
    });
}

/// The no-op step again, in the instance the previous call left (a run's consecutive steps of
/// one plugin): what instantiation costs is `noop_step` minus this.
#[divan::bench(sample_count = 2000)]
fn noop_step_warm(bencher: Bencher) {
    let f = fixture();
    let plugin = f.registry.get("noop").unwrap();
    let info = info("noop");
    let mut warm = WarmInstance::default();
    bencher.bench_local(|| {
        f.executor
            .block_on(f.runtime.call_step_in(
                &mut warm,
                plugin,
                Direction::Execute,
                &info,
                "{}",
                CallOptions::default(),
            ))
            .unwrap()
            .result
            .unwrap()
    });
}

#[divan::bench(sample_count = 2000)]
fn cache_step(bencher: Bencher) {
    let f = fixture();
    let plugin = f.registry.get("probe").unwrap();
    let info = info("cache_get");
    let ctx = r#"{"key":"user:42"}"#;
    bencher.bench_local(|| {
        f.executor
            .block_on(f.runtime.execute(plugin, &info, ctx))
            .unwrap()
            .unwrap()
    });
}
