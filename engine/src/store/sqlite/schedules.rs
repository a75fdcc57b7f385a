//! Schedules on SQLite. The `Store` methods of [`SqliteStore`] delegate
//! here; writes go through the single writer connection, so a scheduling
//! decision is one transaction like on PostgreSQL (revision check first,
//! then the fire records under their unique key, then the runs).

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Row, SqliteConnection, SqlitePool};

use super::{RunInsert, from_micros, insert_run, json, micros, opt_from_micros, uuid_col};
use crate::ids::{RunId, TenantId};
use crate::schedule::model::{FireRecord, Schedule, ScheduleId};
use crate::store::schedules::{BatchWritten, FireTx, RunInserted, write_batch};
use crate::store::{
    AppliedFire, FireBatch, FireBatchAck, NewRun, Result, ScheduleChange, StoreError,
};

const SCHEDULE_COLUMNS: &str = "s.id, s.tenant_id, s.name, s.cron, s.timezone, s.workflow_name, \
    s.input, s.paused, s.pause_reason, s.overlap_policy, s.catchup_policy, s.next_fire_at, \
    s.last_fire_at, s.last_workflow_id, s.buffered_fire_at, s.revision, s.created_at, s.updated_at, \
    r.state AS last_run_state";

const SCHEDULE_FROM: &str = "schedules s LEFT JOIN runs r ON r.id = s.last_workflow_id";

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn opt_uuid(row: &SqliteRow, col: &str) -> Result<Option<RunId>> {
    let v: Option<String> = row.try_get(col)?;
    v.map(|s| {
        uuid::Uuid::parse_str(&s)
            .map(RunId)
            .map_err(|e| corrupt(format!("{col}: {e}")))
    })
    .transpose()
}

fn schedule_from_row(row: &SqliteRow) -> Result<Schedule> {
    let overlap: String = row.try_get("overlap_policy")?;
    let catchup: String = row.try_get("catchup_policy")?;
    let state: Option<String> = row.try_get("last_run_state")?;
    let input: String = row.try_get("input")?;
    Ok(Schedule {
        id: ScheduleId(uuid_col(row, "id")?),
        tenant_id: TenantId(row.try_get("tenant_id")?),
        name: row.try_get("name")?,
        cron: row.try_get("cron")?,
        timezone: row.try_get("timezone")?,
        workflow_name: row.try_get("workflow_name")?,
        input: json(&input, "input")?,
        paused: row.try_get("paused")?,
        pause_reason: row.try_get("pause_reason")?,
        overlap_policy: overlap.parse().map_err(corrupt)?,
        catchup_policy: catchup.parse().map_err(corrupt)?,
        next_fire_at: opt_from_micros(row.try_get("next_fire_at")?)?,
        last_fire_at: opt_from_micros(row.try_get("last_fire_at")?)?,
        last_workflow_id: opt_uuid(row, "last_workflow_id")?,
        buffered_fire_at: opt_from_micros(row.try_get("buffered_fire_at")?)?,
        revision: row.try_get::<i64, _>("revision")? as u64,
        created_at: from_micros(row.try_get("created_at")?)?,
        updated_at: from_micros(row.try_get("updated_at")?)?,
        last_run_state: state
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(corrupt)?,
    })
}

