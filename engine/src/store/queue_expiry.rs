//! Runs that waited too long behind their concurrency key. A workflow's
//! `concurrency.queue_ttl_ms` bounds how long a run stays queued (PENDING,
//! not due); `create_run` stores when that time ends (`queue_expires_at`).
//! `expire_queued` of both backends lives here: one set-based pass, fenced
//! on each run still being queued, that ends every run whose time is up
//! CANCELLED with `error` and a `run_queue_expired` event (and, in the same
//! transaction, the `run_cancelled` webhook deliveries of the runs' tenants).
//! Nothing ran and the key was never the run's, so nothing is compensated or
//! released.
//!
//! Hand-overs pass over runs whose time is up, so with one clock a key never
//! goes to an expired run. Should a replica whose clock is behind hand the
//! key to a run another replica is expiring at that moment (PostgreSQL), the
//! run ends CANCELLED holding the key and due: the next claim of it finds it
//! terminal and its checkpoint releases the key to the next queued run.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{
    AssertSqlSafe, ColumnIndex, Decode, PgPool, QueryBuilder, Row, Sqlite, SqlitePool, Type,
};
use uuid::Uuid;

use super::sql_terms;
use super::sqlite::{from_micros, micros};
use super::{EventKind, NewDelivery, Result};
use crate::ids::{RunId, TenantId};
use crate::run::model::NewEvent;
use crate::run::state::RunState;
use crate::webhook::Webhooks;

/// Where `RunEvent::QueueExpired` takes a PENDING run.
const EXPIRED: RunState = RunState::Cancelled;

/// A queued run ended by `expire_queued`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueExpired {
    pub run_id: RunId,
    pub tenant_id: TenantId,
    pub workflow_name: String,
}

/// One expired run, as the fenced update returned it.
struct Expired {
    id: Uuid,
    tenant_id: String,
    workflow_name: String,
    key: String,
    /// How long it was allowed to wait (it was queued when created).
    ttl: Duration,
    last_seq: i64,
}

impl Expired {
    /// The rows the fenced update returned. `stamps` reads a row's `id`,
    /// `created_at` and `queue_expires_at`, which each backend stores its
    /// own way.
    fn read_all<'r, R>(
        rows: &'r [R],
        stamps: impl Fn(&'r R) -> Result<(Uuid, DateTime<Utc>, DateTime<Utc>)>,
    ) -> Result<Vec<Self>>
    where
        R: Row,
        &'static str: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        let mut expired = Vec::with_capacity(rows.len());
        for row in rows {
            let (id, created, expires) = stamps(row)?;
            expired.push(Expired {
                id,
                tenant_id: row.try_get("tenant_id")?,
                workflow_name: row.try_get("workflow_name")?,
                key: row
                    .try_get::<Option<String>, _>("concurrency_key")?
                    .unwrap_or_default(),
                ttl: ttl_between(created, expires),
                last_seq: row.try_get("last_seq")?,
            });
        }
        Ok(expired)
    }

    fn message(&self) -> String {
        format!(
            "queued longer than {} behind concurrency key {}",
            ttl_text(self.ttl),
            self.key
        )
    }

    /// The webhook deliveries its end causes.
    fn deliveries(&self, webhooks: &Webhooks, now: DateTime<Utc>) -> Vec<NewDelivery> {
        let event = NewEvent {
            kind: EventKind::RunQueueExpired,
            step: None,
            attempt: 0,
            run_state: EXPIRED,
            message: Some(self.message()),
            actor: "engine".into(),
            at: now,
        };
        webhooks.deliveries(
            &TenantId::new(&self.tenant_id),
            RunId(self.id),
            &self.workflow_name,
            &[event],
        )
    }

    fn into_public(self) -> QueueExpired {
        QueueExpired {
            run_id: RunId(self.id),
            tenant_id: TenantId(self.tenant_id),
            workflow_name: self.workflow_name,
        }
    }
}

