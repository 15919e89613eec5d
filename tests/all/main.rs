//! Integration tests: real plugins built from `plugins/`, real loopback servers, the real
//! `flowhost` binary. One test binary, a module per area.

mod bounds;
mod capabilities;
mod children;
mod cli;
mod cluster;
mod console;
mod consul;
mod definitions;
mod discovery;
mod events;
mod faults;
mod hostile;
mod inprocess;
mod layers;
mod openapi;
mod parallel;
mod polyglot;
mod postgres;
mod races;
mod recording;
mod runtime;
mod sagas;
mod server;
mod signing;
mod step;
mod support;
mod swap;
mod telemetry;
mod templates;
mod traces;
mod versions;
mod visibility;
mod warm;
mod workflows;
