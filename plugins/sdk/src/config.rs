//! The plugin's own settings, from the `[plugins.<name>.config]` table of the host
//! configuration. Read-only; a plugin sees only its own.

use crate::bindings::flowhost::plugin::config as raw;

/// The value of `key`, or `None` when the configuration does not set it.
pub fn get(key: &str) -> Option<String> {
    raw::get(key)
}
