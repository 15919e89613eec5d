//! The retry policy of saga steps, event deliveries and service calls: exponential backoff,
//! capped, with jitter.
//!
//! Jitter comes from a *seed* the caller chooses instead of a random number generator. A
//! step's seed is derived from its run, step, direction and attempt, so the delay before an
//! attempt is the same however often it is computed — before a crash and after it — and the
//! engine can recompute a durable wait's due time from the journal alone, while runs that
//! failed at the same moment still spread apart. A service call, which never outlives its
//! attempt, passes a random seed.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How often and how patiently a failed attempt is tried again.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts in all, the first included. Default 3.
    pub attempts: u32,
    /// Delay before the first retry; it doubles per retry. Default 100 ms.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub initial_backoff: Duration,
    /// Longest delay between attempts. Default 5 s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub max_backoff: Duration,
    /// How much of each delay is random, 0 to 1: a delay `d` becomes one drawn from
    /// `[d × (1 - jitter), d]`. Default 0.5; 0 makes delays exact.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            jitter: 0.5,
        }
    }
}

/// A policy that does not make sense; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidPolicy {
    /// The field, as in the configuration (`attempts`, `jitter`, ...).
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl RetryPolicy {
    /// Checks the ranges serde cannot.
    pub fn validate(&self) -> Result<(), InvalidPolicy> {
        let invalid = |field, reason| Err(InvalidPolicy { field, reason });
        if self.attempts == 0 {
            return invalid("attempts", "must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return invalid("jitter", "must be between 0 and 1");
        }
        if self.initial_backoff > self.max_backoff {
            return invalid("initial-backoff", "must not exceed max-backoff");
        }
        Ok(())
    }

    /// The delay before attempt `next` (2 for the first retry) without jitter: exponential,
    /// capped at `max-backoff`.
    pub fn backoff(&self, next: u32) -> Duration {
        let doublings = next.saturating_sub(2).min(20);
        self.initial_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff)
    }

    /// The delay before attempt `next`, with jitter: `seed` picks a point in
    /// `[d × (1 - jitter), d]` where `d` is [`Self::backoff`]. The same seed gives the same
    /// delay.
    pub fn delay(&self, next: u32, seed: u64) -> Duration {
        let full = self.backoff(next);
        // The top 53 bits of the seed as a fraction in [0, 1).
        let unit = (seed >> 11) as f64 / (1u64 << 53) as f64;
        full.mul_f64(1.0 - self.jitter * unit)
    }
}

/// A seed for [`RetryPolicy::delay`] from what an attempt is about: FNV-1a over `parts`,
/// stable across processes and releases (unlike `std`'s hasher).
pub fn seed(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(&[0xff]) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    // FNV's low bits mix poorly; fold the high half in before the top bits are used.
    hash ^ (hash >> 29).wrapping_mul(0xbf58_476d_1ce4_e5b9)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: f64) -> RetryPolicy {
        RetryPolicy {
            attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            jitter,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = policy(0.0);
        assert_eq!(policy.backoff(2), Duration::from_millis(100));
        assert_eq!(policy.backoff(3), Duration::from_millis(200));
        assert_eq!(policy.backoff(4), Duration::from_millis(350));
        assert_eq!(policy.backoff(40), Duration::from_millis(350));
        assert_eq!(policy.delay(3, 12345), Duration::from_millis(200));
    }

    #[test]
    fn jitter_spreads_delays_within_its_band_and_repeats_for_a_seed() {
        let policy = policy(0.5);
        let delays: Vec<Duration> = (0..200u32)
            .map(|i| policy.delay(3, seed(&[b"run", &i.to_be_bytes()])))
            .collect();
        assert!(
            delays
                .iter()
                .all(|d| (Duration::from_millis(100)..=Duration::from_millis(200)).contains(d)),
            "{delays:?}"
        );
        let mut distinct = delays.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() > 150, "runs spread apart: {distinct:?}");
        let below_middle = delays
            .iter()
            .filter(|d| **d < Duration::from_millis(150))
            .count();
        assert!((60..140).contains(&below_middle), "{below_middle} of 200");
        let again = policy.delay(3, seed(&[b"run", &7u32.to_be_bytes()]));
        assert_eq!(again, delays[7], "the same seed, the same delay");
    }

    #[test]
    fn nonsense_is_refused_by_field() {
        let mut bad = policy(1.5);
        assert_eq!(bad.validate().unwrap_err().field, "jitter");
        bad.jitter = 0.0;
        bad.attempts = 0;
        assert_eq!(bad.validate().unwrap_err().field, "attempts");
        assert!(policy(1.0).validate().is_ok());
    }
}
