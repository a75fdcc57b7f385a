//! A scheduling decision ([`FireBatch`]) written in one transaction, on
//! either backend: the schedule's update, fenced by its revision, comes
//! first (on PostgreSQL it takes the row lock, so a competing replica waits
//! and then finds the revision moved), then per fire its run (through the
//! backend's own run insert, [`FireTx::insert_run`]) and its record under
//! the unique `(schedule_id, scheduled_time)`, then the last started run.

use chrono::{DateTime, Utc};

use super::{Conn, Db, Dialect, key_holder, with_db};
use crate::ids::RunId;
use crate::schedule::model::FireOutcome;
use crate::store::{AppliedFire, FireBatch, FireBatchAck, NewRun, Result};

/// A backend's connection inside the transaction of [`write_batch`]: the
/// run insert is the backend's own (the one `create_run` uses); the
/// schedule's statements are the shared ones below.
#[async_trait::async_trait]
pub(crate) trait FireTx: Send {
    /// The connection, for the shared statements.
    fn conn(&mut self) -> Conn<'_>;

    /// Inserts a run as `create_run` would.
    async fn insert_run(&mut self, new: &NewRun) -> Result<RunInserted>;
}

/// What [`FireTx::insert_run`] did.
pub(crate) enum RunInserted {
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
enum BatchWritten {
    Applied(Vec<AppliedFire>),
    Conflict,
    /// A manual trigger's run found its concurrency key held.
    KeyHeld {
        key: String,
        holder: Option<RunId>,
    },
}

/// Writes `b` in one transaction on `db` (see the module comment).
pub(super) async fn apply(db: Db<'_>, b: &FireBatch) -> Result<FireBatchAck> {
    let written = with_db!(db, pool, _D => {
        let mut tx = pool.begin().await?;
        let written = write_batch(&mut *tx, b).await?;
        if matches!(written, BatchWritten::Applied(_)) {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        written
    });
    Ok(match written {
        BatchWritten::Applied(applied) => FireBatchAck::Applied(applied),
        BatchWritten::Conflict => FireBatchAck::Conflict,
        BatchWritten::KeyHeld { key, holder } => FireBatchAck::KeyHeld {
            holder: match holder {
                Some(h) => h,
                None => key_holder(db, &b.tenant_id, &key).await?,
            },
        },
    })
}

/// The detail recorded for a fire skipped because the workflow's
/// concurrency key was held.
fn key_held_detail(key: Option<&str>) -> String {
    format!(
        "the workflow's concurrency key {:?} was held by another active run",
        key.unwrap_or_default()
    )
}

/// Writes a [`FireBatch`] on `tx`: the schedule's revision check first,
/// then per fire its run and its record, then the last started run.
async fn write_batch<T: FireTx>(tx: &mut T, b: &FireBatch) -> Result<BatchWritten> {
    if !advance_schedule(tx.conn(), b).await? {
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
        if !f.manual && !write_fire(tx.conn(), b, &fire, detail.as_deref(), f.from_buffer).await? {
            return Ok(BatchWritten::Conflict);
        }
        applied.push(fire);
    }
    if let Some((at, run)) = last {
        set_last_fire(tx.conn(), b, at, run).await?;
    }
    Ok(BatchWritten::Applied(applied))
}

/// Moves the schedule to the batch's next fire and buffer and bumps its
/// revision; false if the revision is no longer the expected one.
async fn advance_schedule(conn: Conn<'_>, b: &FireBatch) -> Result<bool> {
    let sql = "UPDATE schedules SET next_fire_at = $4, buffered_fire_at = $5, \
            revision = revision + 1, updated_at = $6 \
         WHERE id = $1 AND tenant_id = $2 AND revision = $3";
    let n = with_db!(conn, c, D => {
        sqlx::query(sql)
            .bind(D::id(b.schedule_id.0))
            .bind(b.tenant_id.as_str())
            .bind(b.expected_revision as i64)
            .bind(b.next_fire_at.map(D::ts))
            .bind(b.buffered_fire_at.map(D::ts))
            .bind(D::ts(b.now))
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(n == 1)
}

/// Inserts the fire's record, or (`from_buffer`) turns its buffered record
/// into the final one; false if it was already claimed.
async fn write_fire(
    conn: Conn<'_>,
    b: &FireBatch,
    fire: &AppliedFire,
    detail: Option<&str>,
    from_buffer: bool,
) -> Result<bool> {
    let sql = if from_buffer {
        "UPDATE schedule_fires SET outcome = $3, run_id = $4, detail = $5, at = $6 \
         WHERE schedule_id = $1 AND scheduled_time = $2 AND outcome = 'buffered'"
    } else {
        "INSERT INTO schedule_fires (schedule_id, scheduled_time, outcome, run_id, detail, at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"
    };
    let n = with_db!(conn, c, D => {
        sqlx::query(sql)
            .bind(D::id(b.schedule_id.0))
            .bind(D::ts(fire.scheduled_time))
            .bind(fire.outcome.as_str())
            .bind(fire.run_id.map(|r| D::id(r.0)))
            .bind(detail)
            .bind(D::ts(b.now))
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(n == 1)
}

/// Records the schedule's last started run.
async fn set_last_fire(conn: Conn<'_>, b: &FireBatch, at: DateTime<Utc>, run: RunId) -> Result<()> {
    let sql = "UPDATE schedules SET last_fire_at = $2, last_workflow_id = $3 WHERE id = $1";
    with_db!(conn, c, D => {
        sqlx::query(sql)
            .bind(D::id(b.schedule_id.0))
            .bind(D::ts(at))
            .bind(D::id(run.0))
            .execute(&mut *c)
            .await?;
    });
    Ok(())
}
