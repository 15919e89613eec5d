//! Signed plugins: `flowhost keys generate` and `flowhost plugins sign` on the real binary,
//! and a host with `registry.trusted-keys` that takes only versions its keys signed, over
//! the API, the CLI, the directory watch, a rollback and its own start.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::server::Server;
use crate::swap::{
    Marks, TOKEN, admin, config, current, describe, digest, rollback, wasm_v1, wasm_v2,
};

/// Runs `flowhost ARGS` against `server` (if any); exit code, stdout, stderr.
fn flowhost(args: &[&str], server: Option<&Server>) -> (Option<i32>, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flowhost"));
    command.args(args).env("FLOWHOST_ADMIN_TOKEN", TOKEN);
    if let Some(server) = server {
        command.args(["--server", &server.url]);
    }
    let output = command.output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A key pair made by `flowhost keys generate` in `dir`: the secret key's file and the
/// public key's text.
fn generate(dir: &Path, name: &str) -> (PathBuf, String) {
    let file = dir.join(name);
    let (code, out, err) = flowhost(&["keys", "generate", file.to_str().unwrap()], None);
    assert_eq!(code, Some(0), "{err}");
    let public = std::fs::read_to_string(dir.join(format!("{name}.pub"))).unwrap();
    let public = public.trim().to_owned();
    assert!(
        public.starts_with("ed25519:") && out.contains(&public),
        "{out}"
    );
    (file, public)
}

/// Signs `file` with `key` by `flowhost plugins sign`, with `extra` arguments.
fn sign(file: &Path, key: &Path, extra: &[&str]) {
    let mut args = vec![
        "plugins",
        "sign",
        file.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = flowhost(&args, None);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("signed as plugin"), "{out}");
}

/// `PUT /v1/plugins/marked` with `signature` in its header.
async fn push_signed(server: &Server, wasm: Vec<u8>, signature: &str) -> (u16, Value) {
    let response = server
        .client
        .put(format!("{}/v1/plugins/marked", server.url))
        .bearer_auth(TOKEN)
        .header("Flowhost-Signature", signature)
        .body(wasm)
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

/// `flowhost serve` on `config`, which must fail to start: what it said.
fn serve_fails(config: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_flowhost"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{err}");
    err
}

fn trusting(public: &str) -> String {
    format!("[registry]\ntrusted-keys = {{ release = {public:?} }}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_trusted_keys_only_versions_they_signed_go_live() {
    let marks = Marks::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (release, public) = generate(dir.path(), "release");
    let (other, _) = generate(dir.path(), "other");
    let v1 = dir.path().join("marked.wasm");
    std::fs::write(&v1, wasm_v1()).unwrap();
    sign(&v1, &release, &[]);
    let server = Server::start(&config(v1.to_str().unwrap(), &marks, &trusting(&public))).await;
    let described = describe(&server).await;
    assert_eq!(
        described["versions"][0]["signed_by"]["name"], "release",
        "{described}"
    );
    assert_eq!(
        described["versions"][0]["signed_by"]["key"],
        public.as_str()
    );

    // Unsigned, signed by an untrusted key, signed for another plugin, or garbage: 422,
    // and nothing changes.
    let v2 = dir.path().join("v2.wasm");
    std::fs::write(&v2, wasm_v2()).unwrap();
    let signature = |key: &Path, name: &str| {
        let out = dir.path().join(format!("{name}.sig"));
        sign(&v2, key, &["--name", name, "--out", out.to_str().unwrap()]);
        std::fs::read_to_string(out).unwrap().trim().to_owned()
    };
    let (status, problem) = admin(
        &server,
        reqwest::Method::PUT,
        "/v1/plugins/marked",
        Some(wasm_v2()),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("unsigned"),
        "{problem}"
    );
    let by_other = signature(&other, "marked");
    let refused = [
        (by_other.as_str(), "not in registry.trusted-keys"),
        (&signature(&release, "refund"), "does not verify"),
        ("ed25519:AAAA:BBBB", "signature"),
    ];
    for (header, why) in refused {
        let (status, problem) = push_signed(&server, wasm_v2(), header).await;
        assert_eq!(status, 422, "{header}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(why),
            "{problem}"
        );
    }
    // The right signature over other bytes does not verify either.
    let good = signature(&release, "marked");
    let (status, problem) = push_signed(&server, wasm_v1(), &good).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(current(&server).await, digest(&wasm_v1()));
    assert_eq!(
        describe(&server).await["versions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // The CLI sends FILE.sig with FILE.
    sign(&v2, &release, &["--name", "marked"]);
    let (code, out, err) = flowhost(
        &["plugins", "push", "marked", v2.to_str().unwrap()],
        Some(&server),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("new version"), "{out}");
    assert_eq!(current(&server).await, digest(&wasm_v2()));
    let (code, out, err) = flowhost(&["plugins", "get", "marked"], Some(&server));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("SIGNED BY") && out.contains("release"),
        "{out}"
    );
    // Both versions are signed: a rollback may go back.
    let (status, answer) = rollback(&server, "marked", None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(current(&server).await, digest(&wasm_v1()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_trusted_keys_the_watch_takes_a_rebuilt_file_only_with_its_signature() {
    let marks = Marks::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (release, public) = generate(dir.path(), "release");
    let file = dir.path().join("marked.wasm");
    std::fs::write(&file, wasm_v1()).unwrap();
    sign(&file, &release, &[]);
    let server = Server::start(&config(file.to_str().unwrap(), &marks, &trusting(&public))).await;

    // Rebuilt, its old signature left beside it: refused, the current version stays.
    std::fs::write(&file, wasm_v2()).unwrap();
    let started = Instant::now();
    while server.logged("rebuilt plugin refused") == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(server.log().contains("does not verify"), "{}", server.log());
    assert_eq!(current(&server).await, digest(&wasm_v1()));
    // Signed afterwards: the new signature brings it in.
    sign(&file, &release, &[]);
    while current(&server).await != digest(&wasm_v2()) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let described = describe(&server).await;
    assert_eq!(described["versions"][0]["source"], "watch", "{described}");
    assert_eq!(described["versions"][0]["signed_by"]["name"], "release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_trusts_keys_does_not_start_on_an_unsigned_plugin() {
    let marks = Marks::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (release, public) = generate(dir.path(), "release");
    let file = dir.path().join("marked.wasm");
    std::fs::write(&file, wasm_v1()).unwrap();
    let config_file = dir.path().join("flowhost.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &config_file,
        format!(
            "data-dir = {data:?}\n{}",
            config(file.to_str().unwrap(), &marks, &trusting(&public))
        ),
    )
    .unwrap();
    let err = serve_fails(&config_file);
    assert!(err.contains("plugin `marked` is unsigned"), "{err}");
    // `flowhost check` says so too, and who signed it once it is signed.
    let check = || flowhost(&["check", "--config", config_file.to_str().unwrap()], None);
    let (code, _, err) = check();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("plugin `marked` is unsigned"), "{err}");
    sign(&file, &release, &[]);
    let (code, out, err) = check();
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("plugin marked: signed by release"), "{out}");
    // A trusted key that does not parse is named.
    std::fs::write(
        &config_file,
        format!(
            "data-dir = {data:?}\n{}",
            config(
                file.to_str().unwrap(),
                &marks,
                &trusting("ed25519:nonsense")
            )
        ),
    )
    .unwrap();
    let err = serve_fails(&config_file);
    assert!(err.contains("registry.trusted-keys.release"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_keys_are_trusted_an_unsigned_version_is_neither_kept_current_nor_rolled_back_to() {
    let marks = Marks::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (release, public) = generate(dir.path(), "release");
    let file = dir.path().join("marked.wasm");
    std::fs::write(&file, wasm_v1()).unwrap();
    sign(&file, &release, &[]);
    // No trusted keys: an unsigned upload goes live, a signed file's signer is recorded.
    let mut server = Server::start(&config(file.to_str().unwrap(), &marks, "")).await;
    let (status, pushed) = admin(
        &server,
        reqwest::Method::PUT,
        "/v1/plugins/marked",
        Some(wasm_v2()),
    )
    .await;
    assert_eq!(status, 201, "{pushed}");
    let described = describe(&server).await;
    let versions = described["versions"].as_array().unwrap();
    assert_eq!(versions[0]["digest"], digest(&wasm_v2()).as_str());
    assert!(versions[0].get("signed_by").is_none(), "{described}");
    assert_eq!(
        versions[1]["signed_by"]["key"],
        public.as_str(),
        "{described}"
    );
    assert!(
        versions[1]["signed_by"].get("name").is_none(),
        "{described}"
    );

    // Restarted trusting the key: the unsigned current version gives way to the signed
    // file, and cannot be rolled back to.
    server.reconfigure(&config(file.to_str().unwrap(), &marks, &trusting(&public)));
    server.restart().await;
    assert_eq!(current(&server).await, digest(&wasm_v1()));
    let (status, problem) = rollback(&server, "marked", Some(&digest(&wasm_v2()))).await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("unsigned"),
        "{problem}"
    );
    assert_eq!(current(&server).await, digest(&wasm_v1()));
    // Its signer is recorded again, under the name trusted now.
    let described = describe(&server).await;
    let current = described["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["current"] == true)
        .unwrap();
    assert_eq!(current["signed_by"]["name"], "release", "{described}");
}
