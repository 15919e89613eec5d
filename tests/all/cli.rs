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
fn refuses_what_is_not_a_plugin_with_one_line_and_status_1() {
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
        assert_eq!(status, 1, "{file}: {out}{err}");
        assert_eq!(err.lines().count(), 1, "{file}: one line: {err}");
        assert!(
            err.contains(expected) && err.contains(file),
            "{file}: {err}"
        );
    }
}

/// `flowhost check` with `config.toml` in a fresh directory, plus `env` and `args`.
fn check_config(config: &str, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flowhost.toml"), config).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_flowhost"))
        .current_dir(dir.path())
        .args(["check", "--config", "flowhost.toml"])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn probe_config() -> String {
    format!(
        "data-dir = \"state\"\n[plugins.probe]\npath = {:?}\n",
        flowhost_test_artifacts::PROBE
    )
}

#[test]
fn check_loads_the_configuration_and_its_plugins() {
    let (status, out, err) = check_config(&probe_config(), &[], &[]);
    assert_eq!(status, 0, "{err}");
    let summary = out.lines().next().unwrap();
    assert!(
        summary.starts_with("config: ") && summary.contains("plugins=[probe]"),
        "{out}"
    );
    assert!(summary.contains("memory-limit=64MiB"), "{out}");
    assert!(out.contains("plugin probe: step-plugin"), "{out}");

    // Environment over the file, flags over both.
    let env = [
        ("FLOWHOST_RUNTIME__MEMORY_LIMIT_MIB", "32"),
        ("FLOWHOST_DATA_DIR", "env-dir"),
    ];
    let (status, out, err) = check_config(&probe_config(), &env, &["--data-dir", "flag-dir"]);
    assert_eq!(status, 0, "{err}");
    assert!(
        out.contains("memory-limit=32MiB") && out.contains("data-dir=flag-dir"),
        "{out}"
    );
}

