//! `flowhost new`: each template (a step and a handler, in Rust, JavaScript and Python) is
//! written by the binary, built offline with the toolchains the test build installed,
//! checked with `flowhost plugins check`, tested with its own test (`flowhost step run
//! --expect`, `flowhost handler run`), and then run by a host: the steps in workflows, the
//! handlers by subscriptions.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::server::Server;
use crate::telemetry::Metrics;

const FLOWHOST: &str = env!("CARGO_BIN_EXE_flowhost");

/// One project: its language, its kind, and its name (the plugin's and its step's).
struct Project {
    lang: &'static str,
    kind: &'static str,
    dir: PathBuf,
}

impl Project {
    fn name(&self) -> String {
        format!("{}-{}", self.kind, self.lang)
    }

    /// The component its build writes.
    fn component(&self) -> PathBuf {
        let module = self.name().replace('-', "_");
        match self.lang {
            "rust" => self
                .dir
                .join(format!("target/wasm32-wasip2/release/{module}.wasm")),
            _ => self.dir.join(format!("{module}.wasm")),
        }
    }

    /// The world its README builds for.
    fn world(&self) -> &'static str {
        if self.kind == "step" {
            "step-plugin"
        } else {
            "handler-plugin"
        }
    }
}

/// Runs `command` in `dir`, and panics with its output unless it succeeds.
fn succeed(command: &mut Command, dir: &Path) -> String {
    let output = command.current_dir(dir).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{command:?} in {}: {text}",
        dir.display()
    );
    text
}

/// Builds the project as its README says, offline.
fn build(project: &Project) {
    let dir = &project.dir;
    match project.lang {
        "rust" => {
            // The two Rust projects share one target folder, so the SDK's dependencies
            // build once.
            let mut cargo = flowhost_test_artifacts::guest::cargo();
            cargo.args(["build", "--release", "--offline"]);
            let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/templates");
            succeed(cargo.env("CARGO_TARGET_DIR", &shared), dir);
            // The README's path: where a project's own target folder puts it.
            let built = shared.join(format!(
                "wasm32-wasip2/release/{}.wasm",
                project.name().replace('-', "_")
            ));
            std::fs::create_dir_all(project.component().parent().unwrap()).unwrap();
            std::fs::copy(built, project.component()).unwrap();
        }
        "js" => {
            // Offline: npm's cache holds what the test build installed from the same lock.
            succeed(
                Command::new("npm").args(["ci", "--offline", "--no-audit", "--no-fund"]),
                dir,
            );
            succeed(Command::new("npm").args(["run", "build", "--silent"]), dir);
        }
        "python" => {
            succeed(
                Command::new("python3")
                    .args([
                        "-c",
                        "import sys, componentize_py; sys.exit(componentize_py.script())",
                        "-d",
                        "wit",
                        "-w",
                        project.world(),
                        "--quiet",
                        "componentize",
                        "app",
                        "-p",
                        ".",
                        "-p",
                        "sdk",
                        "-o",
                    ])
                    .arg(project.component())
                    .env("PYTHONPATH", flowhost_test_artifacts::PYTHON_TOOLS),
                dir,
            );
        }
        other => unreachable!("{other}"),
    }
}

