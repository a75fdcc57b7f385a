//! Retention, the same way on both backends: the [`RetentionStore`] of
//! every [`SqlBackend`]. A batch picks the oldest finished runs by the
//! `runs_finished` index and deletes them with their events, signals and
//! webhook deliveries in one transaction; no live run's row is touched, so
//! no write of a running saga waits for it. On PostgreSQL the days of
//! events are added and dropped by [`crate::store::postgres::partitions`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use uuid::Uuid;

use super::{Backed, Dialect, ReadRow, SqlBackend, with_db};
use crate::ids::TenantId;
use crate::store::Result;
use crate::store::postgres::partitions;
use crate::store::retention::{
    DroppedDay, EventRows, Pace, Purged, RetentionStore, RunPurge, WorkflowScope,
};
use crate::store::sql_terms::terminal_states;

/// The tables that hold rows of a run, by run id, deleted before the run.
const RUN_CHILDREN: [&str; 4] = [
    "run_events",
    "run_signals",
    "webhook_deliveries",
    "run_search",
];

#[async_trait]
impl<T: SqlBackend> RetentionStore for T {
    async fn purge_runs(&self, p: &RunPurge) -> Result<Purged> {
        let mut out = Purged::default();
        with_db!(self.writes(), pool, D => {
            let mut tx = pool.begin().await?;
            let mut q = QueryBuilder::<<D as Dialect>::Db>::new(
                "SELECT id, finished_at FROM runs WHERE tenant_id = ",
            );
            q.push_bind(p.tenant.as_str().to_owned());
            q.push(" AND finished_at IS NOT NULL AND finished_at < ")
                .push_bind(D::ts(p.finished_before));
            if let Some(from) = p.from {
                q.push(" AND finished_at >= ").push_bind(D::ts(from));
            }
            q.push(format!(" AND state IN {}", terminal_states()));
            match &p.scope {
                WorkflowScope::Only(w) => {
                    q.push(" AND workflow_name = ").push_bind(w.clone());
                }
                WorkflowScope::AllExcept(ws) if !ws.is_empty() => {
                    q.push(" AND workflow_name NOT IN (");
                    let mut sep = q.separated(", ");
                    for w in ws {
                        sep.push_bind(w.clone());
                    }
                    q.push(")");
                }
                WorkflowScope::AllExcept(_) => {}
            }
            q.push(" ORDER BY finished_at LIMIT ").push_bind(i64::from(p.limit));
            let rows = q.build().fetch_all(&mut *tx).await?;
            let ids = rows.iter().map(|r| r.uuid("id")).collect::<Result<Vec<Uuid>>>()?;
            let Some(last) = rows.last() else {
                return Ok(out);
            };
            out.last_finished = Some(last.time("finished_at")?);
            let delete = |table: &str| {
                // PostgreSQL's daily partitions of events go with their day.
                let table = match (table, p.events, D::PARTITIONED_EVENTS) {
                    ("run_events", EventRows::OutsideDailyPartitions, true) => {
                        partitions::DEFAULT_PARTITION
                    }
                    _ => table,
                };
                let mut d =
                    QueryBuilder::<<D as Dialect>::Db>::new(format!("DELETE FROM {table} WHERE"));
                D::push_in_ids(&mut d, if table == "runs" { "id" } else { "run_id" }, &ids);
                d
            };
            // Lost in a crash, a batch is simply deleted again.
            if let Some(sql) = D::UNFLUSHED_COMMIT {
                sqlx::query(sql).execute(&mut *tx).await?;
            }
            for table in RUN_CHILDREN {
                let n = delete(table).build().execute(&mut *tx).await?.rows_affected();
                match table {
                    "run_events" => out.events = n,
                    "run_signals" => out.signals = n,
                    "webhook_deliveries" => out.deliveries = n,
                    _ => {} // search attributes: not counted
                }
            }
            out.runs = delete("runs").build().execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
        });
        Ok(out)
    }

    async fn purge_fires(
        &self,
        tenant: &TenantId,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64> {
        // By each schedule's (schedule_id, scheduled_time) index.
        let sql = "DELETE FROM schedule_fires WHERE (schedule_id, scheduled_time) IN ( \
                   SELECT f.schedule_id, f.scheduled_time FROM schedule_fires f \
                   JOIN schedules s ON s.id = f.schedule_id \
                   WHERE s.tenant_id = $1 AND f.scheduled_time < $2 \
                   ORDER BY f.scheduled_time LIMIT $3)";
        let n = with_db!(self.writes(), pool, D => {
            sqlx::query(sql)
                .bind(tenant.as_str())
                .bind(D::ts(before))
                .bind(i64::from(limit))
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n)
    }

    async fn add_event_days(&self, today: chrono::NaiveDate, ahead: u32) -> Result<u32> {
        match self.writes() {
            Backed::Postgres(pool) => partitions::add_days(pool, today, ahead).await,
            Backed::Sqlite(_) => Ok(0),
        }
    }

    async fn drop_event_day(
        &self,
        before: DateTime<Utc>,
        pace: Pace,
    ) -> Result<Option<DroppedDay>> {
        match self.writes() {
            Backed::Postgres(pool) => partitions::drop_oldest_day(pool, before, pace).await,
            Backed::Sqlite(_) => Ok(None),
        }
    }

    async fn recheck_kept_days(&self, pace: Pace) -> Result<Vec<DroppedDay>> {
        match self.writes() {
            Backed::Postgres(pool) => partitions::recheck_kept_days(pool, pace).await,
            Backed::Sqlite(_) => Ok(Vec::new()),
        }
    }
}
