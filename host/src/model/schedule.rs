//! Cron schedules of workflows (`schedule = "0 0 2 * * *"`): when each firing is due, and
//! which of those missed while the host was down to fire (`catch-up`).
//!
//! Patterns are parsed by `croner` (seconds optional: six fields start with seconds, five
//! do not) and evaluated in the schedule's time zone (`schedule-timezone`, IANA names,
//! default UTC), so `0 0 2 * * *` in `Europe/Paris` is 02:00 there across daylight-saving
//! changes. Pure computation: times in and out are ms since the Unix epoch.

use std::str::FromStr;

use chrono::TimeZone;
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::{Deserialize, Serialize};

/// The most missed firings one look starts (`catch-up = "all"`); the rest follow at the
/// next.
pub const MAX_CATCH_UP: usize = 100;

/// Firings missed while the host was down (due before it came up).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum CatchUp {
    /// Skipped. The default.
    #[default]
    None,
    /// Only the latest fires.
    Latest,
    /// Each fires, oldest first.
    All,
}

/// A schedule, parsed.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    zone: chrono_tz::Tz,
    catch_up: CatchUp,
}

impl Schedule {
    /// Parses `pattern` in `zone` (default UTC); the error says what is wrong.
    pub fn new(pattern: &str, zone: Option<&str>, catch_up: CatchUp) -> Result<Self, String> {
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(pattern)
            .map_err(|e| format!("`{pattern}` is not a cron pattern: {e}"))?;
        let zone = match zone {
            None => chrono_tz::UTC,
            Some(name) => chrono_tz::Tz::from_str(name)
                .map_err(|_| format!("`{name}` is not an IANA time zone"))?,
        };
        let schedule = Self {
            cron,
            zone,
            catch_up,
        };
        if schedule.after(0).is_none() {
            return Err(format!("`{pattern}` never fires"));
        }
        Ok(schedule)
    }

    /// The first firing strictly after `ms`.
    pub fn after(&self, ms: u64) -> Option<u64> {
        let from = self.zone.timestamp_millis_opt(ms as i64).single()?;
        let next = self.cron.find_next_occurrence(&from, false).ok()?;
        u64::try_from(next.timestamp_millis()).ok()
    }

    /// The last firing at or before `ms`.
    fn at_or_before(&self, ms: u64) -> Option<u64> {
        let from = self.zone.timestamp_millis_opt(ms as i64).single()?;
        let previous = self.cron.find_previous_occurrence(&from, true).ok()?;
        u64::try_from(previous.timestamp_millis()).ok()
    }

    /// The firings to start now, oldest first, given that every firing up to `mark` was
    /// started and the host has been up since `up_ms`: those due since it came up, and of
    /// those due before (missed while it was down) what `catch-up` says.
    pub fn due(&self, mark: u64, up_ms: u64, now: u64) -> Vec<u64> {
        let recent_from = mark.max(up_ms.saturating_sub(1).min(now));
        let mut due = Vec::new();
        match self.catch_up {
            CatchUp::None => {}
            CatchUp::Latest => {
                if let Some(latest) = self.at_or_before(recent_from)
                    && latest > mark
                {
                    due.push(latest);
                }
            }
            CatchUp::All => {
                let mut at = mark;
                while due.len() < MAX_CATCH_UP
                    && let Some(next) = self.after(at)
                    && next <= recent_from
                {
                    due.push(next);
                    at = next;
                }
                if due.len() == MAX_CATCH_UP {
                    return due;
                }
            }
        }
        let mut at = recent_from;
        while let Some(next) = self.after(at)
            && next <= now
        {
            due.push(next);
            at = next;
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-01T00:00:00Z.
    const DAY: u64 = 1_796_083_200_000;

    #[test]
    fn a_daily_schedule_fires_at_its_time_in_its_zone() {
        let utc = Schedule::new("0 0 2 * * *", None, CatchUp::None).unwrap();
        assert_eq!(utc.after(DAY), Some(DAY + 2 * 3_600_000));
        // Paris is UTC+1 in December: 02:00 there is 01:00 UTC.
        let paris = Schedule::new("0 0 2 * * *", Some("Europe/Paris"), CatchUp::None).unwrap();
        assert_eq!(paris.after(DAY), Some(DAY + 3_600_000));
        assert!(Schedule::new("0 0 25 * * *", None, CatchUp::None).is_err());
        assert!(
            Schedule::new("0 0 2 * * *", Some("Mars/Olympus"), CatchUp::None)
                .unwrap_err()
                .contains("IANA")
        );
    }

    #[test]
    fn missed_firings_follow_catch_up_and_due_ones_always_fire() {
        let hourly = |catch_up| Schedule::new("0 0 * * * *", None, catch_up).unwrap();
        let hour = 3_600_000;
        // Down from 00:30 to 04:59: 01:00 .. 04:00 were missed, 05:00 is due.
        let (mark, up, now) = (
            DAY + hour / 2,
            DAY + 5 * hour - 60_000,
            DAY + 5 * hour + 3_000,
        );
        assert_eq!(hourly(CatchUp::None).due(mark, up, now), [DAY + 5 * hour]);
        assert_eq!(
            hourly(CatchUp::Latest).due(mark, up, now),
            [DAY + 4 * hour, DAY + 5 * hour]
        );
        assert_eq!(
            hourly(CatchUp::All).due(mark, up, now),
            (1..=5).map(|h| DAY + h * hour).collect::<Vec<_>>()
        );
        // Nothing since the mark: nothing to do.
        assert!(hourly(CatchUp::All).due(DAY + 5 * hour, up, now).is_empty());
        // Up all along, however late a look comes (a busy host), nothing is missed.
        assert_eq!(hourly(CatchUp::None).due(mark, DAY, now).len(), 5);
    }
}
