//! `cli-command`: a plain WASI command (it exports `wasi:cli/run`), which implements neither
//! flowhost world. The host's `plugin check` must reject it.

fn main() {
    println!("hello");
}
