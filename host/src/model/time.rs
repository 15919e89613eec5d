//! Time: the [`Clock`] the engine reads, injected so that backoffs and timers can be tested
//! without sleeping (STYLE.md §5), and the formats the API shows.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock time in milliseconds since the Unix epoch. The engine stamps journal entries
/// and computes due times with it; tests pass a clock they move by hand.
pub trait Clock: Send + Sync {
    /// Now, ms since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

/// Milliseconds since the Unix epoch, now, by the system's clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `ms` since the Unix epoch as RFC 3339 with milliseconds, UTC: how the API and
/// CloudEvents show times.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}
