//! Plugins in other languages: the `greet` step built from Python by componentize-py and
//! from JavaScript by componentize-js (see `tests/artifacts/build.rs`) loads and runs like a
//! Rust plugin, through the same capabilities and the same sandbox.
//!
//! Such a component takes 10-30 s to compile, so each language has one test and one host,
//! and every other load of it comes from the compiled-code cache.

use flowhost::bindings::types::StepError;
use flowhost::runtime::World;
use serde_json::{Value, json};

use crate::support::{LogCapture, host, info};

/// One language's build of `greet`.
struct Greet {
    /// The component.
    path: &'static str,
    /// What it answers in `runtime`.
    runtime: &'static str,
    /// Where it stores the last name it greeted.
    cache_key: &'static str,
}

#[tokio::test]
async fn a_python_plugin_runs_on_the_host() {
    greet_runs_like_a_rust_plugin(Greet {
        path: flowhost_test_artifacts::PYTHON_GREET,
        runtime: "python",
        cache_key: "py:last",
    })
    .await;
}

#[tokio::test]
async fn a_js_plugin_runs_on_the_host() {
    greet_runs_like_a_rust_plugin(Greet {
        path: flowhost_test_artifacts::JS_GREET,
        runtime: "js",
        cache_key: "js:last",
    })
    .await;
}

async fn greet_runs_like_a_rust_plugin(greet: Greet) {
    // `greeter` is configured; `plain`, the same component, is not, and loads after it (in
    // name order), so from the compiled-code cache; `probe` reads `greeter`'s cache.
    let host = host(&format!(
        r#"
        [plugins.greeter]
        path = "{path}"
        [plugins.greeter.config]
        greeting = "hi"

        [plugins.plain]
        path = "{path}"

        [plugins.probe]
        path = "{{PROBE}}"
        cache-namespace = "greeter"
        "#,
        path = greet.path,
    ));
    let greeter = host.registry.get("greeter").unwrap();
    let plain = host.registry.get("plain").unwrap();

    // It is a step plugin, and loads although it imports WASI (and, from JS, wasi:http):
    // the host links those with nothing granted.
    assert_eq!(greeter.worlds(), [World::Step]);
    let imports = greeter.imports();
    for expected in [
        "flowhost:plugin/config@",
        "flowhost:plugin/cache@",
        "wasi:io/",
    ] {
        assert!(
            imports.iter().any(|i| i.starts_with(expected)),
            "{expected}: {imports:?}"
        );
    }
    if greet.runtime == "js" {
        assert!(
            imports
                .iter()
                .any(|i| i.starts_with("wasi:http/outgoing-handler@")),
            "componentize-js links fetch: {imports:?}"
        );
    }
    assert_eq!(plain.digest(), greeter.digest());
    assert!(
        plain.compiled().cached,
        "the second load of a component comes from the compiled-code cache ({:?})",
        plain.compiled()
    );

    let logs = LogCapture::start();
    let out = host.ok("greeter", "greet", json!({"name": "ada"})).await;
    assert_eq!(out, json!({"message": "hi, ada", "runtime": greet.runtime}));
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains(&format!("greeting ada from {}", greet.runtime)))
        .unwrap_or_else(|| panic!("the plugin's log line is logged:\n{text}"));
    assert!(line.contains("INFO"), "{line}");
    assert!(
        line.contains("plugin=\"greeter\"") || line.contains("plugin=greeter"),
        "{line}"
    );

    let cached = host
        .ok("probe", "cache_get", json!({"key": greet.cache_key}))
        .await;
    assert_eq!(cached["value"], "ada", "{cached}");

    let out = host.ok("plain", "greet", json!({"name": "bob"})).await;
    assert_eq!(
        out,
        json!({"message": "hello, bob", "runtime": greet.runtime}),
        "no `greeting` configured: the default"
    );

    let unknown = host
        .execute("greeter", "wave", json!({"name": "ada"}))
        .await
        .expect("a step error is the plugin's answer, not a host failure");
    assert!(
        matches!(&unknown, Err(StepError::Fatal(m)) if m.contains("unknown step")),
        "{unknown:?}"
    );
    let bad = host
        .execute("greeter", "greet", Value::String("no object".into()))
        .await
        .unwrap();
    assert!(matches!(&bad, Err(StepError::Fatal(_))), "{bad:?}");

    let undone = host
        .runtime
        .compensate(greeter, &info("greet"), r#"{"name": "ada"}"#)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(undone, "{}");
}
