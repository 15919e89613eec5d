//! `flowhost:plugin/log`: guest log lines into `tracing`, tagged with plugin, run and step.
//!
//! Logging never fails a guest; a line over [`MAX_MESSAGE_BYTES`] is cut at a character
//! boundary and marked, so that a guest cannot flood the host's logs with one call.

mod host;

use std::sync::Arc;

pub use crate::bindings::log::Level;

/// The longest message kept, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// Per-call state of the log capability: who is logging.
pub struct LogCtx {
    plugin: Arc<str>,
    run_id: Option<Arc<str>>,
    step: Option<Arc<str>>,
}

impl LogCtx {
    /// State for one call of `plugin`, for `step` of `run_id` when it serves a saga.
    pub fn new(plugin: Arc<str>, run_id: Option<Arc<str>>, step: Option<Arc<str>>) -> Self {
        Self {
            plugin,
            run_id,
            step,
        }
    }

    /// Emits one `tracing` event with target `flowhost::plugin`.
    pub fn log(&self, level: Level, message: &str) {
        let message = truncate(message);
        let plugin = &*self.plugin;
        let run_id = self.run_id.as_deref().unwrap_or("");
        let step = self.step.as_deref().unwrap_or("");
        macro_rules! emit {
            ($level:expr) => {
                tracing::event!(target: "flowhost::plugin", $level, plugin, run_id, step, "{message}")
            };
        }
        match level {
            Level::Trace => emit!(tracing::Level::TRACE),
            Level::Debug => emit!(tracing::Level::DEBUG),
            Level::Info => emit!(tracing::Level::INFO),
            Level::Warn => emit!(tracing::Level::WARN),
            Level::Error => emit!(tracing::Level::ERROR),
        }
    }
}

/// `message` cut to [`MAX_MESSAGE_BYTES`] at a character boundary, with a marker saying
/// how much was dropped.
pub fn truncate(message: &str) -> std::borrow::Cow<'_, str> {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message.into();
    }
    let cut = message.floor_char_boundary(MAX_MESSAGE_BYTES);
    format!(
        "{}… [truncated {} bytes]",
        &message[..cut],
        message.len() - cut
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_at_a_char_boundary() {
        assert_eq!(truncate("short"), "short");
        let long = "é".repeat(MAX_MESSAGE_BYTES); // two bytes each
        let cut = truncate(&long);
        assert!(cut.len() < MAX_MESSAGE_BYTES + 40, "{}", cut.len());
        assert!(cut.ends_with(&format!(
            "[truncated {} bytes]",
            long.len() - MAX_MESSAGE_BYTES
        )));
    }
}
