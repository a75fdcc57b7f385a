//! The daily partitions of `run_events` (migration 0019): adding the days
//! ahead ([`add_days`]) and dropping the oldest day once retention no
//! longer keeps it ([`drop_oldest_day`]). A day is `run_events_pYYYYMMDD`,
//! holding the events whose `at` falls in that UTC day; anything else lands
//! in `run_events_default`. Both run under one advisory lock, so replicas
//! doing the same upkeep take turns.

use std::time::Instant;

use chrono::{DateTime, Days, NaiveDate, Utc};
use sqlx::{AssertSqlSafe, PgPool, Postgres, Transaction};

use crate::store::Result;
use crate::store::retention::DroppedDay;

/// The partition of the events no day holds.
pub(crate) const DEFAULT_PARTITION: &str = "run_events_default";

/// Days created ahead of today by the engine at each migrate.
pub const DAYS_AHEAD: u32 = 7;

/// The advisory lock the upkeep of the partitions takes ("run_events").
const UPKEEP_LOCK: i64 = 0x7275_6e5f_6576_656e;

/// The longest the upkeep waits for a lock on `run_events` before giving up
/// (it retries the next time), so no write queues behind it for longer.
const LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '500ms'";

fn name(day: NaiveDate) -> String {
    format!("run_events_p{}", day.format("%Y%m%d"))
}

/// The day a partition's name stands for.
fn day_of(name: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(name.strip_prefix("run_events_p")?, "%Y%m%d").ok()
}

fn start(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

fn next(day: NaiveDate) -> NaiveDate {
    day.checked_add_days(Days::new(1)).unwrap_or(day)
}

async fn locked(pool: &PgPool) -> Result<Transaction<'static, Postgres>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(UPKEEP_LOCK)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Creates the missing days from `today` to `today + ahead`, each created
/// empty and attached (which locks `run_events` only against other schema
/// changes, and scans the default partition for rows of that day: a day
/// that already has rows there is left to the default partition). Returns
/// how many were created.
pub(crate) async fn add_days(pool: &PgPool, today: NaiveDate, ahead: u32) -> Result<u32> {
    let mut created = 0;
    let mut day = today;
    for _ in 0..=ahead {
        let table = name(day);
        let (from, to) = (start(day), start(next(day)));
        day = next(day);
        let mut tx = locked(pool).await?;
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(&table)
            .fetch_one(&mut *tx)
            .await?;
        if exists {
            continue;
        }
        let in_default: bool = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM {DEFAULT_PARTITION} WHERE at >= $1 AND at < $2)"
        )))
        .bind(from)
        .bind(to)
        .fetch_one(&mut *tx)
        .await?;
        if in_default {
            tracing::warn!(partition = %table, "events of this day are in the default partition; the day is not added");
            continue;
        }
        sqlx::query(LOCK_TIMEOUT).execute(&mut *tx).await?;
        sqlx::query(AssertSqlSafe(format!(
            "CREATE TABLE {table} (LIKE run_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )))
        .execute(&mut *tx)
        .await?;
        sqlx::query(AssertSqlSafe(format!(
            "ALTER TABLE run_events ATTACH PARTITION {table} FOR VALUES FROM ('{}') TO ('{}')",
            from.to_rfc3339(),
            to.to_rfc3339()
        )))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        created += 1;
    }
    Ok(created)
}

/// Drops the oldest day if it ends at or before `before`. The events of
/// runs still stored are first copied aside (no lock on `run_events`);
/// then, in one short transaction, the day is detached, those events are
/// written back (to the default partition, the day being gone) and the
/// day's table is dropped.
pub(crate) async fn drop_oldest_day(
    pool: &PgPool,
    before: DateTime<Utc>,
) -> Result<Option<DroppedDay>> {
    let oldest: Option<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'run_events'::regclass AND c.relname LIKE 'run\\_events\\_p%' \
         ORDER BY c.relname LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    let Some((table, day)) = oldest.and_then(|t| day_of(&t).map(|d| (t, d))) else {
        return Ok(None);
    };
    if start(next(day)) > before {
        return Ok(None);
    }
    let aside = format!("{table}_kept");

    // Copy aside the events of runs still stored: a scan of the day, under
    // no lock anyone else's statements wait for.
    let mut tx = locked(pool).await?;
    sqlx::query("SET LOCAL statement_timeout = 0")
        .execute(&mut *tx)
        .await?;
    let events: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query(AssertSqlSafe(format!("DROP TABLE IF EXISTS {aside}")))
        .execute(&mut *tx)
        .await?;
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE {aside} AS SELECT e.* FROM {table} e \
         WHERE EXISTS (SELECT 1 FROM runs r WHERE r.id = e.run_id)"
    )))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;

    // Detach, write back, drop: the only exclusive lock on run_events.
    let mut tx = locked(pool).await?;
    let attached: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass($1) \
         AND inhparent = 'run_events'::regclass)",
    )
    .bind(&table)
    .fetch_one(&mut *tx)
    .await?;
    if !attached {
        // Another replica dropped it meanwhile.
        sqlx::query(AssertSqlSafe(format!("DROP TABLE IF EXISTS {aside}")))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        return Ok(None);
    }
    sqlx::query(LOCK_TIMEOUT).execute(&mut *tx).await?;
    let locked_at = Instant::now();
    sqlx::query(AssertSqlSafe(format!(
        "ALTER TABLE run_events DETACH PARTITION {table}"
    )))
    .execute(&mut *tx)
    .await?;
    // Runs purged since the copy are left out.
    let moved = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO run_events SELECT k.* FROM {aside} k \
         WHERE EXISTS (SELECT 1 FROM runs r WHERE r.id = k.run_id)"
    )))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query(AssertSqlSafe(format!("DROP TABLE {table}, {aside}")))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let locked_ms = locked_at.elapsed().as_millis() as u64;
    tracing::info!(partition = %table, events, moved, locked_ms, "event partition dropped");
    Ok(Some(DroppedDay {
        partition: table,
        events: events as u64,
        moved,
        locked_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_and_its_partition_name() {
        let d = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap_or_default();
        assert_eq!(name(d), "run_events_p20261203");
        assert_eq!(day_of(&name(d)), Some(d));
        assert_eq!(day_of("run_events_default"), None);
        assert_eq!(start(next(d)).to_rfc3339(), "2026-12-04T00:00:00+00:00");
    }
}
