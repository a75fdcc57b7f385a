//! The schedule as stored and as the API sees it: its id, its overlap and
//! catch-up policies, what became of each fire, and the error a refused
//! definition gets. No I/O.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::ids::ScheduleId;
use crate::ids::{RunId, TenantId};
use crate::run::state::RunState;

/// Why a schedule's definition was refused. The API answers
/// INVALID_ARGUMENT with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("invalid cron expression {expr:?}: {reason}")]
    InvalidCron { expr: String, reason: String },
    #[error(
        "unknown time zone {0:?}: use an IANA name such as \"Europe/Berlin\" (empty means UTC)"
    )]
    InvalidTimezone(String),
    #[error("invalid schedule name {0:?}: it must be 1 to 200 printable characters")]
    InvalidName(String),
    #[error("unknown {what} {value:?}")]
    UnknownValue { what: &'static str, value: String },
}

/// Checks a schedule's name: 1 to 200 printable characters, not blank.
pub fn check_name(name: &str) -> Result<(), ScheduleError> {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed.chars().count() > 200 || trimmed.chars().any(char::is_control)
    {
        return Err(ScheduleError::InvalidName(name.to_owned()));
    }
    Ok(())
}

/// What a fire does while the schedule's previous run is still active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OverlapPolicy {
    /// The fire is skipped (recorded, not run).
    #[default]
    Skip,
    /// Runs may overlap.
    Allow,
    /// At most one fire waits and starts when the active run ends; further
    /// fires meanwhile are skipped.
    BufferOne,
}

impl OverlapPolicy {
    pub const ALL: [OverlapPolicy; 3] = [Self::Skip, Self::Allow, Self::BufferOne];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "SKIP",
            Self::Allow => "ALLOW",
            Self::BufferOne => "BUFFER_ONE",
        }
    }
}

/// What happens to fires that fell due while no scheduler ran (older than
/// the scheduler's catch-up grace when it finds them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CatchupPolicy {
    /// They are recorded as missed and not run.
    None,
    /// The latest of them runs once; the others are recorded as missed.
    #[default]
    One,
    /// Every one runs, oldest first (still subject to the overlap policy).
    All,
}

impl CatchupPolicy {
    pub const ALL: [CatchupPolicy; 3] = [Self::None, Self::One, Self::All];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::One => "ONE",
            Self::All => "ALL",
        }
    }
}

/// What became of one fire of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FireOutcome {
    /// A run was started.
    Started,
    /// Not run: the previous run was still active (or the buffer was full,
    /// or the workflow's concurrency key was held).
    Skipped,
    /// Not run: it fell due while no scheduler ran and the catch-up policy
    /// dropped it.
    Missed,
    /// Waiting for the active run to end (overlap BUFFER_ONE).
    Buffered,
}

impl FireOutcome {
    pub const ALL: [FireOutcome; 4] = [Self::Started, Self::Skipped, Self::Missed, Self::Buffered];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Skipped => "skipped",
            Self::Missed => "missed",
            Self::Buffered => "buffered",
        }
    }
}

macro_rules! parse_by_name {
    ($ty:ty, $what:literal) => {
        impl FromStr for $ty {
            type Err = ScheduleError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .into_iter()
                    .find(|v| v.as_str().eq_ignore_ascii_case(s))
                    .ok_or_else(|| ScheduleError::UnknownValue {
                        what: $what,
                        value: s.to_owned(),
                    })
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

parse_by_name!(OverlapPolicy, "overlap policy");
parse_by_name!(CatchupPolicy, "catch-up policy");
parse_by_name!(FireOutcome, "fire outcome");

/// A schedule, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub id: ScheduleId,
    pub tenant_id: TenantId,
    /// Unique per tenant.
    pub name: String,
    /// Five fields, e.g. `0 2 * * *`.
    pub cron: String,
    /// IANA name (`UTC` when none was given).
    pub timezone: String,
    pub workflow_name: String,
    /// The input of every run it starts (a JSON object).
    pub input: Value,
    pub paused: bool,
    pub pause_reason: Option<String>,
    pub overlap_policy: OverlapPolicy,
    pub catchup_policy: CatchupPolicy,
    /// The next regular fire not yet handled; none: it never fires again.
    pub next_fire_at: Option<DateTime<Utc>>,
    /// When the last run it started was due (a trigger counts).
    pub last_fire_at: Option<DateTime<Utc>>,
    pub last_workflow_id: Option<RunId>,
    /// A fire waiting for the active run to end (BUFFER_ONE).
    pub buffered_fire_at: Option<DateTime<Utc>>,
    /// Bumped by every write; writes are conditional on it.
    pub revision: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The state of `last_workflow_id`'s run when the schedule was read.
    pub last_run_state: Option<RunState>,
}

impl Schedule {
    /// Whether the last run it started is still active (not terminal).
    pub fn last_run_active(&self) -> bool {
        self.last_run_state.is_some_and(|s| !s.is_terminal())
    }
}

/// One recorded fire of a schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct FireRecord {
    pub schedule_id: ScheduleId,
    pub scheduled_time: DateTime<Utc>,
    pub outcome: FireOutcome,
    pub run_id: Option<RunId>,
    pub detail: Option<String>,
    /// When the outcome was recorded.
    pub at: DateTime<Utc>,
}

/// The idempotency key of the run a regular fire starts.
pub fn fire_key(id: ScheduleId, scheduled_time: DateTime<Utc>) -> String {
    format!(
        "schedule:{id}:{}",
        scheduled_time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in OverlapPolicy::ALL {
            assert_eq!(p.as_str().parse::<OverlapPolicy>().unwrap(), p);
        }
        for p in CatchupPolicy::ALL {
            assert_eq!(p.as_str().parse::<CatchupPolicy>().unwrap(), p);
        }
        for o in FireOutcome::ALL {
            assert_eq!(o.as_str().parse::<FireOutcome>().unwrap(), o);
        }
        assert!("sometimes".parse::<OverlapPolicy>().is_err());
    }

    #[test]
    fn fire_keys_name_the_schedule_and_time() {
        let id: ScheduleId = "01900000-0000-7000-8000-000000000000".parse().unwrap();
        let t = DateTime::parse_from_rfc3339("2026-03-29T01:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            fire_key(id, t),
            "schedule:01900000-0000-7000-8000-000000000000:2026-03-29T01:00:00Z"
        );
    }
}
