//! Cron arithmetic: a five-field expression evaluated in an IANA time zone.
//!
//! - Five standard fields (`minute hour day-of-month month day-of-week`);
//!   seconds and years are refused. Day of week is POSIX: 0 or 7 is Sunday,
//!   1 is Monday. Names (`MON`, `JAN`), ranges, lists, steps and croner's
//!   `L`, `W` and `#` are accepted.
//! - Times are computed on the zone's wall clock and returned as instants:
//!   - a local time that does not exist (the clock springs forward over it)
//!     fires once, at the first valid instant after the gap (a 02:30 job on a
//!     day whose clock jumps from 02:00 to 03:00 fires at 03:00);
//!   - a local time that happens twice (the clock falls back) fires once, on
//!     its first pass, for a job with a fixed hour (`0 2 * * *`); a job whose
//!     hour is a wildcard or a step (`*/5 * * * *`) keeps its rhythm in real
//!     time, so every matching instant fires once and none fires twice.

use std::fmt;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use super::ScheduleError;

/// A validated cron expression with its time zone. Evaluation is croner's,
/// on the zone's wall clock; the tests below pin the DST behaviour.
#[derive(Clone)]
pub struct CronSpec {
    expr: String,
    zone: Tz,
    cron: Cron,
}

impl fmt::Debug for CronSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CronSpec")
            .field("expr", &self.expr)
            .field("zone", &self.zone.name())
            .finish()
    }
}

/// How far ahead a search for the next fire looks before deciding that an
/// expression never fires (`0 0 30 2 *`).
const SEARCH_YEARS: i64 = 8;

impl CronSpec {
    /// Parses `expr` in `timezone` (an IANA name; empty means UTC).
    pub fn parse(expr: &str, timezone: &str) -> Result<Self, ScheduleError> {
        let zone = parse_zone(timezone)?;
        let expr = expr.split_whitespace().collect::<Vec<_>>().join(" ");
        let fields = expr.split(' ').filter(|f| !f.is_empty()).count();
        if fields != 5 {
            return Err(ScheduleError::InvalidCron {
                expr,
                reason: format!(
                    "expected five fields (minute hour day-of-month month day-of-week), got {fields}"
                ),
            });
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(&expr)
            .map_err(|e| ScheduleError::InvalidCron {
                expr: expr.clone(),
                reason: e.to_string(),
            })?;
        let spec = Self { expr, zone, cron };
        // An expression that matches no date (30 February) is refused now
        // rather than silently never firing.
        let probe = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::days(365 * 56);
        if spec.next_after(probe).is_none() {
            return Err(ScheduleError::InvalidCron {
                expr: spec.expr,
                reason: "it matches no date".into(),
            });
        }
        Ok(spec)
    }

    /// The expression, with its fields separated by single spaces.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The zone's IANA name (`UTC` when none was given).
    pub fn timezone(&self) -> &str {
        self.zone.name()
    }

    /// The first fire strictly after `after`; none if there is none within
    /// the next years.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.zone);
        let found = self.cron.find_next_occurrence(&local, false).ok()?;
        let found = found.with_timezone(&Utc);
        (found - after <= chrono::Duration::days(365 * SEARCH_YEARS)).then_some(found)
    }

    /// The fires in `(after, until]`, oldest first, at most `limit`.
    pub fn fires_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut t = after;
        while out.len() < limit {
            match self.next_after(t) {
                Some(n) if n <= until => {
                    out.push(n);
                    t = n;
                }
                _ => break,
            }
        }
        out
    }
}

