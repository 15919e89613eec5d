//! Integration tests: real plugins built from `plugins/`, real loopback servers, the real
//! `flowhost` binary. One test binary, a module per area.

mod capabilities;
mod cli;
mod events;
mod hostile;
mod polyglot;
mod runtime;
mod sagas;
mod server;
mod support;
mod swap;
mod warm;