#[test]
fn check_names_what_is_wrong() {
    let config = format!("{}sandbox = false\n", probe_config());
    let (status, _, err) = check_config(&config, &[], &[]);
    assert_eq!(status, 1);
    assert!(
        err.contains("sandbox") && err.contains("flowhost.toml"),
        "{err}"
    );

    let env = [("FLOWHOST_RUNTIME__MEMORY_LIMIT_MIB", "0")];
    let (status, _, err) = check_config(&probe_config(), &env, &[]);
    assert_eq!(status, 1);
    assert!(err.contains("runtime.memory-limit-mib"), "{err}");

    let (status, _, err) = check_config("[plugins.gone]\npath = \"gone.wasm\"\n", &[], &[]);
    assert_eq!(status, 1);
    assert!(
        err.contains("plugins.gone") && err.contains("gone.wasm"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn check_refuses_a_workflow_step_served_by_a_handler() {
    let config = format!(
        "[plugins.audit]\npath = {:?}\n[workflows.w]\nsteps = [{{ name = \"s\", plugin = \"audit\" }}]\n",
        flowhost_test_artifacts::AUDIT_LOG
    );
    let (status, _, err) = check_config(&config, &[], &[]);
    assert_eq!(status, 1);
    assert!(
        err.contains("workflows.w.steps.s.plugin")
            && err.contains("does not implement step-plugin"),
        "{err}"
    );
    let config = "[plugins.p]\npath = \"p.wasm\"\n[workflows.w]\nsteps = [{ name = \"s\", plugin = \"ghost\" }, { name = \"s\", plugin = \"p\" }]\n";
    let (status, _, err) = check_config(config, &[], &[]);
    assert_eq!(status, 1);
    assert!(
        err.contains("workflows.w.steps") && err.contains("duplicate step `s`"),
        "{err}"
    );
}

/// The order saga against `services`, its runs found by `order_id`, with the two workflows
/// that wait.
pub fn waiting_config(services: &crate::server::Services) -> String {
    let order = services.config().replace(
        "[workflows.order_processing]\n",
        "[workflows.order_processing]\nsearch = [\"order_id\", \"user_id\"]\n",
    );
    format!("{order}\n{}", crate::server::WAITING_WORKFLOWS)
}

/// `flowhost <args> --server <url>`, with `stdin`, on a blocking thread (so that the test's
/// runtime goes on serving the mock services meanwhile): the status, stdout and stderr.
async fn cli(url: &str, args: &[&str], stdin: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut command = Command::new(env!("CARGO_BIN_EXE_flowhost"));
    command
        .args(args)
        .args(["--server", url])
        .env_remove("FLOWHOST_ADMIN_TOKEN")
        .env_remove("FLOWHOST_TRIGGER_TOKEN")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let stdin = stdin.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        (
            output.status.code().unwrap(),
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    })
    .await
    .unwrap()
}

/// The id in `flowhost runs start`'s first line: `run <id> of <workflow> ...`.
fn started_id(out: &str) -> String {
    out.split_whitespace().nth(1).expect("a run id").to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_start_waits_showing_each_step_and_exits_by_how_the_run_ended() {
    let services = crate::server::Services::start().await;
    let server = crate::server::Server::start(&waiting_config(&services)).await;
    let url = server.url.as_str();
    let input = crate::server::order("cli-1", 7, 20.0).to_string();
    let (status, out, err) = cli(
        url,
        &[
            "runs",
            "start",
            "order_processing",
            "--input",
            "-",
            "--wait",
        ],
        &input,
    )
    .await;
    assert_eq!(status, 0, "{out}{err}");
    let steps = [
        "validate_user",
        "reserve_inventory",
        "process_payment",
        "create_order",
        "send_confirmation",
    ];
    for step in steps {
        assert!(
            out.lines()
                .any(|l| l.contains(step) && l.contains("completed")),
            "{step}: {out}"
        );
    }
    assert!(
        out.lines().last().unwrap().contains(" completed after "),
        "{out}"
    );

    // A declined payment: the steps undo, and the exit says how the run ended, in one line.
    let declined = crate::server::order("cli-2", 7, 5000.0).to_string();
    let (status, out, err) = cli(
        url,
        &[
            "runs",
            "start",
            "order_processing",
            "--input",
            "-",
            "--wait",
        ],
        &declined,
    )
    .await;
    assert_eq!(status, 1, "{out}{err}");
    assert!(
        out.lines()
            .any(|l| l.contains("reserve_inventory") && l.contains("compensated")),
        "{out}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: run ") && err.contains("ended compensated: process_payment"),
        "{err}"
    );

    // An idempotency key makes a repeat find the run.
    let args = [
        "runs",
        "start",
        "order_processing",
        "--input",
        "-",
        "--idempotency-key",
        "cli-k",
    ];
    let input = crate::server::order("cli-3", 7, 20.0).to_string();
    let (status, first, err) = cli(url, &args, &input).await;
    assert_eq!(status, 0, "{err}");
    let (_, again, _) = cli(url, &args, &input).await;
    assert_eq!(started_id(&first), started_id(&again));

    // Errors are one line and exit 1; usage errors exit 2.
    for (args, stdin, says) in [
        (
            &["runs", "start", "nope"][..],
            "",
            "404 Not Found: unknown workflow `nope`",
        ),
        (
            &["runs", "start", "order_processing", "--input", "-"][..],
            "{",
            "is not JSON",
        ),
        (
            &["runs", "start", "order_processing", "--input", "-"][..],
            "[1]",
            "must be a JSON object",
        ),
        (
            &["runs", "get", "no-such-run"][..],
            "",
            "404 Not Found: unknown run",
        ),
        (
            &["runs", "list", "--status", "asleep"][..],
            "",
            "400 Bad Request",
        ),
        (
            &["runs", "list", "--where", "payment_id=p"][..],
            "",
            "not a search field",
        ),
    ] {
        let (status, _, err) = cli(url, args, stdin).await;
        assert_eq!(status, 1, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let (status, _, err) = cli(url, &["runs", "start"], "").await;
    assert_eq!(status, 2, "{err}");
    let (status, _, err) = cli("http://127.0.0.1:1", &["runs", "list"], "").await;
    assert_eq!(status, 1);
    assert!(err.contains("cannot reach the host"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_are_listed_shown_followed_and_steered_from_the_command_line() {
    let services = crate::server::Services::start().await;
    let server = crate::server::Server::start(&waiting_config(&services)).await;
    let url = server.url.as_str();
    let order = |id: &str| crate::server::order(id, 7, 20.0).to_string();
    let (status, out, err) = cli(
        url,
        &[
            "runs",
            "start",
            "order_processing",
            "--input",
            "-",
            "--wait",
            "--json",
        ],
        &order("cli-10"),
    )
    .await;
    assert_eq!(status, 0, "{err}");
    let completed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = completed["id"].as_str().unwrap();

    let (status, out, _) = cli(url, &["runs", "list", "--where", "order_id=cli-10"], "").await;
    assert_eq!(status, 0);
    assert!(
        out.starts_with("ID ") && out.contains(id) && out.contains("completed"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 2, "{out}");
    let (_, out, _) = cli(
        url,
        &["runs", "list", "--status", "compensated", "--since", "1h"],
        "",
    )
    .await;
    assert_eq!(
        out,
        "no runs match
"
    );
    let (_, out, _) = cli(
        url,
        &["runs", "list", "--workflow", "order_processing", "--json"],
        "",
    )
    .await;
    let page: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(page["runs"][0]["id"], id);

    let (status, out, _) = cli(url, &["runs", "get", id], "").await;
    assert_eq!(status, 0);
    assert!(
        out.contains("status    completed") && out.contains("process_payment"),
        "{out}"
    );
    assert!(out.contains("payment@"), "the pinned versions: {out}");
    let (_, out, _) = cli(url, &["runs", "journal", id], "").await;
    assert!(
        out.lines()
            .any(|l| l.starts_with("create_order") && l.contains("execute") && l.contains(" ok ")),
        "{out}"
    );
    let (status, out, _) = cli(url, &["runs", "watch", id], "").await;
    assert_eq!(status, 0);
    assert!(out.lines().last().unwrap().contains("completed"), "{out}");

    // A run waiting for a signal: it is sent, and the run goes on to its end.
    let (status, out, err) = cli(
        url,
        &["runs", "start", "approval", "--input", "-"],
        &order("cli-11"),
    )
    .await;
    assert_eq!(status, 0, "{err}");
    let waiting = started_id(&out);
    let (status, out, err) = cli(
        url,
        &[
            "runs",
            "signal",
            &waiting,
            "approved",
            "--data",
            r#"{"by": "ops"}"#,
        ],
        "",
    )
    .await;
    assert_eq!(status, 0, "{err}");
    assert!(out.contains("signal approved delivered"), "{out}");
    let (status, out, _) = cli(url, &["runs", "watch", &waiting], "").await;
    assert_eq!(status, 0, "{out}");
    let run = server.until_terminal(&waiting).await;
    assert_eq!(run["context"]["by"], "ops", "{run}");

    // A run asleep: cancelled, its validation is all it did.
    let (_, out, _) = cli(
        url,
        &["runs", "start", "nap", "--input", "-"],
        &order("cli-12"),
    )
    .await;
    let asleep = started_id(&out);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while server.get(&format!("/v1/runs/{asleep}")).await.1["steps"][1]["status"] != "waiting" {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, out, err) = cli(url, &["runs", "cancel", &asleep], "").await;
    assert_eq!(status, 0, "{err}");
    assert!(out.contains("cancel accepted"), "{out}");
    let (status, _, err) = cli(url, &["runs", "watch", &asleep], "").await;
    assert_eq!(status, 1);
    assert!(err.contains("ended cancelled"), "{err}");
    let (status, _, err) = cli(url, &["runs", "cancel", id], "").await;
    assert_eq!(status, 1);
    assert!(err.contains("409 Conflict"), "{err}");

    // A compensation that keeps failing, retried once the service is back.
    services.fail("orders", 1, 400).await;
    services.fail("refunds", 1000, 503).await;
    let (status, _, err) = cli(
        url,
        &[
            "runs",
            "start",
            "order_processing",
            "--input",
            "-",
            "--wait",
        ],
        &order("cli-13"),
    )
    .await;
    assert_eq!(status, 1);
    assert!(err.contains("ended compensation_failed"), "{err}");
    let stuck = server.get("/v1/runs?context[order_id]=cli-13").await.1["runs"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    services.fail("refunds", 0, 503).await;
    let (status, out, err) = cli(url, &["runs", "retry", &stuck], "").await;
    assert_eq!(status, 0, "{err}");
    assert!(out.contains("retry accepted"), "{out}");
    assert_eq!(server.until_terminal(&stuck).await["status"], "compensated");
}

#[tokio::test(flavor = "multi_thread")]
async fn events_and_dead_letters_from_the_command_line() {
    let services = crate::server::Services::start().await;
    let server = crate::server::Server::start(&services.config()).await;
    let url = server.url.as_str();
    services.fail("notifications", 3, 500).await;
    let (status, out, err) = cli(
        url,
        &["events", "publish", "order.confirmed", "--data", "-"],
        r#"{"order_id": "cli-20"}"#,
    )
    .await;
    assert_eq!(status, 0, "{err}");
    assert!(
        out.starts_with("published ") && out.contains("on order.confirmed"),
        "{out}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let letter = loop {
        let (_, out, _) = cli(url, &["dead-letters", "list", "--json"], "").await;
        let page: serde_json::Value = serde_json::from_str(&out).unwrap();
        if let Some(id) = page["dead_letters"][0]["id"].as_str() {
            break id.to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "{out}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let (_, out, _) = cli(url, &["dead-letters", "list"], "").await;
    assert!(
        out.contains(&letter) && out.contains("notify-customer") && out.contains("order.confirmed"),
        "{out}"
    );
    let (status, out, err) = cli(url, &["dead-letters", "redeliver", &letter], "").await;
    assert_eq!(status, 0, "{err}");
    assert!(out.contains("queued again for notify-customer"), "{out}");
    let (_, out, _) = cli(url, &["events", "subscriptions"], "").await;
    assert!(
        out.lines()
            .any(|l| l.starts_with("notify-customer") && l.contains("handler notify")),
        "{out}"
    );
    let (status, _, err) = cli(url, &["dead-letters", "redeliver", &letter], "").await;
    assert_eq!(status, 1);
    assert!(err.contains("404"), "{err}");
    let (status, _, err) = cli(url, &["events", "publish", "Not A Topic"], "").await;
    assert_eq!(status, 1);
    assert!(err.contains("400 Bad Request"), "{err}");
}
