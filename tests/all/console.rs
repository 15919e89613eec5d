//! The web console in a real browser: Debian's Chromium driven by playwright-core (from
//! npm, pointed at that binary; never a browser download) through `tests/console/console.mjs`,
//! against the real host serving the example, with runs of every kind made here first. The
//! script checks that every page shows those runs' data and that every button does what it
//! says, and saves a screenshot of each page under `target/console-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::{Server, Services, WAITING_WORKFLOWS, order};

/// Debian's Chromium.
const CHROMIUM: &str = "/usr/bin/chromium";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// Chromium from Debian's packages, installed if it is missing and this user may.
fn chromium() {
    if Path::new(CHROMIUM).exists() {
        return;
    }
    let status = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "chromium"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    assert!(
        status.is_ok_and(|s| s.success()) && Path::new(CHROMIUM).exists(),
        "the console test needs Debian's chromium: apt-get install chromium (as root)"
    );
}

/// playwright-core at the version `tests/console/package-lock.json` pins, installed with
/// `npm ci` under `target/console` (never in the source tree), reinstalled only when the
/// lock file changes; its directory.
fn playwright_core() -> PathBuf {
    let source = root().join("tests/console");
    let tools = root().join("target/console");
    let lock = std::fs::read(source.join("package-lock.json")).unwrap();
    let stamp = tools.join("package-lock.installed");
    if std::fs::read(&stamp).ok().as_deref() != Some(&lock[..]) {
        let _ = std::fs::remove_dir_all(&tools);
        std::fs::create_dir_all(&tools).unwrap();
        for file in ["package.json", "package-lock.json"] {
            std::fs::copy(source.join(file), tools.join(file)).unwrap();
        }
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&tools)
            .output()
            .expect("npm");
        assert!(
            out.status.success(),
            "npm ci of playwright-core failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&stamp, &lock).unwrap();
    }
    tools.join("node_modules/playwright-core")
}

/// Polls `path` on `server` until `done` holds for its JSON, for up to 30 s.
async fn until(server: &Server, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = server.get(path).await;
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{path}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts a run of `workflow` with `input`; its id, once `done` holds for it.
async fn run(
    server: &Server,
    workflow: &str,
    input: &Value,
    done: impl Fn(&Value) -> bool,
) -> String {
    let (status, run) = server
        .post(&format!("/v1/workflows/{workflow}/runs"), input)
        .await;
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    until(server, &format!("/v1/runs/{id}"), done).await;
    id
}

fn status_is(status: &'static str) -> impl Fn(&Value) -> bool {
    move |run| run["status"] == status
}

#[tokio::test(flavor = "multi_thread")]
async fn every_page_shows_real_runs_and_every_button_works_in_chromium() {
    let (playwright, ()) = tokio::join!(
        async { tokio::task::spawn_blocking(playwright_core).await.unwrap() },
        async { tokio::task::spawn_blocking(chromium).await.unwrap() },
    );
    let services = Services::start().await;
    let token = "console-admin-token-0123";
    let server = Server::start(&format!(
        "{}\n{WAITING_WORKFLOWS}",
        services.example_config(token)
    ))
    .await;

    let completed = run(
        &server,
        "order_processing",
        &order("ui-1", 7, 50.0),
        status_is("completed"),
    )
    .await;
    let compensated = run(
        &server,
        "order_processing",
        &order("ui-2", 7, 5000.0),
        status_is("compensated"),
    )
    .await;
    let shipped = run(
        &server,
        "order_shipped",
        &order("ui-3", 7, 20.0),
        status_is("completed"),
    )
    .await;
    let (_, shipped_run) = server.get(&format!("/v1/runs/{shipped}")).await;
    let child = shipped_run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|step| step["child"].as_str())
        .expect("the ship step's child")
        .to_owned();
    let waiting_at = |step: &'static str| {
        move |run: &Value| {
            run["steps"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["name"] == step && s["status"] == "waiting")
        }
    };
    let waiting = run(
        &server,
        "approval",
        &order("ui-4", 7, 20.0),
        waiting_at("approve"),
    )
    .await;
    let sleeping = run(&server, "nap", &order("ui-5", 7, 20.0), waiting_at("nap")).await;
    // A compensation that keeps failing; the refunds service works again before the
    // console retries it.
    services.fail("orders", 1, 400).await;
    services.fail("refunds", 1000, 503).await;
    let stuck = run(
        &server,
        "order_processing",
        &order("ui-6", 7, 20.0),
        status_is("compensation_failed"),
    )
    .await;
    services.fail("refunds", 0, 503).await;
    // A confirmation the notification service keeps refusing, through every attempt and
    // every service-level retry: a dead letter. The service is well again before the console
    // redelivers it.
    services.fail("notifications", 1000, 500).await;
    let (status, _) = server
        .post("/v1/events/order.confirmed", &json!({"order_id": "ui-7"}))
        .await;
    assert_eq!(status, 202);
    let letters = until(&server, "/v1/dead-letters", |page| {
        page["dead_letters"]
            .as_array()
            .is_some_and(|l| !l.is_empty())
    })
    .await;
    let dead_letter = letters["dead_letters"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    services.fail("notifications", 0, 500).await;

    let screenshots = root().join("target/console-screenshots");
    let fixture = json!({
        "url": server.url,
        "admin_token": token,
        "screenshots": screenshots,
        "playwright_core": playwright,
        "runs": {
            "completed": completed,
            "compensated": compensated,
            "shipped": shipped,
            "child": child,
            "waiting": waiting,
            "sleeping": sleeping,
            "compensation_failed": stuck,
        },
        "completed_order_id": "ui-1",
        "dead_letter": dead_letter,
        "workflow": "order_processing",
        "payment_wasm": root().join("plugins/target/wasm32-wasip2/release/payment.wasm"),
    });
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), fixture.to_string()).unwrap();
    let script = root().join("tests/console/console.mjs");
    let fixture_path = file.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .env("FLOWHOST_CONSOLE_FIXTURE", fixture_path)
            .output()
            .expect("node")
    })
    .await
    .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{report}");
    assert!(
        out.status.success(),
        "the console failed in Chromium:\n{report}\nthe host's log:\n{}",
        server.log()
    );
    for page in ["runs", "run", "workflows", "plugins", "events", "dashboard"] {
        assert!(
            screenshots.join(format!("{page}.png")).exists(),
            "no screenshot of {page}"
        );
    }
}
