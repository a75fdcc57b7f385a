//! Schedules on both backends: the [`ScheduleStore`] of every
//! [`SqlBackend`]. Their definitions (insert, seed, read, pause, delete),
//! the due ones, and their recorded fires; a scheduling decision itself is
//! written by [`super::fires`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::rows::{fire_from_row, schedule_from_row};
use super::runs::{tenant_owns, tenant_row};
use super::{Conn, Dialect, SqlBackend, fires, with_db};
use crate::ids::TenantId;
use crate::schedule::model::{FireRecord, Schedule, ScheduleId};
use crate::store::{FireBatch, FireBatchAck, Result, ScheduleChange, ScheduleStore};

const SCHEDULE_COLUMNS: &str = "s.id, s.tenant_id, s.name, s.cron, s.timezone, s.workflow_name, \
    s.input, s.paused, s.pause_reason, s.overlap_policy, s.catchup_policy, s.next_fire_at, \
    s.last_fire_at, s.last_workflow_id, s.buffered_fire_at, s.revision, s.created_at, s.updated_at, \
    r.state AS last_run_state";

const SCHEDULE_FROM: &str = "schedules s LEFT JOIN runs r ON r.id = s.last_workflow_id";

/// Inserts `s` on `conn`; false when the tenant has a schedule of its name.
async fn insert_on(conn: Conn<'_>, s: &Schedule) -> Result<bool> {
    let sql = "INSERT INTO schedules (id, tenant_id, name, cron, timezone, workflow_name, input, \
            paused, pause_reason, overlap_policy, catchup_policy, next_fire_at, created_at, \
            updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) \
         ON CONFLICT (tenant_id, name) DO NOTHING";
    let n = with_db!(conn, c, D => {
        sqlx::query(sql)
            .bind(D::id(s.id.0))
            .bind(s.tenant_id.as_str())
            .bind(&s.name)
            .bind(&s.cron)
            .bind(&s.timezone)
            .bind(&s.workflow_name)
            .bind(D::json(&s.input))
            .bind(s.paused)
            .bind(&s.pause_reason)
            .bind(s.overlap_policy.as_str())
            .bind(s.catchup_policy.as_str())
            .bind(s.next_fire_at.map(D::ts))
            .bind(D::ts(s.created_at))
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    Ok(n == 1)
}

#[async_trait]
impl<T: SqlBackend> ScheduleStore for T {
    async fn insert_schedule(&self, s: &Schedule) -> Result<bool> {
        with_db!(self.writes(), pool, _D => {
            let mut conn = pool.acquire().await?;
            insert_on(Conn::from(&mut *conn), s).await
        })
    }

    async fn seed_schedule(&self, s: &Schedule) -> Result<bool> {
        let sql = "INSERT INTO schedule_seeds (tenant_id, name, seeded_at) VALUES ($1, $2, $3) \
                   ON CONFLICT DO NOTHING";
        with_db!(self.writes(), pool, D => {
            let mut tx = pool.begin().await?;
            let first = sqlx::query(sql)
                .bind(s.tenant_id.as_str())
                .bind(&s.name)
                .bind(D::ts(s.created_at))
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if !first {
                tx.rollback().await?;
                return Ok(false);
            }
            let created = insert_on(Conn::from(&mut *tx), s).await?;
            tx.commit().await?;
            Ok(created)
        })
    }

    async fn get_schedule(&self, tenant: &TenantId, id: ScheduleId) -> Result<Option<Schedule>> {
        let sql = format!(
            "SELECT {SCHEDULE_COLUMNS} FROM {SCHEDULE_FROM} WHERE s.id = $1 AND s.tenant_id = $2"
        );
        tenant_row(self.reads(), sql, id.0, tenant, |r| schedule_from_row(r)).await
    }

    async fn list_schedules(&self, tenant: &TenantId) -> Result<Vec<Schedule>> {
        let sql = format!(
            "SELECT {SCHEDULE_COLUMNS} FROM {SCHEDULE_FROM} WHERE s.tenant_id = $1 ORDER BY s.name"
        );
        with_db!(self.reads(), pool, _D => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(tenant.as_str())
                .fetch_all(pool)
                .await?;
            rows.iter().map(schedule_from_row).collect()
        })
    }

    async fn change_schedule(&self, c: &ScheduleChange) -> Result<bool> {
        let sql = "UPDATE schedules SET paused = $4, pause_reason = $5, next_fire_at = $6, \
                revision = revision + 1, updated_at = $7 \
             WHERE id = $1 AND tenant_id = $2 AND revision = $3";
        let n = with_db!(self.writes(), pool, D => {
            sqlx::query(sql)
                .bind(D::id(c.id.0))
                .bind(c.tenant_id.as_str())
                .bind(c.expected_revision as i64)
                .bind(c.paused)
                .bind(&c.pause_reason)
                .bind(c.next_fire_at.map(D::ts))
                .bind(D::ts(c.now))
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    async fn delete_schedule(&self, tenant: &TenantId, id: ScheduleId) -> Result<bool> {
        with_db!(self.writes(), pool, D => {
            let mut tx = pool.begin().await?;
            let n = sqlx::query("DELETE FROM schedules WHERE id = $1 AND tenant_id = $2")
                .bind(D::id(id.0))
                .bind(tenant.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 1 {
                // The foreign key cascades; this holds also where it is not
                // enforced on the connection.
                sqlx::query("DELETE FROM schedule_fires WHERE schedule_id = $1")
                    .bind(D::id(id.0))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(n == 1)
        })
    }

    async fn due_schedules(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Schedule>> {
        with_db!(self.reads(), pool, D => {
            let sql = format!(
                "SELECT {SCHEDULE_COLUMNS} FROM {SCHEDULE_FROM} \
                 WHERE {} AND (s.next_fire_at <= $1 OR s.buffered_fire_at IS NOT NULL) \
                 ORDER BY s.next_fire_at NULLS LAST LIMIT $2",
                D::UNPAUSED
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(D::ts(now))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            rows.iter().map(schedule_from_row).collect()
        })
    }

    async fn apply_fires(&self, batch: &FireBatch) -> Result<FireBatchAck> {
        fires::apply(self.writes(), batch).await
    }

    async fn schedule_fires(
        &self,
        tenant: &TenantId,
        id: ScheduleId,
        after: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Option<Vec<FireRecord>>> {
        if !tenant_owns(self.reads(), "schedules", id.0, tenant).await? {
            return Ok(None);
        }
        let sql = "SELECT scheduled_time, outcome, run_id, detail, at FROM schedule_fires \
                   WHERE schedule_id = $1 AND ($2 IS NULL OR scheduled_time > $2) \
                   ORDER BY scheduled_time LIMIT $3";
        with_db!(self.reads(), pool, D => {
            let rows = sqlx::query(sql)
                .bind(D::id(id.0))
                .bind(after.map(D::ts))
                .bind(i64::from(limit.max(1)))
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|row| fire_from_row(row, id))
                .collect::<Result<Vec<_>>>()
                .map(Some)
        })
    }
}
