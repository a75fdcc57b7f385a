//! The store's side of schedules: the writes the engine API and the
//! scheduler hand to either backend, and its answers. They are written by
//! `sql::schedules` and `sql::fires`.

use chrono::{DateTime, Utc};

use super::NewRun;
use crate::ids::{RunId, TenantId};
use crate::schedule::model::{FireOutcome, ScheduleId};

/// Pauses or resumes a schedule, if it has not changed since it was read.
#[derive(Debug, Clone)]
pub struct ScheduleChange {
    pub tenant_id: TenantId,
    pub id: ScheduleId,
    pub expected_revision: u64,
    pub now: DateTime<Utc>,
    pub paused: bool,
    pub pause_reason: Option<String>,
    pub next_fire_at: Option<DateTime<Utc>>,
}

/// Everything one scheduling decision writes, in one transaction: the
/// schedule's new state (conditional on `expected_revision`), a record per
/// fire (claimed under the unique `(schedule_id, scheduled_time)`), and the
/// runs of the fires that start.
#[derive(Debug, Clone)]
pub struct FireBatch {
    pub tenant_id: TenantId,
    pub schedule_id: ScheduleId,
    pub expected_revision: u64,
    pub now: DateTime<Utc>,
    pub next_fire_at: Option<DateTime<Utc>>,
    pub buffered_fire_at: Option<DateTime<Utc>>,
    pub fires: Vec<FireWrite>,
}

/// One fire of a [`FireBatch`].
#[derive(Debug, Clone)]
pub struct FireWrite {
    pub scheduled_time: DateTime<Utc>,
    pub outcome: FireOutcome,
    pub detail: Option<String>,
    /// For a fire that starts: its run (idempotency key
    /// `schedule:{id}:{time}`, `schedule_id` set).
    pub run: Option<NewRun>,
    /// The fire was buffered earlier: its record is updated, not inserted.
    pub from_buffer: bool,
    /// A manual trigger: it starts a run but has no fire record.
    pub manual: bool,
}

/// What became of a fire that was written.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedFire {
    pub scheduled_time: DateTime<Utc>,
    pub outcome: FireOutcome,
    pub run_id: Option<RunId>,
    pub manual: bool,
}

/// The store's answer to a [`FireBatch`].
#[derive(Debug, Clone, PartialEq)]
pub enum FireBatchAck {
    /// Written. A fire whose run found the workflow's concurrency key held
    /// (policy `reject`) is recorded as skipped.
    Applied(Vec<AppliedFire>),
    /// The schedule changed, or a fire was already claimed: nothing was
    /// written.
    Conflict,
    /// A manual trigger's run found the concurrency key held: nothing was
    /// written.
    KeyHeld { holder: RunId },
}
