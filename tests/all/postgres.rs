//! The host on PostgreSQL (`[store] kind = "postgres"`), each test in a database of its own:
//! the order saga completes and compensates and survives `kill -9`; eight clients racing
//! with one key get one run.

use std::collections::HashSet;

use flowhost::store::postgres::ScratchDatabase;
use serde_json::json;

use crate::races::{ids, race};
use crate::sagas::count;
use crate::server::{Server, Services, order};
use crate::support::{TWO_STEPS, with_plugins};

/// `config` on the PostgreSQL store in `database`.
pub fn on(database: &ScratchDatabase, config: &str) -> String {
    format!(
        "{config}\n[store]\nkind = \"postgres\"\nurl = {:?}\npool-size = 8\n",
        database.url
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_order_saga_completes_compensates_and_survives_a_kill_on_postgres() {
    let database = ScratchDatabase::create().await;
    let services = Services::start().await;
    let mut server = Server::start(&on(&database, &services.config())).await;
    let (status, done) = server
        .post(
            "/v1/workflows/order_processing/runs?wait=30s",
            &order("o-1", 7, 50.0),
        )
        .await;
    assert_eq!(
        (status, done["status"].as_str()),
        (200, Some("completed")),
        "{done}"
    );
    let (status, undone) = server
        .post(
            "/v1/workflows/order_processing/runs?wait=30s",
            &order("o-2", 7, 5000.0),
        )
        .await;
    assert_eq!(
        (status, undone["status"].as_str()),
        (200, Some("compensated")),
        "{undone}"
    );
    server.kill();
    server.restart().await;
    for (run, status) in [(&done, "completed"), (&undone, "compensated")] {
        let id = run["id"].as_str().unwrap();
        let (code, read) = server.get(&format!("/v1/runs/{id}")).await;
        assert_eq!(
            (code, read["status"].as_str()),
            (200, Some(status)),
            "{read}"
        );
        let (_, journal) = server.get(&format!("/v1/runs/{id}/journal")).await;
        assert!(
            !journal["attempts"].as_array().unwrap().is_empty(),
            "{journal}"
        );
    }
    let (_, page) = server
        .get("/v1/runs?workflow=order_processing&status=compensated")
        .await;
    let listed: Vec<&str> = page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [undone["id"].as_str().unwrap()]);
    // One payment captured, and the declined order holds no reservation.
    let ledger = services.order("o-1").await;
    assert_eq!(count(&ledger, "payments", "captured"), 1, "{ledger}");
    let ledger = services.order("o-2").await;
    assert_eq!(count(&ledger, "reservations", "active"), 0, "{ledger}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_clients_sending_one_start_at_once_get_one_run_on_postgres() {
    let database = ScratchDatabase::create().await;
    let server = Server::start(&on(&database, &with_plugins(TWO_STEPS))).await;
    let url = format!("{}/v1/workflows/two/runs", server.url);
    let keyed = race::<8>(50, move |client, i| {
        client
            .post(&url)
            .header("Idempotency-Key", format!("checkout-{i}"))
            .json(&json!({ "n": i }))
    })
    .await;
    let mut runs = HashSet::new();
    for (i, answers) in keyed.iter().enumerate() {
        let named = ids(answers);
        assert_eq!(named.len(), 1, "key checkout-{i}: {answers:?}");
        runs.extend(named);
    }
    assert_eq!(runs.len(), 50);
    for id in runs {
        let run = server.until_terminal(id).await;
        assert_eq!(run["status"], "completed", "{run}");
    }
}

/// A PostgreSQL cluster of this test's own (Debian's binaries, run as the `postgres` user,
/// on a free port of loopback), so that it can be stopped and started without touching the
/// machine's.
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivatePostgres {
    fn bin(tool: &str) -> std::path::PathBuf {
        let versions = std::fs::read_dir("/usr/lib/postgresql").expect("Debian's PostgreSQL");
        let mut versions: Vec<_> = versions.flatten().map(|e| e.path()).collect();
        versions.sort();
        versions
            .last()
            .expect("a PostgreSQL version")
            .join("bin")
            .join(tool)
    }

    fn as_postgres(args: &[&str]) {
        let status = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{args:?}: {status}");
    }

    pub fn start_new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let owner = std::process::Command::new("chown")
            .args(["postgres", dir.path().to_str().unwrap()])
            .status()
            .unwrap();
        assert!(owner.success());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = dir.path().join("data");
        Self::as_postgres(&[
            Self::bin("initdb").to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-A",
            "trust",
            "-U",
            "postgres",
        ]);
        let cluster = Self { dir, port };
        cluster.start();
        cluster
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.dir.path().join("data");
        let mut all = vec![
            Self::bin("pg_ctl").to_str().unwrap().to_owned(),
            "-D".into(),
            data.to_str().unwrap().to_owned(),
        ];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        Self::as_postgres(&all.iter().map(String::as_str).collect::<Vec<_>>());
    }

    pub fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        self.pg_ctl(&["-o", &options, "-l", log.to_str().unwrap(), "-w", "start"]);
    }

    /// Stops it as a crash would: no checkpoint, what is not in the WAL on disk is gone.
    pub fn crash(&self) {
        self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
    }

    /// Stops it as an operator would: connections are closed, what is committed is kept.
    pub fn stop(&self) {
        self.pg_ctl(&["-m", "fast", "-w", "stop"]);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(Self::bin("pg_ctl"))
            .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// `clients` clients starting runs of `two` back to back (client `i` at `urls[i % n]`), each
/// with a key of its own, until `stop`; 503 is taken as "try again", any other refusal fails
/// the test. Returns the runs acknowledged and how many starts were refused.
pub async fn load_until(
    urls: Vec<String>,
    clients: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (Vec<String>, usize) {
    let clients: Vec<_> = (0..clients)
        .map(|client| {
            let (url, stop) = (
                format!("{}/v1/workflows/two/runs", urls[client % urls.len()]),
                stop.clone(),
            );
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let (mut acknowledged, mut refused) = (Vec::new(), 0);
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let answer = http
                        .post(&url)
                        .header("Idempotency-Key", format!("c{client}-{i}"))
                        .json(&json!({ "i": i }))
                        .send()
                        .await;
                    let Ok(answer) = answer else { continue };
                    match answer.status().as_u16() {
                        200 | 202 => {
                            let run: serde_json::Value = answer.json().await.unwrap();
                            acknowledged.push(run["id"].as_str().unwrap().to_owned());
                        }
                        503 => {
                            refused += 1;
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                        other => panic!("{other}: {}", answer.text().await.unwrap()),
                    }
                }
                (acknowledged, refused)
            })
        })
        .collect();
    let (mut acknowledged, mut refused) = (Vec::new(), 0);
    for client in clients {
        let (ids, no) = client.await.unwrap();
        acknowledged.extend(ids);
        refused += no;
    }
    (acknowledged, refused)
}

/// PostgreSQL crashes under load and comes back: while it is down the API answers 503
/// (never another 5xx) and readiness says so; every start that was acknowledged survives
/// the crash and completes, with no restart of the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_crash_under_load_loses_nothing_acknowledged_and_work_resumes_by_itself() {
    let postgres = PrivatePostgres::start_new();
    let config = format!(
        "{}\n[store]\nkind = \"postgres\"\nurl = {:?}\npool-size = 8\n",
        with_plugins(TWO_STEPS),
        postgres.url()
    );
    let server = Server::start(&config).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn(load_until(vec![server.url.clone()], 8, stop.clone()));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    postgres.crash();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (ready, checks) = server.get("/readyz").await;
    assert_eq!(ready, 503, "{checks}");
    postgres.start();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acknowledged, refused) = load.await.unwrap();
    assert!(refused > 0, "nothing was refused while PostgreSQL was down");
    assert!(acknowledged.len() > 16, "{} runs", acknowledged.len());
    for id in &acknowledged {
        let run = server.until_terminal(id).await;
        assert_eq!(run["status"], "completed", "{run}");
    }
    let (ready, checks) = server.get("/readyz").await;
    assert_eq!(ready, 200, "{checks}");
}
