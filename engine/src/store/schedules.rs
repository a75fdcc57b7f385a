//! The store's side of schedules: the writes the engine API and the
//! scheduler hand to either backend.

use chrono::{DateTime, Utc};

use super::{NewRun, Result};
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

/// The detail recorded for a fire skipped because the workflow's
/// concurrency key was held.
fn key_held_detail(key: Option<&str>) -> String {
    format!(
        "the workflow's concurrency key {:?} was held by another active run",
        key.unwrap_or_default()
    )
}

/// The statements a backend runs for [`write_batch`], inside one of its
/// transactions.
#[async_trait::async_trait]
pub(super) trait FireTx: Send {
    /// Moves the schedule to the batch's next fire and buffer and bumps its
    /// revision; false if the revision is no longer the expected one.
    async fn advance_schedule(&mut self, b: &FireBatch) -> Result<bool>;

    /// Inserts a run as `create_run` would.
    async fn insert_run(&mut self, new: &NewRun) -> Result<RunInserted>;

    /// Inserts the fire's record, or (`from_buffer`) turns its buffered
    /// record into the final one; false if it was already claimed.
    async fn write_fire(
        &mut self,
        b: &FireBatch,
        fire: &AppliedFire,
        detail: Option<&str>,
        from_buffer: bool,
    ) -> Result<bool>;

    /// Records the schedule's last started run.
    async fn set_last_fire(&mut self, b: &FireBatch, at: DateTime<Utc>, run: RunId) -> Result<()>;
}

/// What [`FireTx::insert_run`] did.
pub(super) enum RunInserted {
    Created,
    /// The run's idempotency key is taken.
    Duplicate,
    /// The workflow's concurrency key is held (policy `reject`); the
    /// holder, when the backend knows it already.
    KeyHeld {
        holder: Option<RunId>,
    },
}

/// What [`write_batch`] did. The caller commits only `Applied`.
pub(super) enum BatchWritten {
    Applied(Vec<AppliedFire>),
    Conflict,
    /// A manual trigger's run found its concurrency key held.
    KeyHeld {
        key: String,
        holder: Option<RunId>,
    },
}

/// Writes a [`FireBatch`] on `tx`: the schedule's revision check first (on
/// PostgreSQL it takes the row lock, so a competing writer waits and then
/// finds the revision moved), then per fire its run and its record under
/// the unique `(schedule_id, scheduled_time)`, then the last started run.
pub(super) async fn write_batch<T: FireTx>(tx: &mut T, b: &FireBatch) -> Result<BatchWritten> {
    if !tx.advance_schedule(b).await? {
        return Ok(BatchWritten::Conflict);
    }
    let mut applied = Vec::with_capacity(b.fires.len());
    let mut last = None;
    for f in &b.fires {
        let mut fire = AppliedFire {
            scheduled_time: f.scheduled_time,
            outcome: f.outcome,
            run_id: None,
            manual: f.manual,
        };
        let mut detail = f.detail.clone();
        if let Some(new) = &f.run {
            let key = new.concurrency.as_ref().map(|c| c.0.clone());
            match tx.insert_run(new).await? {
                RunInserted::Created => {
                    fire.run_id = Some(new.id);
                    last = Some((f.scheduled_time, new.id));
                }
                RunInserted::Duplicate => return Ok(BatchWritten::Conflict),
                RunInserted::KeyHeld { holder } if f.manual => {
                    return Ok(BatchWritten::KeyHeld {
                        key: key.unwrap_or_default(),
                        holder,
                    });
                }
                RunInserted::KeyHeld { .. } => {
                    fire.outcome = FireOutcome::Skipped;
                    detail = Some(key_held_detail(key.as_deref()));
                }
            }
        }
        if !f.manual
            && !tx
                .write_fire(b, &fire, detail.as_deref(), f.from_buffer)
                .await?
        {
            return Ok(BatchWritten::Conflict);
        }
        applied.push(fire);
    }
    if let Some((at, run)) = last {
        tx.set_last_fire(b, at, run).await?;
    }
    Ok(BatchWritten::Applied(applied))
}
