//! The binary's client commands: runs, workflows, plugins, events and dead letters on a
//! running host, over its HTTP API. Each prints what it did, or one line saying why not
//! (exit status 1; 2 for a usage error, which clap reports).
//!
//! - [`client`]: the host's URL and tokens, requests, errors as one line;
//! - [`runs`]: `runs start | get | list | watch | journal | retry | cancel | signal`;
//! - [`registry`]: `workflows` and `plugins`;
//! - [`events`]: `events publish | subscriptions`, `dead-letters list | redeliver`;
//! - [`nodes`]: `nodes list`;
//! - [`replay`]: `replay RUN_ID`, a recorded run's attempts run again here;
//! - [`keys`]: `keys generate` and `plugins sign`, which need no host;
//! - [`step`]: `step run`, one step of a component, here and without a host;
//! - [`table`]: the tables they print.

pub mod client;
pub mod events;
pub mod keys;
pub mod nodes;
pub mod registry;
pub mod replay;
pub mod runs;
pub mod step;
pub mod table;

pub use self::client::{Client, Connection};
