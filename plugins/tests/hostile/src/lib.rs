//! `hostile`: a step plugin for the host's integration tests that attacks its sandbox. The
//! step name picks the attack:
//!
//! | step | does | the host should |
//! |---|---|---|
//! | `loop` | spins forever | stop it at the deadline |
//! | `memory_bomb` | leaks 1 MiB blocks forever | refuse the growth; the failed allocation aborts (traps) |
//! | `recursion` | recurses without end | trap on stack exhaustion |
//! | `read_file` | reads `/etc/passwd`, lists `/` and `.` | have no files to show |
//! | `read_env` | lists environment variables and arguments | have none to show |
//! | `log_flood` | logs one 1 MiB message | cut it to its cap |
//! | `panic` | panics | report a trap |
//! | `connect` | opens TCP and UDP sockets | deny them |
//!
//! The probing steps return what they saw: each outcome is a serialized `Result`,
//! `{"Ok": ...}` or `{"Err": "<error message>"}`. `compensate` returns `{}`.

use std::hint::black_box;
use std::net::{TcpListener, TcpStream, UdpSocket};

use flowhost_sdk::prelude::*;

/// The size of each block `memory_bomb` leaks, and of the message `log_flood` writes.
const MIB: usize = 1 << 20;

/// The plugin.
struct Hostile;

impl Step for Hostile {
    fn execute(info: StepInfo, _ctx: Ctx) -> StepResult {
        match info.step.as_str() {
            "loop" => spin(),
            "memory_bomb" => hoard(),
            "recursion" => Ok(json!({ "depth": recurse(0) })),
            "read_file" => Ok(read_file()),
            "read_env" => Ok(json!({
                "vars": std::env::vars_os()
                    .map(|(name, _)| name.to_string_lossy().into_owned())
                    .collect::<Vec<_>>(),
                "args": std::env::args_os()
                    .map(|arg| arg.to_string_lossy().into_owned())
                    .collect::<Vec<_>>(),
            })),
            "log_flood" => {
                log::info(&"x".repeat(MIB));
                Ok(json!({ "logged": MIB }))
            }
            "panic" => panic!("hostile panic"),
            "connect" => Ok(connect()),
            other => Err(StepError::unknown_step(other)),
        }
    }
}

/// Spins forever; `black_box` keeps the optimizer from proving the loop has no effect.
fn spin() -> ! {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// Leaks 1 MiB blocks, each written to so the pages are really used, until an allocation
/// fails (which aborts).
fn hoard() -> ! {
    loop {
        let block: &'static mut [u8] = vec![0xA5; MIB].leak();
        black_box(block);
    }
}

/// Recurses until the stack runs out. Each level keeps only two `u64`s in linear memory
/// (what `black_box` sees), so the wasm call stack, which the host bounds, runs out long
/// before the 1 MiB shadow stack in linear memory. Not a tail call: the result goes through
/// `black_box` after the inner call returns; and the exit test depends on `black_box`, so
/// the compiler cannot see that it never holds.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return depth;
    }
    black_box(recurse(depth + 1))
}

/// What the filesystem shows: `/etc/passwd`, then the listings of `/` and `.`.
fn read_file() -> Value {
    json!({
        "read": std::fs::read_to_string("/etc/passwd").map_err(|error| error.to_string()),
        "list_root": list("/"),
        "list_cwd": list("."),
    })
}

/// The names in directory `path`.
fn list(path: &str) -> Result<Vec<String>, String> {
    std::fs::read_dir(path)
        .and_then(|entries| {
            entries
                .map(|entry| entry.map(|entry| entry.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .map_err(|error| error.to_string())
}

/// What the network allows: a TCP connection, a UDP datagram, a TCP listener.
fn connect() -> Value {
    let tcp = TcpStream::connect("127.0.0.1:1").map(|_| "connected");
    let udp = UdpSocket::bind("0.0.0.0:0")
        .and_then(|socket| socket.send_to(b"hostile", "127.0.0.1:9"))
        .map(|_| "sent");
    let listen = TcpListener::bind("127.0.0.1:0").map(|_| "listening");
    json!({
        "connect": outcome(tcp),
        "udp": outcome(udp),
        "listen": outcome(listen),
    })
}

/// The success text, or the error message.
fn outcome(result: std::io::Result<&str>) -> String {
    match result {
        Ok(text) => text.to_string(),
        Err(error) => error.to_string(),
    }
}

export_step!(Hostile);