async fn insert_on(conn: &mut SqliteConnection, s: &Schedule) -> Result<bool> {
    let n = sqlx::query(
        "INSERT INTO schedules (id, tenant_id, name, cron, timezone, workflow_name, input, paused, \
            pause_reason, overlap_policy, catchup_policy, next_fire_at, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13) \
         ON CONFLICT (tenant_id, name) DO NOTHING",
    )
    .bind(s.id.to_string())
    .bind(s.tenant_id.as_str())
    .bind(&s.name)
    .bind(&s.cron)
    .bind(&s.timezone)
    .bind(&s.workflow_name)
    .bind(s.input.to_string())
    .bind(s.paused)
    .bind(&s.pause_reason)
    .bind(s.overlap_policy.as_str())
    .bind(s.catchup_policy.as_str())
    .bind(s.next_fire_at.map(micros))
    .bind(micros(s.created_at))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

pub(super) async fn insert_schedule(writer: &SqlitePool, s: &Schedule) -> Result<bool> {
    let mut conn = writer.acquire().await?;
    insert_on(&mut conn, s).await
}

pub(super) async fn seed_schedule(writer: &SqlitePool, s: &Schedule) -> Result<bool> {
    let mut tx = writer.begin().await?;
    let first = sqlx::query(
        "INSERT INTO schedule_seeds (tenant_id, name, seeded_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(s.tenant_id.as_str())
    .bind(&s.name)
    .bind(micros(s.created_at))
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !first {
        tx.rollback().await?;
        return Ok(false);
    }
    let created = insert_on(&mut tx, s).await?;
    tx.commit().await?;
    Ok(created)
}

pub(super) async fn get_schedule(
    reader: &SqlitePool,
    tenant: &TenantId,
    id: ScheduleId,
) -> Result<Option<Schedule>> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {SCHEDULE_COLUMNS} FROM {SCHEDULE_FROM} WHERE s.id = ?1 AND s.tenant_id = ?2"
    )))
    .bind(id.to_string())
    .bind(tenant.as_str())
    .fetch_optional(reader)
    .await?;
    row.as_ref().map(schedule_from_row).transpose()
}

pub(super) async fn list_schedules(
    reader: &SqlitePool,
    tenant: &TenantId,
) -> Result<Vec<Schedule>> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {SCHEDULE_COLUMNS} FROM {SCHEDULE_FROM} WHERE s.tenant_id = ?1 ORDER BY s.name"
    )))
    .bind(tenant.as_str())
    .fetch_all(reader)
    .await?;
    rows.iter().map(schedule_from_row).collect()
}

pub(super) async fn change_schedule(writer: &SqlitePool, c: &ScheduleChange) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE schedules SET paused = ?4, pause_reason = ?5, next_fire_at = ?6, \
            revision = revision + 1, updated_at = ?7 \
         WHERE id = ?1 AND tenant_id = ?2 AND revision = ?3",
    )
    .bind(c.id.to_string())
    .bind(c.tenant_id.as_str())
    .bind(c.expected_revision as i64)
    .bind(c.paused)
    .bind(&c.pause_reason)
    .bind(c.next_fire_at.map(micros))
    .bind(micros(c.now))
    .execute(writer)
    .await?
    .rows_affected();
    Ok(n == 1)
}

pub(super) async fn delete_schedule(
    writer: &SqlitePool,
    tenant: &TenantId,
    id: ScheduleId,
) -> Result<bool> {
    let mut tx = writer.begin().await?;
    let n = sqlx::query("DELETE FROM schedules WHERE id = ?1 AND tenant_id = ?2")
        .bind(id.to_string())
        .bind(tenant.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n == 1 {
        // Also without the foreign key enforced on this connection.
        sqlx::query("DELETE FROM schedule_fires WHERE schedule_id = ?1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(n == 1)
}

pub(super) async fn due_schedules(
    reader: &SqlitePool,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<Schedule>> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {SCHEDULE_COLUMNS} FROM {SCHEDULE_FROM} \
         WHERE s.paused = 0 AND (s.next_fire_at <= ?1 OR s.buffered_fire_at IS NOT NULL) \
         ORDER BY s.next_fire_at IS NULL, s.next_fire_at LIMIT ?2"
    )))
    .bind(micros(now))
    .bind(i64::from(limit))
    .fetch_all(reader)
    .await?;
    rows.iter().map(schedule_from_row).collect()
}

pub(super) async fn apply_fires(writer: &SqlitePool, b: &FireBatch) -> Result<FireBatchAck> {
    let mut tx = writer.begin().await?;
    match write_batch(&mut *tx, b).await? {
        BatchWritten::Applied(applied) => {
            tx.commit().await?;
            Ok(FireBatchAck::Applied(applied))
        }
        BatchWritten::Conflict => {
            tx.rollback().await?;
            Ok(FireBatchAck::Conflict)
        }
        BatchWritten::KeyHeld { holder, .. } => {
            tx.rollback().await?;
            Ok(FireBatchAck::KeyHeld {
                holder: holder.unwrap_or_default(),
            })
        }
    }
}