/// A time-to-live in the largest unit that states it exactly: `1h`,
/// `90s`, `1500ms`.
fn ttl_text(ttl: Duration) -> String {
    let ms = ttl.as_millis();
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

fn ttl_between(created: DateTime<Utc>, expires: DateTime<Utc>) -> Duration {
    (expires - created).to_std().unwrap_or_default()
}

/// The deliveries of every run in `expired`.
fn deliveries(expired: &[Expired], webhooks: &Webhooks, now: DateTime<Utc>) -> Vec<NewDelivery> {
    if webhooks.is_empty() {
        return Vec::new();
    }
    expired
        .iter()
        .flat_map(|e| e.deliveries(webhooks, now))
        .collect()
}

pub(super) async fn postgres(
    pool: &PgPool,
    now: DateTime<Utc>,
    limit: u32,
    webhooks: &Webhooks,
) -> Result<Vec<QueueExpired>> {
    let mut tx = pool.begin().await?;
    // SKIP LOCKED: a run being handed its key right now is left to that.
    let rows = sqlx::query(AssertSqlSafe(format!(
        "WITH x AS (SELECT id FROM runs WHERE {queued} \
                      AND queue_expires_at <= $1 ORDER BY queue_expires_at LIMIT $2 \
                      FOR UPDATE SKIP LOCKED) \
         UPDATE runs SET state = $3, finished_at = $1, updated_at = $1, last_seq = runs.last_seq + 1 \
         FROM x WHERE runs.id = x.id AND {queued_runs} \
         RETURNING runs.id, runs.tenant_id, runs.workflow_name, runs.concurrency_key, \
                   runs.created_at, runs.queue_expires_at, runs.last_seq",
        queued = sql_terms::queued(""),
        queued_runs = sql_terms::queued("runs"),
    )))
    .bind(now)
    .bind(i64::from(limit))
    .bind(EXPIRED.as_str())
    .fetch_all(&mut *tx)
    .await?;
    let expired = Expired::read_all(&rows, |row| {
        Ok((
            row.try_get("id")?,
            row.try_get("created_at")?,
            row.try_get("queue_expires_at")?,
        ))
    })?;
    if !expired.is_empty() {
        let ids: Vec<Uuid> = expired.iter().map(|e| e.id).collect();
        let messages: Vec<String> = expired.iter().map(Expired::message).collect();
        let seqs: Vec<i64> = expired.iter().map(|e| e.last_seq).collect();
        sqlx::query(
            "WITH m AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::int8[]) AS m(id, msg, seq)), \
             u AS (UPDATE runs SET error = m.msg FROM m WHERE runs.id = m.id) \
             INSERT INTO run_events (run_id, seq, at, kind, step, attempt, run_state, message, actor) \
             SELECT m.id, m.seq, $4, $5, NULL, 0, $6, m.msg, 'engine' FROM m",
        )
        .bind(&ids)
        .bind(&messages)
        .bind(&seqs)
        .bind(now)
        .bind(EventKind::RunQueueExpired.as_str())
        .bind(EXPIRED.as_str())
        .execute(&mut *tx)
        .await?;
        let out = deliveries(&expired, webhooks, now);
        super::postgres::webhooks::insert_deliveries(&mut tx, out.iter()).await?;
    }
    tx.commit().await?;
    Ok(expired.into_iter().map(Expired::into_public).collect())
}

pub(super) async fn sqlite(
    writer: &SqlitePool,
    now: DateTime<Utc>,
    limit: u32,
    webhooks: &Webhooks,
) -> Result<Vec<QueueExpired>> {
    let mut tx = writer.begin().await?;
    let rows = sqlx::query(AssertSqlSafe(format!(
        "UPDATE runs SET state = ?3, finished_at = ?1, updated_at = ?1, last_seq = last_seq + 1 \
         WHERE id IN (SELECT id FROM runs WHERE {} \
                        AND queue_expires_at <= ?1 ORDER BY queue_expires_at LIMIT ?2) \
         RETURNING id, tenant_id, workflow_name, concurrency_key, created_at, queue_expires_at, last_seq",
        sql_terms::queued("")
    )))
    .bind(micros(now))
    .bind(i64::from(limit))
    .bind(EXPIRED.as_str())
    .fetch_all(&mut *tx)
    .await?;
    let expired = Expired::read_all(&rows, |row| {
        Ok((
            super::sqlite::uuid_col(row, "id")?,
            from_micros(row.try_get("created_at")?)?,
            from_micros(row.try_get("queue_expires_at")?)?,
        ))
    })?;
    if !expired.is_empty() {
        let mut q = QueryBuilder::<Sqlite>::new("WITH m(id, msg) AS (");
        q.push_values(&expired, |mut b, e| {
            b.push_bind(e.id.to_string()).push_bind(e.message());
        });
        q.push(
            ") UPDATE runs SET error = (SELECT msg FROM m WHERE m.id = runs.id) \
             WHERE id IN (SELECT id FROM m)",
        );
        q.build().execute(&mut *tx).await?;
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO run_events (run_id, seq, at, kind, step, attempt, run_state, message, actor) ",
        );
        q.push_values(&expired, |mut b, e| {
            b.push_bind(e.id.to_string())
                .push_bind(e.last_seq)
                .push_bind(micros(now))
                .push_bind(EventKind::RunQueueExpired.as_str())
                .push_bind(None::<String>)
                .push_bind(0_i64)
                .push_bind(EXPIRED.as_str())
                .push_bind(e.message())
                .push_bind("engine");
        });
        q.build().execute(&mut *tx).await?;
        let out = deliveries(&expired, webhooks, now);
        super::sqlite::webhooks::insert_deliveries(&mut tx, &out).await?;
    }
    tx.commit().await?;
    Ok(expired.into_iter().map(Expired::into_public).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::state::{Action, RunEvent};

    #[test]
    fn the_expired_state_is_the_tables() {
        let t = RunState::Pending.apply(RunEvent::QueueExpired).unwrap();
        assert_eq!((t.to, t.action), (EXPIRED, Action::Finish));
    }

    #[test]
    fn ttls_read_as_written() {
        let t = |ms| ttl_text(Duration::from_millis(ms));
        assert_eq!(t(3_600_000), "1h");
        assert_eq!(t(60_000), "1m");
        assert_eq!(t(90_000), "90s");
        assert_eq!(t(1_500), "1500ms");
        assert_eq!(t(7), "7ms");
    }
}