/// Parses an IANA zone name; empty means UTC.
pub fn parse_zone(timezone: &str) -> Result<Tz, ScheduleError> {
    let name = timezone.trim();
    if name.is_empty() {
        return Ok(Tz::UTC);
    }
    name.parse::<Tz>()
        .map_err(|_| ScheduleError::InvalidTimezone(name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn fires(expr: &str, zone: &str, from: &str, n: usize) -> Vec<String> {
        let spec = CronSpec::parse(expr, zone).unwrap();
        let mut t = utc(from);
        (0..n)
            .map(|_| {
                t = spec.next_after(t).unwrap();
                t.to_rfc3339()
            })
            .collect()
    }

    #[test]
    fn daily_in_utc() {
        assert_eq!(
            fires("0 2 * * *", "", "2026-03-28T12:00:00Z", 3),
            [
                "2026-03-29T02:00:00+00:00",
                "2026-03-30T02:00:00+00:00",
                "2026-03-31T02:00:00+00:00"
            ]
        );
    }

    #[test]
    fn daily_in_berlin_across_spring_forward() {
        // 2026-03-29 02:00 CET does not exist: the clock jumps to 03:00 CEST
        // (01:00 UTC). The fire happens once, at the end of the gap.
        assert_eq!(
            fires("0 2 * * *", "Europe/Berlin", "2026-03-27T12:00:00Z", 3),
            [
                "2026-03-28T01:00:00+00:00",
                "2026-03-29T01:00:00+00:00",
                "2026-03-30T00:00:00+00:00"
            ]
        );
        assert_eq!(
            fires("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", 2),
            ["2026-03-29T01:00:00+00:00", "2026-03-30T00:30:00+00:00"]
        );
    }

    #[test]
    fn daily_in_berlin_across_fall_back() {
        // 2026-10-25 02:00 happens twice (CEST, then CET): it fires once.
        assert_eq!(
            fires("0 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 3),
            [
                "2026-10-25T00:00:00+00:00",
                "2026-10-26T01:00:00+00:00",
                "2026-10-27T01:00:00+00:00"
            ]
        );
        assert_eq!(
            fires("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]
        );
    }

    #[test]
    fn every_five_minutes_keeps_real_time_across_both_changes() {
        for (zone, from) in [
            ("", "2026-03-29T00:00:00Z"),
            ("Europe/Berlin", "2026-03-29T00:00:00Z"),
            ("Europe/Berlin", "2026-10-24T23:00:00Z"),
        ] {
            let spec = CronSpec::parse("*/5 * * * *", zone).unwrap();
            let got = spec.fires_between(utc(from), utc(from) + chrono::Duration::hours(3), 100);
            assert_eq!(got.len(), 36, "{zone} from {from}");
            for w in got.windows(2) {
                assert_eq!(w[1] - w[0], chrono::Duration::minutes(5), "{zone}: {w:?}");
            }
        }
    }

    #[test]
    fn posix_day_of_week() {
        // 2026-03-29 is a Sunday: 0 and 7 both name it, 1 is Monday.
        assert_eq!(
            fires("0 9 * * 0", "", "2026-03-27T00:00:00Z", 1),
            ["2026-03-29T09:00:00+00:00"]
        );
        assert_eq!(
            fires("0 9 * * 7", "", "2026-03-27T00:00:00Z", 1),
            ["2026-03-29T09:00:00+00:00"]
        );
        assert_eq!(
            fires("0 9 * * 1", "", "2026-03-27T00:00:00Z", 1),
            ["2026-03-30T09:00:00+00:00"]
        );
    }

    #[test]
    fn invalid_expressions_and_zones_name_the_problem() {
        for (expr, zone, needle) in [
            ("0 2 * *", "", "five fields"),
            ("0 0 2 * * *", "", "five fields"),
            ("@daily", "", "five fields"),
            ("61 * * * *", "", "61 * * * *"),
            ("* 25 * * *", "", "invalid cron expression"),
            ("0 0 30 2 *", "", "matches no date"),
            ("a b c d e", "", "invalid cron expression"),
            ("0 2 * * *", "Mars/Olympus", "Mars/Olympus"),
        ] {
            let e = CronSpec::parse(expr, zone).unwrap_err().to_string();
            assert!(e.contains(needle), "{expr:?} {zone:?}: {e}");
        }
        assert_eq!(
            CronSpec::parse("0  2 * * *", " ").unwrap().expr(),
            "0 2 * * *"
        );
        assert_eq!(CronSpec::parse("0 2 * * *", "").unwrap().timezone(), "UTC");
    }
}
