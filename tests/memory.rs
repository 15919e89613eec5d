//! 1,000 sequential plugin calls do not grow the host's memory beyond a bound.
//!
//! Alone in its test binary so that no other test allocates meanwhile. The bound, 16 MiB of
//! resident memory between call 200 and call 1,200, is far below what one leaked store per
//! call would cost (each instance maps at least its 1 MiB+ linear memory).

use std::sync::Arc;

use flowhost::Config;
use flowhost::bindings::types::StepInfo;
use flowhost::capabilities::events::MemorySink;

const BOUND_BYTES: u64 = 16 * 1024 * 1024;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::test]
async fn a_thousand_calls_stay_within_the_bound() {
    let toml = format!(
        "data-dir = {:?}\n[plugins.probe]\npath = {:?}\n",
        concat!(env!("CARGO_TARGET_TMPDIR"), "/flowhost-data"),
        flowhost_test_artifacts::PROBE
    );
    let config = Config::from_toml(&toml).unwrap();
    let runtime = flowhost::runtime_for(&config, Arc::new(MemorySink::default())).unwrap();
    let registry =
        flowhost::plugins::load_files(&runtime, &config.plugins, &config.plugin_uses()).unwrap();
    let probe = registry.get("probe").unwrap();
    let runtime = &runtime;
    let call = |i: u32| {
        let info = StepInfo {
            run_id: format!("run-{i}"),
            workflow: "memory".into(),
            step: if i.is_multiple_of(2) {
                "cache_set"
            } else {
                "echo"
            }
            .into(),
            attempt: 1,
            idempotency_key: format!("k-{i}"),
        };
        let ctx = format!(r#"{{"key":"k{}","value":"v{i}"}}"#, i % 50);
        async move { runtime.execute(probe, &info, &ctx).await.unwrap().unwrap() }
    };
    for i in 0..200 {
        call(i).await;
    }
    let before = resident_bytes();
    for i in 200..1200 {
        call(i).await;
    }
    let after = resident_bytes();
    let growth = after.saturating_sub(before);
    println!(
        "resident: {} KiB before, {} KiB after, growth {} KiB",
        before / 1024,
        after / 1024,
        growth / 1024
    );
    assert!(
        growth < BOUND_BYTES,
        "grew by {growth} bytes over 1,000 calls"
    );
}
