//! Retention as the store sees it: which finished runs to delete
//! ([`RunPurge`]), what one batch deleted ([`Purged`]), and
//! [`RetentionStore`], the deletes of runs (with their events, signals and
//! webhook deliveries) and of schedule fires, one short transaction per
//! batch. Only terminal runs are ever deleted: FAILED and
//! COMPENSATION_FAILED runs wait for an operator and are kept however old.
//! On PostgreSQL `run_events` is partitioned by day: [`EventRows`] says
//! whether a purge leaves the events in daily partitions to
//! [`RetentionStore::drop_event_day`], which drops a whole day at once.
//! [`Pace`] is how retention spaces its writes so that it takes a bounded
//! share of the database from the runs in flight.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::Result;
use crate::ids::TenantId;

/// Which workflows of the tenant a purge covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkflowScope {
    /// Only this workflow's runs.
    Only(String),
    /// Every workflow's runs except these (the ones with their own age).
    AllExcept(Vec<String>),
}

/// One batch of a purge: the tenant's terminal runs of `scope` that
/// finished before `finished_before` (and at or after `from`), oldest
/// first, at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPurge {
    pub tenant: TenantId,
    pub scope: WorkflowScope,
    pub finished_before: DateTime<Utc>,
    /// Where the previous batch of the same purge ended ([`Purged::last_finished`]):
    /// the index is read from there, not again over the entries of the
    /// runs it deleted (dead until vacuumed).
    pub from: Option<DateTime<Utc>>,
    pub limit: u32,
    /// Which of the runs' events the batch deletes.
    pub events: EventRows,
}

/// Which events of the purged runs a batch deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventRows {
    /// All of them (SQLite always; PostgreSQL when no day is dropped).
    All,
    /// On PostgreSQL only those outside the daily partitions (in the
    /// default one): the rest go with their day's partition. SQLite has no
    /// partitions and deletes them all.
    OutsideDailyPartitions,
}

/// A partition of a day of events replaced: the events it held and those
/// of runs still stored, kept in a kept day's partition (0: none needed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedDay {
    pub partition: String,
    pub events: u64,
    pub moved: u64,
    /// The time the partitioned table was locked exclusively (detach,
    /// attach), in milliseconds.
    pub locked_ms: u64,
    /// The paced copy of the kept events, its rests included, in
    /// milliseconds.
    pub copy_ms: u64,
    /// The kept day's CHECK constraint and primary key, in milliseconds.
    pub index_ms: u64,
    /// The old day's `DROP TABLE` after the swap, in milliseconds.
    pub drop_ms: u64,
}

/// What one batch deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub runs: u64,
    pub events: u64,
    pub signals: u64,
    pub deliveries: u64,
    /// When the last run deleted finished: the next batch's
    /// [`RunPurge::from`].
    pub last_finished: Option<DateTime<Utc>>,
}

/// How retention spaces its work: after each batch (a transaction of
/// deletes, a chunk of a day's kept events copied) that took `t`, it
/// pauses `t × (100 − busy_percent) / busy_percent`, so that it is busy at
/// most `busy_percent` % of the time and the WAL it writes comes in short
/// bursts the runs' commits are not queued behind for long. 100 never
/// pauses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    busy_percent: u32,
}

impl Pace {
    /// No pauses: as fast as the database goes.
    pub const FULL: Pace = Pace { busy_percent: 100 };

    /// The longest single pause, whatever a batch took.
    const MAX_PAUSE: Duration = Duration::from_secs(30);

    /// Busy at most `busy_percent` % of the time (clamped to 1–100).
    pub fn new(busy_percent: u32) -> Self {
        Self {
            busy_percent: busy_percent.clamp(1, 100),
        }
    }

    pub fn busy_percent(&self) -> u32 {
        self.busy_percent
    }

    /// The pause after a batch that took `took`.
    pub fn pause_after(&self, took: Duration) -> Duration {
        let idle = 100 - self.busy_percent;
        (took * idle / self.busy_percent).min(Self::MAX_PAUSE)
    }

    /// Waits the pause after a batch that took `took`.
    pub async fn rest(&self, took: Duration) {
        let pause = self.pause_after(took);
        if !pause.is_zero() {
            tokio::time::sleep(pause).await; // the pacing itself, not a wait for an event
        }
    }
}

/// Deleting what retention no longer keeps, in batches: each call is one
/// short transaction that touches only rows no live run writes.
#[async_trait]
pub trait RetentionStore: Send + Sync + 'static {
    /// Deletes one batch of finished runs with their events, signals and
    /// webhook deliveries.
    async fn purge_runs(&self, p: &RunPurge) -> Result<Purged>;

    /// Deletes up to `limit` of the tenant's schedule fires scheduled
    /// before `before`; returns how many.
    async fn purge_fires(
        &self,
        tenant: &TenantId,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64>;

    /// Creates the daily event partitions from `today` to `ahead` days
    /// after it that are missing; returns how many it created (always 0
    /// on SQLite, which has none).
    async fn add_event_days(&self, today: chrono::NaiveDate, ahead: u32) -> Result<u32>;

    /// Drops the oldest daily event partition if it ends at or before
    /// `before`; the events in it of runs still stored (not yet purged:
    /// unresolved, kept longer, still active) stay, in a kept day's
    /// partition, copied in chunks spaced by `pace`. `None` when there is
    /// no such day, or another replica is dropping one (always on SQLite).
    async fn drop_event_day(&self, before: DateTime<Utc>, pace: Pace)
    -> Result<Option<DroppedDay>>;

    /// Rewrites the kept days whose runs are not all stored any more, and
    /// drops those none of whose runs is; returns what it replaced (always
    /// empty on SQLite, or when another replica is at it).
    async fn recheck_kept_days(&self, pace: Pace) -> Result<Vec<DroppedDay>>;
}

impl std::fmt::Debug for dyn RetentionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetentionStore")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pace_pauses_in_proportion_to_the_work() {
        let t = Duration::from_millis(100);
        assert_eq!(Pace::FULL.pause_after(t), Duration::ZERO);
        assert_eq!(Pace::new(25).pause_after(t), Duration::from_millis(300));
        assert_eq!(Pace::new(50).pause_after(t), Duration::from_millis(100));
        assert_eq!(Pace::new(0).busy_percent(), 1, "clamped");
        assert_eq!(
            Pace::new(1).pause_after(Duration::from_secs(5)),
            Pace::MAX_PAUSE
        );
    }
}