/// `PATH` with the binary under test first, as a project's own test expects `flowhost`.
fn path_with_flowhost() -> String {
    let bin = Path::new(FLOWHOST).parent().unwrap().display().to_string();
    format!("{bin}:{}", std::env::var("PATH").unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_template_builds_offline_tests_itself_and_runs_on_a_host() {
    let root = tempfile::tempdir().unwrap();
    let mut projects = Vec::new();
    for lang in ["rust", "js", "python"] {
        for kind in ["step", "handler"] {
            let dir = root.path().join(format!("{kind}-{lang}"));
            let project = Project { lang, kind, dir };
            let written = succeed(
                Command::new(FLOWHOST)
                    .args(["new", kind, &project.name(), "--lang", lang, "--dir"])
                    .arg(&project.dir),
                root.path(),
            );
            assert!(written.contains("build:"), "{written}");
            build(&project);
            let checked = succeed(
                Command::new(FLOWHOST)
                    .args(["plugins", "check"])
                    .arg(project.component()),
                &project.dir,
            );
            assert!(checked.contains(project.world()), "{checked}");
            // The project's own test: `npm test` for JS, the README's command otherwise.
            let tested = if lang == "js" {
                succeed(
                    Command::new("npm")
                        .args(["test", "--silent"])
                        .env("PATH", path_with_flowhost()),
                    &project.dir,
                )
            } else {
                let readme = std::fs::read_to_string(project.dir.join("README.md")).unwrap();
                let line = readme
                    .lines()
                    .map(str::trim)
                    .find(|line| {
                        line.starts_with("flowhost step run")
                            || line.starts_with("flowhost handler run")
                    })
                    .unwrap_or_else(|| panic!("no test command in the README:\n{readme}"));
                let args: Vec<&str> = line.split_whitespace().skip(1).collect();
                succeed(Command::new(FLOWHOST).args(args), &project.dir)
            };
            assert!(tested.contains(": ok in"), "{tested}");
            projects.push(project);
        }
    }

    // On a host: each step in a workflow of its own, configured; each handler subscribed.
    let mut config = String::new();
    for project in &projects {
        let name = project.name();
        config.push_str(&format!(
            "[plugins.{name}]\npath = \"{}\"\nconfig = {{ greeting = \"hej\" }}\n",
            project.component().display()
        ));
        if project.kind == "step" {
            config.push_str(&format!(
                "[workflows.{name}]\nsteps = [{{ name = \"{name}\", plugin = \"{name}\" }}]\n"
            ));
        } else {
            config.push_str(&format!(
                "[subscriptions.{name}]\ntopic = \"greeted.{}\"\nhandler = \"{name}\"\nretry = {{ attempts = 2, initial-backoff = \"10ms\", max-backoff = \"10ms\" }}\n",
                project.lang
            ));
        }
    }
    let server = Server::start(&config).await;
    for project in projects.iter().filter(|p| p.kind == "step") {
        let name = project.name();
        let (status, run) = server
            .post(
                &format!("/v1/workflows/{name}/runs?wait=30s"),
                &json!({ "name": "ada" }),
            )
            .await;
        assert_eq!(status, 200, "{run}");
        assert_eq!(run["status"], "completed", "{name}: {run}");
        assert_eq!(run["context"]["message"], "hej, ada", "{name}: {run}");
    }
    for project in projects.iter().filter(|p| p.kind == "handler") {
        let topic = format!("greeted.{}", project.lang);
        for data in [json!({ "order_id": "o-1" }), json!("not an object")] {
            let (status, body) = server.post(&format!("/v1/events/{topic}"), &data).await;
            assert_eq!(status, 202, "{body}");
        }
    }
    // Each handler takes the object and refuses the string, which ends as a dead letter.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = Metrics::scrape(&server.url).await;
        let counts: Vec<(String, f64, f64)> = projects
            .iter()
            .filter(|p| p.kind == "handler")
            .map(|p| {
                let name = p.name();
                let ok = metrics.value(
                    "flowhost_deliveries_total",
                    &[("subscription", &name), ("outcome", "ok")],
                );
                let dead = metrics.value("flowhost_dead_letters_total", &[("subscription", &name)]);
                (name, ok, dead)
            })
            .collect();
        if counts
            .iter()
            .all(|(_, ok, dead)| (*ok, *dead) == (1.0, 1.0))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the handlers did not settle (subscription, handled, dead letters): {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn new_refuses_a_bad_name_or_a_folder_in_use() {
    let root = tempfile::tempdir().unwrap();
    let taken = root.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("keep.txt"), "mine").unwrap();
    for (args, says) in [
        (
            vec!["step", "Bad Name", "--lang", "rust"],
            "not a plugin name",
        ),
        (vec!["step", "9lives", "--lang", "js"], "not a plugin name"),
        (
            vec![
                "step",
                "fine",
                "--lang",
                "python",
                "--dir",
                taken.to_str().unwrap(),
            ],
            "not empty",
        ),
        (vec!["step", "fine", "--lang", "cobol"], "invalid value"),
        (vec!["step", "flowhost-sdk", "--lang", "rust"], "is taken"),
        (vec!["handler", "std", "--lang", "rust"], "is taken"),
    ] {
        let output = Command::new(FLOWHOST)
            .arg("new")
            .args(&args)
            .current_dir(root.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert_eq!(
        std::fs::read_to_string(taken.join("keep.txt")).unwrap(),
        "mine"
    );
    assert_eq!(
        std::fs::read_dir(&taken).unwrap().count(),
        1,
        "nothing written"
    );
}

/// A JS project pins the tools the test build installs: the same devDependencies as
/// `plugins/js/package.json`, whose lock it gets (`npm ci` refuses a lock that does not fit
/// them). Python and Rust projects get the very files (`requirements.txt`, `Cargo.lock`).
#[test]
fn a_js_project_pins_the_tools_of_the_test_build() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let read = |path: PathBuf| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let tools = read(root.join("plugins/js/package.json"));
    let template = read(root.join("templates/js/package.json"));
    assert_eq!(template["devDependencies"], tools["devDependencies"]);
}