#[async_trait::async_trait]
impl FireTx for SqliteConnection {
    async fn advance_schedule(&mut self, b: &FireBatch) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE schedules SET next_fire_at = ?4, buffered_fire_at = ?5, revision = revision + 1, \
                updated_at = ?6 \
             WHERE id = ?1 AND tenant_id = ?2 AND revision = ?3",
        )
        .bind(b.schedule_id.to_string())
        .bind(b.tenant_id.as_str())
        .bind(b.expected_revision as i64)
        .bind(b.next_fire_at.map(micros))
        .bind(b.buffered_fire_at.map(micros))
        .bind(micros(b.now))
        .execute(&mut *self)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    async fn insert_run(&mut self, new: &NewRun) -> Result<RunInserted> {
        Ok(match insert_run(self, new).await? {
            RunInsert::Created => RunInserted::Created,
            RunInsert::Found(_) => RunInserted::Duplicate,
            RunInsert::KeyHeld { holder } => RunInserted::KeyHeld {
                holder: Some(holder),
            },
        })
    }

    async fn write_fire(
        &mut self,
        b: &FireBatch,
        fire: &AppliedFire,
        detail: Option<&str>,
        from_buffer: bool,
    ) -> Result<bool> {
        let n = if from_buffer {
            sqlx::query(
                "UPDATE schedule_fires SET outcome = ?3, run_id = ?4, detail = ?5, at = ?6 \
                 WHERE schedule_id = ?1 AND scheduled_time = ?2 AND outcome = 'buffered'",
            )
        } else {
            sqlx::query(
                "INSERT INTO schedule_fires (schedule_id, scheduled_time, outcome, run_id, detail, at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
            )
        }
        .bind(b.schedule_id.to_string())
        .bind(micros(fire.scheduled_time))
        .bind(fire.outcome.as_str())
        .bind(fire.run_id.map(|r| r.to_string()))
        .bind(detail)
        .bind(micros(b.now))
        .execute(&mut *self)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    async fn set_last_fire(&mut self, b: &FireBatch, at: DateTime<Utc>, run: RunId) -> Result<()> {
        sqlx::query("UPDATE schedules SET last_fire_at = ?2, last_workflow_id = ?3 WHERE id = ?1")
            .bind(b.schedule_id.to_string())
            .bind(micros(at))
            .bind(run.to_string())
            .execute(&mut *self)
            .await?;
        Ok(())
    }
}

pub(super) async fn schedule_fires(
    reader: &SqlitePool,
    tenant: &TenantId,
    id: ScheduleId,
    after: Option<DateTime<Utc>>,
    limit: u32,
) -> Result<Option<Vec<FireRecord>>> {
    let exists: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM schedules WHERE id = ?1 AND tenant_id = ?2")
            .bind(id.to_string())
            .bind(tenant.as_str())
            .fetch_optional(reader)
            .await?;
    if exists.is_none() {
        return Ok(None);
    }
    let rows = sqlx::query(
        "SELECT scheduled_time, outcome, run_id, detail, at FROM schedule_fires \
         WHERE schedule_id = ?1 AND (?2 IS NULL OR scheduled_time > ?2) \
         ORDER BY scheduled_time LIMIT ?3",
    )
    .bind(id.to_string())
    .bind(after.map(micros))
    .bind(i64::from(limit.max(1)))
    .fetch_all(reader)
    .await?;
    rows.iter()
        .map(|row| {
            let outcome: String = row.try_get("outcome")?;
            Ok(FireRecord {
                schedule_id: id,
                scheduled_time: from_micros(row.try_get("scheduled_time")?)?,
                outcome: outcome.parse().map_err(corrupt)?,
                run_id: opt_uuid(row, "run_id")?,
                detail: row.try_get("detail")?,
                at: from_micros(row.try_get("at")?)?,
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}
