//! Hostile plugins: each attack fails its own call with a typed error, and the host keeps
//! serving other calls, during and after.

use std::time::{Duration, Instant};

use flowhost::CallError;
use serde_json::{Value, json};
use wasmtime::Trap;

use crate::support::{Host, LogCapture, host};

fn hostile_host() -> Host {
    host(
        r#"
        [plugins.hostile]
        path = "{HOSTILE}"
        timeout = "300ms"
        memory-limit-mib = 16
        [plugins.noop]
        path = "{NOOP}"
        "#,
    )
}

async fn attack(host: &Host, step: &str) -> Result<Value, CallError> {
    host.execute("hostile", step, json!({}))
        .await
        .map(|r| r.expect("the attack returns a value"))
}

/// The host still serves an ordinary call.
async fn still_serving(host: &Host) {
    assert_eq!(host.ok("noop", "noop", json!({})).await, json!({}));
}

#[tokio::test]
async fn an_infinite_loop_hits_the_deadline_without_starving_other_calls() {
    let host = hostile_host();
    let start = Instant::now();
    // Both futures run on this one thread: the noop call can only finish while the loop
    // runs if the looping guest yields on epoch ticks.
    let (looped, noop_done_at) = tokio::join!(attack(&host, "loop"), async {
        still_serving(&host).await;
        start.elapsed()
    });
    let err = looped.unwrap_err();
    assert!(
        matches!(&err, CallError::Deadline { plugin, limit } if &**plugin == "hostile" && *limit == Duration::from_millis(300)),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "plugin `hostile` exceeded its deadline of 300ms"
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(
        noop_done_at < Duration::from_millis(300),
        "noop waited for the loop: {noop_done_at:?}"
    );
    still_serving(&host).await;
}

#[tokio::test]
async fn a_memory_bomb_hits_the_cap() {
    let host = hostile_host();
    let err = attack(&host, "memory_bomb").await.unwrap_err();
    assert!(
        matches!(&err, CallError::MemoryLimit { plugin, limit_mib: 16 } if &**plugin == "hostile"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "plugin `hostile` exceeded its memory limit of 16 MiB"
    );
    still_serving(&host).await;
}

#[tokio::test]
async fn unbounded_recursion_overflows_the_stack() {
    let host = hostile_host();
    let err = attack(&host, "recursion").await.unwrap_err();
    assert!(
        matches!(
            &err,
            CallError::Trap {
                trap: Trap::StackOverflow,
                ..
            }
        ),
        "{err:?}"
    );
    still_serving(&host).await;
}

#[tokio::test]
async fn a_panic_is_a_trap() {
    let host = hostile_host();
    let err = attack(&host, "panic").await.unwrap_err();
    assert!(
        matches!(
            &err,
            CallError::Trap {
                trap: Trap::UnreachableCodeReached,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("plugin `hostile` trapped"),
        "{err}"
    );
    still_serving(&host).await;
}

#[tokio::test]
async fn there_are_no_files_to_read() {
    let host = hostile_host();
    let out = attack(&host, "read_file").await.unwrap();
    for probe in ["read", "list_root", "list_cwd"] {
        assert!(
            out[probe].get("Err").is_some(),
            "{probe} should fail: {out}"
        );
    }
}

#[tokio::test]
async fn there_is_no_environment() {
    let host = hostile_host();
    let out = attack(&host, "read_env").await.unwrap();
    assert_eq!(out["vars"], json!([]), "{out}");
    assert_eq!(out["args"], json!([]), "{out}");
}

#[tokio::test]
async fn there_are_no_sockets() {
    let host = hostile_host();
    let out = attack(&host, "connect").await.unwrap();
    // Binding a listener on loopback would succeed with sockets granted, and connecting to a
    // closed port fails either way: every outcome must be the sandbox's denial.
    for probe in ["connect", "udp", "listen"] {
        let outcome = out[probe].as_str().unwrap_or_default().to_lowercase();
        assert!(
            outcome.contains("permission denied"),
            "{probe} should be denied: {out}"
        );
    }
}

#[tokio::test]
async fn an_oversized_log_line_is_cut() {
    let host = hostile_host();
    let logs = LogCapture::start();
    let out = attack(&host, "log_flood").await.unwrap();
    assert_eq!(out["logged"], 1_048_576);
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("[truncated"))
        .expect("a truncated line");
    assert!(line.len() < 8 * 1024, "the line is {} bytes", line.len());
    assert!(
        line.contains(&format!("[truncated {} bytes]", 1_048_576 - 4096)),
        "{}",
        &line[line.len() - 100..]
    );
}

#[tokio::test]
async fn a_memory_cap_below_the_initial_memory_fails_instantiation() {
    let host = host(
        r#"
        [plugins.tiny]
        path = "{NOOP}"
        memory-limit-mib = 1
        "#,
    );
    let err = host.execute("tiny", "noop", json!({})).await.unwrap_err();
    assert!(
        matches!(&err, CallError::MemoryLimit { limit_mib: 1, .. }),
        "{err:?}"
    );
}
