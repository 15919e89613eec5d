//! Plugins in other languages: the `greet` step built from Python by componentize-py and
//! from JavaScript by componentize-js (see `tests/artifacts/build.rs`) loads and runs like a
//! Rust plugin, through the same capabilities and the same sandbox.
//!
//! Such a component takes 10-30 s to compile, so each language has one test and one host,
//! and every other load of it comes from the compiled-code cache. The order saga's steps on
//! the JS and Python SDKs share one server for every mix of languages.

use flowhost::bindings::types::StepError;
use flowhost::runtime::World;
use serde_json::{Value, json};

use crate::sagas::{count, step};
use crate::server::{Server, Services, order};
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

/// Which plugin serves each of the order saga's five steps, in the saga's order: `rust`
/// (the plugins in `plugins/examples`), `js` or `python` (the steps on each SDK).
const MIXES: [(&str, [&str; 5]); 4] = [
    ("all_js", ["js", "js", "js", "js", "js"]),
    (
        "all_python",
        ["python", "python", "python", "python", "python"],
    ),
    ("mix_a", ["python", "js", "rust", "python", "js"]),
    ("mix_b", ["js", "python", "js", "rust", "python"]),
];

/// The order saga's steps, and the Rust plugin of each.
const ORDER_STEPS: [(&str, &str); 5] = [
    ("validate_user", "validate_user"),
    ("reserve_inventory", "inventory"),
    ("process_payment", "payment"),
    ("create_order", "order"),
    ("send_confirmation", "send_confirmation"),
];

/// The order saga completes, and compensates in reverse order, whichever language serves
/// each step: every SDK's services client (JSON in and out, an idempotency key per call,
/// 404, 402 and 409 mapped to the step's error), cache, publish and log from a real
/// component, against the example's mock services.
#[tokio::test(flavor = "multi_thread")]
async fn the_order_saga_runs_and_compensates_with_any_mix_of_languages() {
    let services = Services::start().await;
    let mut config = services.config();
    for (name, path) in [
        ("js_orders", flowhost_test_artifacts::JS_ORDERS),
        ("python_orders", flowhost_test_artifacts::PYTHON_ORDERS),
    ] {
        config.push_str(&format!(
            "\n[plugins.{name}]\npath = \"{path}\"\nservices = [\"users\", \"inventory\", \"payments\", \"orders\"]\npublish = [\"order.*\"]\n"
        ));
    }
    for (workflow, languages) in MIXES {
        let steps: Vec<String> = ORDER_STEPS
            .iter()
            .zip(languages)
            .map(|((step, rust), language)| {
                let plugin = match language {
                    "rust" => rust.to_string(),
                    other => format!("{other}_orders"),
                };
                let compensate = if matches!(*step, "validate_user" | "send_confirmation") {
                    ", compensate = false"
                } else {
                    ""
                };
                format!("{{ name = \"{step}\", plugin = \"{plugin}\"{compensate} }}")
            })
            .collect();
        config.push_str(&format!(
            "\n[workflows.{workflow}]\nsteps = [{}]\n",
            steps.join(", ")
        ));
    }
    let server = Server::start(&config).await;
    // Runs `input` on `workflow` to its end; the run, and the order's ledger.
    let run = |workflow: &'static str, input: Value| {
        let (server, services) = (&server, &services);
        async move {
            let (status, run) = server
                .post(&format!("/v1/workflows/{workflow}/runs?wait=60s"), &input)
                .await;
            assert_eq!(status, 200, "{workflow}: {run}");
            let ledger = services.order(input["order_id"].as_str().unwrap()).await;
            (run, ledger)
        }
    };

    for (n, (workflow, languages)) in MIXES.into_iter().enumerate() {
        // Completes: each step's output is in the context, each service saw its call once.
        let (done, ledger) = run(workflow, order(&format!("{workflow}-ok"), 7, 50.0)).await;
        expect(
            &done,
            "completed",
            None,
            &format!("{workflow} {languages:?}"),
        );
        let context = &done["context"];
        assert_eq!(context["user"]["name"], "User 7", "{done}");
        assert_eq!(context["reservations"].as_array().unwrap().len(), 2);
        assert!(context["payment_id"].is_string(), "{done}");
        assert_eq!(context["order_status"], "created", "{done}");
        assert!(context["confirmation_event"].is_string(), "{done}");
        counts(
            &ledger,
            &[
                ("reservations", "active", 2),
                ("payments", "captured", 1),
                ("orders", "active", 1),
            ],
        );

        // A declined payment (402) is fatal: the reservations are released.
        let (declined, ledger) =
            run(workflow, order(&format!("{workflow}-declined"), 7, 5000.0)).await;
        expect(&declined, "compensated", Some("declined"), workflow);
        assert_eq!(declined["error"]["step"], "process_payment", "{declined}");
        counts(
            &ledger,
            &[("reservations", "released", 2), ("payments", "captured", 0)],
        );

        // The order service refuses (400): the payment is refunded, then the stock released.
        services.fail("orders", 1, 400).await;
        let (refused, ledger) = run(workflow, order(&format!("{workflow}-refused"), 7, 20.0)).await;
        expect(&refused, "compensated", None, workflow);
        assert_eq!(
            step(&refused, "create_order")["attempts"],
            1,
            "a 400 is fatal: {refused}"
        );
        assert_eq!(step(&refused, "process_payment")["status"], "compensated");
        assert_eq!(step(&refused, "reserve_inventory")["status"], "compensated");
        counts(
            &ledger,
            &[("payments", "refunded", 1), ("reservations", "active", 0)],
        );

        // An unknown user (404) and an inactive one fail the first step, fatally: nothing
        // was done, so nothing is compensated.
        let (user, says) = if n % 2 == 0 {
            (999, "does not exist")
        } else {
            (13, "is not active")
        };
        let (unknown, _) = run(workflow, order(&format!("{workflow}-user"), user, 20.0)).await;
        expect(&unknown, "failed", Some(says), workflow);
        assert_eq!(step(&unknown, "validate_user")["attempts"], 1, "{unknown}");
    }

    for workflow in ["all_js", "all_python"] {
        // A 503 is retryable in the JS and the Python SDK alike: the host retries the step.
        services.fail("payments", 1, 503).await;
        let (retried, ledger) = run(workflow, order(&format!("{workflow}-retried"), 7, 20.0)).await;
        expect(&retried, "completed", None, workflow);
        assert_eq!(
            step(&retried, "process_payment")["attempts"],
            2,
            "{retried}"
        );
        // Retried because the SDK said so, not because the component trapped.
        let id = retried["id"].as_str().unwrap();
        let (_, journal) = server.get(&format!("/v1/runs/{id}/journal")).await;
        let outcomes: Vec<&Value> = journal["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["step"] == "process_payment")
            .map(|a| &a["outcome"])
            .collect();
        assert_eq!(outcomes, [&json!("retryable"), &json!("ok")], "{journal}");
        counts(&ledger, &[("payments", "captured", 1)]);

        // The second item is out of stock (409): fatal, and the step releases the first
        // item's reservation itself (no compensation follows a failed step). The step
        // before has nothing to undo (`compensate = false`): the run ends failed.
        let mut input = order(&format!("{workflow}-stock"), 7, 20.0);
        input["items"][1]["product_id"] = json!("out-of-stock");
        let (stock, ledger) = run(workflow, input).await;
        expect(&stock, "failed", Some("out of stock"), workflow);
        counts(
            &ledger,
            &[
                ("reservations", "active", 0),
                ("reservations", "released", 1),
            ],
        );
    }
}

