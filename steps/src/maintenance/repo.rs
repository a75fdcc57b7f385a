//! The repository of `maintenance_progress`: what a maintenance step has
//! done so far, by its idempotency key, so that a step the engine runs
//! again continues and reports the whole, instead of starting its counts
//! over; and the batched deletes of the rows retention ages out of the
//! maintenance tables ([`purge`]).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;

use crate::db::{DomainDb, with_db};

/// A step's stored progress.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub output: Value,
    /// The step finished: `output` is its answer.
    pub done: bool,
}

/// The progress `tenant`'s step `key` stored, if any.
pub async fn progress(
    db: &DomainDb,
    tenant: &str,
    key: &str,
) -> Result<Option<Progress>, sqlx::Error> {
    let sql = "SELECT output, done FROM maintenance_progress WHERE tenant_id = $1 \
               AND idempotency_key = $2";
    let row: Option<(Json<Value>, bool)> = with_db!(db, pool => {
        sqlx::query_as(sql).bind(tenant).bind(key).fetch_optional(pool).await?
    });
    Ok(row.map(|(output, done)| Progress {
        output: output.0,
        done,
    }))
}

/// Stores the progress of `tenant`'s step `key` of `job`. A key another
/// tenant stored is left alone.
pub async fn save_progress(
    db: &DomainDb,
    tenant: &str,
    key: &str,
    job: &str,
    output: &Value,
    done: bool,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let sql = "INSERT INTO maintenance_progress (idempotency_key, job, output, done, updated_at, \
               tenant_id) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (idempotency_key) DO UPDATE \
               SET output = excluded.output, done = excluded.done, updated_at = excluded.updated_at \
               WHERE maintenance_progress.tenant_id = excluded.tenant_id";
    with_db!(db, pool => {
        sqlx::query(sql)
            .bind(key)
            .bind(job)
            .bind(Json(output))
            .bind(done)
            .bind(now)
            .bind(tenant)
            .execute(pool)
            .await?
            .rows_affected()
    });
    Ok(())
}

/// A maintenance table retention deletes from, by its own age.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purge {
    /// `lifecycle_snapshots`, by `taken_at`.
    Snapshots,
    /// `address_audit`, by `at`.
    AddressAudit,
    /// `maintenance_progress`, by `updated_at`.
    Progress,
}

impl Purge {
    /// (table, key column, time column).
    fn table(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Purge::Snapshots => ("lifecycle_snapshots", "id", "taken_at"),
            Purge::AddressAudit => ("address_audit", "id", "at"),
            Purge::Progress => ("maintenance_progress", "idempotency_key", "updated_at"),
        }
    }
}

/// Deletes up to `limit` of `tenant`'s rows of `what` older than `before`,
/// oldest first, in one statement (by the table's `(tenant_id, time)`
/// index); returns how many.
pub async fn purge(
    db: &DomainDb,
    what: Purge,
    tenant: &str,
    before: DateTime<Utc>,
    limit: u32,
) -> Result<u64, sqlx::Error> {
    let (table, key, time) = what.table();
    let sql = format!(
        "DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} \
         WHERE tenant_id = $1 AND {time} < $2 ORDER BY {time} LIMIT $3)"
    );
    let n = with_db!(db, pool => {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(before)
            .bind(i64::from(limit))
            .execute(pool)
            .await?
            .rows_affected()
    });
    Ok(n)
}
