//! Logging into the host's structured logs, tagged with the plugin, run and step.
//!
//! Functions take a message (`log::info("reserved")`); the macros of the same names format
//! one (`log::info!("reserved {id}")`). A message over the host's cap (4 KiB) is cut; logging
//! never fails.

use crate::bindings::flowhost::plugin::log as raw;

pub use raw::Level;

/// Writes `message` at `level`.
pub fn log(level: Level, message: &str) {
    raw::log(level, message);
}

/// Writes `message` at trace level.
pub fn trace(message: &str) {
    raw::log(Level::Trace, message);
}

/// Writes `message` at debug level.
pub fn debug(message: &str) {
    raw::log(Level::Debug, message);
}

/// Writes `message` at info level.
pub fn info(message: &str) {
    raw::log(Level::Info, message);
}

/// Writes `message` at warn level.
pub fn warn(message: &str) {
    raw::log(Level::Warn, message);
}

/// Writes `message` at error level.
pub fn error(message: &str) {
    raw::log(Level::Error, message);
}

#[doc(hidden)]
#[macro_export]
macro_rules! __flowhost_log {
    ($level:ident, $($arg:tt)+) => {
        $crate::log::log($crate::log::Level::$level, &::std::format!($($arg)+))
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __flowhost_trace {
    ($($arg:tt)+) => { $crate::__flowhost_log!(Trace, $($arg)+) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __flowhost_debug {
    ($($arg:tt)+) => { $crate::__flowhost_log!(Debug, $($arg)+) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __flowhost_info {
    ($($arg:tt)+) => { $crate::__flowhost_log!(Info, $($arg)+) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __flowhost_warn {
    ($($arg:tt)+) => { $crate::__flowhost_log!(Warn, $($arg)+) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __flowhost_error {
    ($($arg:tt)+) => { $crate::__flowhost_log!(Error, $($arg)+) };
}

/// Formats a message and writes it at debug level: `log::debug!("{x}")`.
pub use crate::__flowhost_debug as debug;
/// Formats a message and writes it at error level: `log::error!("{x}")`.
pub use crate::__flowhost_error as error;
/// Formats a message and writes it at info level: `log::info!("{x}")`.
pub use crate::__flowhost_info as info;
/// Formats a message and writes it at trace level: `log::trace!("{x}")`.
pub use crate::__flowhost_trace as trace;
/// Formats a message and writes it at warn level: `log::warn!("{x}")`.
pub use crate::__flowhost_warn as warn;