/// Asserts that `run` ended in `status`, its error saying `says` if given.
fn expect(run: &Value, status: &str, says: Option<&str>, what: &str) {
    assert_eq!(run["status"], status, "{what}: {run}");
    if let Some(says) = says {
        let message = run["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{what}: {run}");
    }
}

/// Asserts how many records of each kind the order's ledger holds in each state.
fn counts(ledger: &Value, expected: &[(&str, &str, usize)]) {
    for (kind, state, n) in expected {
        assert_eq!(count(ledger, kind, state), *n, "{kind} {state}: {ledger}");
    }
}

/// The JS SDK's TypeScript declarations: those of the host's interfaces are what jco
/// generates from the WIT today (a WIT change without `npm run types` fails here), and the
/// SDK's own, over them, type-check a typed step and handler (`sdk/test/types.ts`).
#[test]
fn the_js_sdk_types_match_the_wit_and_type_check() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let sdk = root.join("plugins/js/sdk");
    let fresh = tempfile::tempdir().unwrap();
    let run = |command: &mut std::process::Command| {
        let output = command
            .current_dir(flowhost_test_artifacts::JS_TOOLS)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{command:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(std::process::Command::new("node")
        .arg(sdk.join("scripts/wit-types.mjs"))
        .arg(root.join("wit"))
        .arg(fresh.path()));
    let committed = files_under(&sdk.join("wit"));
    let generated = files_under(fresh.path());
    assert_eq!(
        committed.keys().collect::<Vec<_>>(),
        generated.keys().collect::<Vec<_>>()
    );
    for (name, text) in &generated {
        assert!(
            committed[name] == *text,
            "plugins/js/sdk/wit/{name} is not what jco generates from the WIT: run `npm run types` in plugins/js"
        );
    }
    run(std::process::Command::new("node")
        .arg("node_modules/typescript/bin/tsc")
        .arg("-p")
        .arg(&sdk));
}

/// Every file under `dir`, by its path relative to `dir`.
fn files_under(dir: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    let mut files = std::collections::BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                files.insert(name, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    files
}

/// The Python SDK's own logic, outside a component: its unit tests
/// (`plugins/python/sdk/tests`), with the machine's Python.
#[test]
fn the_python_sdk_passes_its_unit_tests() {
    let sdk = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/python/sdk");
    let output = std::process::Command::new("python3")
        .args(["-m", "unittest", "discover", "-s", "tests"])
        .current_dir(&sdk)
        // No __pycache__ in the source tree: the test build watches it.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("OK"), "{text}");
}
