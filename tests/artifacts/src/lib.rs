//! Paths of the plugin components built from `plugins/` by this crate's build script, one
//! constant per component (`NOOP`, `PROBE`, `HOSTILE`, `VALIDATE_USER`, ...).

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
