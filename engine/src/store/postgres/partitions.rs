//! The daily partitions of `run_events` (migration 0019): adding the days
//! ahead ([`add_days`]) and dropping the oldest day once retention no
//! longer keeps it ([`drop_oldest_day`]). A day is `run_events_pYYYYMMDD`,
//! holding the events whose `at` falls in that UTC day; anything no day
//! covers lands in `run_events_default`. A dropped day's events of runs
//! still stored stay in a kept day (`run_events_kYYYYMMDD_…`, the same
//! range), rechecked by [`recheck_kept_days`] until none is needed; the
//! kept events are copied in chunks of pages, paced ([`Pace`]). Adding and dropping
//! each run under an advisory lock of their own, so replicas doing the
//! same upkeep take turns (a replica finding the drop lock taken leaves
//! the drop to the holder).

use std::time::Instant;

use chrono::{DateTime, Days, NaiveDate, Utc};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool, Postgres, Transaction};

use crate::store::Result;
use crate::store::retention::{DroppedDay, Pace};

/// The partition of the events no day holds.
pub(crate) const DEFAULT_PARTITION: &str = "run_events_default";

/// Days created ahead of today by the engine at each migrate.
pub const DAYS_AHEAD: u32 = 7;

/// The advisory lock adding days takes, so replicas take turns.
const ADD_LOCK: i64 = 0x7275_6e5f_6576_6e61;
/// The advisory lock dropping days takes: another, so that adding days
/// (at every start) never waits for a drop copying a day. Held by a
/// session for a whole drop or recheck.
pub const DROP_LOCK: i64 = 0x7275_6e5f_6576_6e64;

/// The longest the upkeep waits for a lock on `run_events` before giving up
/// (it retries the next time), so no write queues behind it for longer.
const LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '500ms'";

/// A day's partition: `run_events_pYYYYMMDD`.
const DAY: &str = "run_events_p";
/// A kept day: the events of a dropped day whose runs were still stored,
/// `run_events_kYYYYMMDD_<micros written>`.
const KEPT: &str = "run_events_k";

fn name(day: NaiveDate) -> String {
    format!("{DAY}{}", day.format("%Y%m%d"))
}

/// The day a day's or a kept day's partition name stands for.
fn day_of(name: &str) -> Option<NaiveDate> {
    let rest = name.strip_prefix(DAY).or_else(|| name.strip_prefix(KEPT))?;
    NaiveDate::parse_from_str(rest.get(..8)?, "%Y%m%d").ok()
}

fn start(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

fn next(day: NaiveDate) -> NaiveDate {
    day.checked_add_days(Days::new(1)).unwrap_or(day)
}

async fn locked(pool: &PgPool, key: i64) -> Result<Transaction<'static, Postgres>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(key)
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
        let mut tx = locked(pool, ADD_LOCK).await?;
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

/// The attached partitions named `$1…`, by name.
const ATTACHED: &str = "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
     WHERE i.inhparent = 'run_events'::regclass AND starts_with(c.relname::text, $1) \
     ORDER BY c.relname";

/// The attached partitions named `{prefix}…`, by name.
async fn attached(pool: &PgPool, prefix: &str) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(ATTACHED)
        .bind(prefix)
        .fetch_all(pool)
        .await?)
}

/// A connection of its own holding the drop lock for a whole drop or
/// recheck (several transactions), taken out of the pool: however the
/// work ends (an error, a cancelled step), the connection is closed, not
/// returned, and the lock goes with it. `None` when another replica holds
/// the lock (it is doing the same work).
async fn drop_lock(pool: &PgPool) -> Result<Option<PgConnection>> {
    let mut conn = pool.acquire().await?.detach();
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(DROP_LOCK)
        .fetch_one(&mut conn)
        .await?;
    if !got {
        conn.close().await?;
        return Ok(None);
    }
    // A chunk is short; the whole drop is not one statement.
    sqlx::query("SET statement_timeout = 0")
        .execute(&mut conn)
        .await?;
    Ok(Some(conn))
}

/// Drops the oldest day if it ends at or before `before`, keeping the
/// events of the runs still stored in a kept day ([`swap`]).
pub(crate) async fn drop_oldest_day(
    pool: &PgPool,
    before: DateTime<Utc>,
    pace: Pace,
) -> Result<Option<DroppedDay>> {
    let days = attached(pool, DAY).await?;
    let Some((table, day)) = days
        .into_iter()
        .next()
        .and_then(|t| day_of(&t).map(|d| (t, d)))
    else {
        return Ok(None);
    };
    if start(next(day)) > before {
        return Ok(None);
    }
    let Some(mut conn) = drop_lock(pool).await? else {
        return Ok(None);
    };
    let out = swap(&mut conn, &table, day, true, pace).await;
    conn.close().await?;
    out
}

/// Rewrites each kept day whose runs are not all stored any more (purged
/// since), or drops it when none is; unchanged ones stay. Also drops what
/// an interrupted drop left behind: a detached past day, a kept day never
/// attached (with the lock held, no copy is in progress).
pub(crate) async fn recheck_kept_days(pool: &PgPool, pace: Pace) -> Result<Vec<DroppedDay>> {
    let Some(mut conn) = drop_lock(pool).await? else {
        return Ok(Vec::new());
    };
    let out = recheck(&mut conn, pace).await;
    conn.close().await?;
    out
}

async fn recheck(conn: &mut PgConnection, pace: Pace) -> Result<Vec<DroppedDay>> {
    let today = Utc::now().date_naive();
    let stale: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c WHERE c.relkind = 'r' \
         AND (starts_with(c.relname::text, $1) OR starts_with(c.relname::text, $2)) \
         AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid)",
    )
    .bind(KEPT)
    .bind(DAY)
    .fetch_all(&mut *conn)
    .await?;
    for t in stale {
        if t.starts_with(KEPT) || day_of(&t).is_some_and(|d| d < today) {
            sqlx::query(AssertSqlSafe(format!("DROP TABLE IF EXISTS {t}")))
                .execute(&mut *conn)
                .await?;
        }
    }
    let kept: Vec<String> = sqlx::query_scalar(ATTACHED)
        .bind(KEPT)
        .fetch_all(&mut *conn)
        .await?;
    let mut out = Vec::new();
    for table in kept {
        if let Some(day) = day_of(&table) {
            out.extend(swap(conn, &table, day, false, pace).await?);
        }
    }
    Ok(out)
}

/// Pages of a day read per statement (one chunk) when its kept events are
/// copied: 512 kB, about 5,000 events (short statements: a long one holds
/// a core and the WAL the sagas in flight commit behind).
const CHUNK_PAGES: i64 = 64;

/// Copies the events of `table` whose runs are still stored into `kept`,
/// a chunk of pages per statement in the table's own order (a TID range
/// scan: no index, no sort; a past day gets no new rows), resting between
/// chunks as `pace` says. Returns the events read and those copied.
async fn copy_kept(
    conn: &mut PgConnection,
    table: &str,
    kept: &str,
    pace: Pace,
) -> Result<(i64, i64)> {
    let pages: i64 = sqlx::query_scalar(
        "SELECT pg_relation_size($1::regclass) / current_setting('block_size')::int8",
    )
    .bind(table)
    .fetch_one(&mut *conn)
    .await?;
    let (mut events, mut moved) = (0, 0);
    for first in (0..pages).step_by(CHUNK_PAGES as usize) {
        let started = Instant::now();
        // Page numbers only: nothing from outside is spliced in. Each run
        // of the chunk is looked up once (by the primary key), not once
        // per event.
        let sql = format!(
            "WITH c AS (SELECT * FROM {table} WHERE ctid >= '({first},0)'::tid \
                        AND ctid < '({},0)'::tid), \
                  k AS (SELECT id FROM runs WHERE id = ANY(ARRAY(SELECT DISTINCT run_id FROM c))), \
                  i AS (INSERT INTO {kept} SELECT c.* FROM c JOIN k ON k.id = c.run_id RETURNING 1) \
             SELECT (SELECT count(*) FROM c), (SELECT count(*) FROM i)",
            first + CHUNK_PAGES
        );
        let (n, copied): (i64, i64) = sqlx::query_as(AssertSqlSafe(sql))
            .persistent(false)
            .fetch_one(&mut *conn)
            .await?;
        events += n;
        moved += copied;
        pace.rest(started.elapsed()).await;
    }
    Ok((events, moved))
}

/// Replaces the partition `table` of `day` by a kept day holding only the
/// events of runs still stored, or by nothing when there are none. The
/// copy is made first, in chunks ([`copy_kept`]) under no lock anyone
/// waits for; then one short transaction detaches `table` and attaches the
/// copy for the same day (its CHECK constraint spares the scan); `table`
/// is dropped after. With `always` unset, a table whose events are all
/// still needed stays. The caller holds the drop lock on `conn`.
async fn swap(
    conn: &mut PgConnection,
    table: &str,
    day: NaiveDate,
    always: bool,
    pace: Pace,
) -> Result<Option<DroppedDay>> {
    let (from, to) = (start(day).to_rfc3339(), start(next(day)).to_rfc3339());
    let kept = format!(
        "{KEPT}{}_{}",
        day.format("%Y%m%d"),
        Utc::now().timestamp_micros()
    );
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE {kept} (LIKE run_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
    )))
    .execute(&mut *conn)
    .await?;
    let copying = Instant::now();
    let (events, moved) = copy_kept(conn, table, &kept, pace).await?;
    let copy_ms = copying.elapsed().as_millis() as u64;
    if !always && moved == events {
        sqlx::query(AssertSqlSafe(format!("DROP TABLE {kept}")))
            .execute(&mut *conn)
            .await?;
        return Ok(None);
    }
    let indexing = Instant::now();
    sqlx::query(AssertSqlSafe(format!(
        "ALTER TABLE {kept} ADD CONSTRAINT {kept}_day CHECK (at >= '{from}' AND at < '{to}'), \
         ADD PRIMARY KEY (run_id, seq, at)"
    )))
    .execute(&mut *conn)
    .await?;
    let index_ms = indexing.elapsed().as_millis() as u64;

    // Detach, attach the copy: the only exclusive lock on run_events.
    let mut tx = conn.begin().await?;
    let still: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass($1) \
         AND inhparent = 'run_events'::regclass)",
    )
    .bind(table)
    .fetch_one(&mut *tx)
    .await?;
    if !still {
        // Detached meanwhile by hand.
        sqlx::query(AssertSqlSafe(format!("DROP TABLE {kept}")))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        return Ok(None);
    }
    sqlx::query(LOCK_TIMEOUT).execute(&mut *tx).await?;
    let locked_at = Instant::now();
    let mut steps = vec![format!("ALTER TABLE run_events DETACH PARTITION {table}")];
    if moved > 0 {
        steps.push(format!(
            "ALTER TABLE run_events ATTACH PARTITION {kept} FOR VALUES FROM ('{from}') TO ('{to}')"
        ));
    }
    for sql in steps {
        sqlx::query(AssertSqlSafe(sql)).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    let locked_ms = locked_at.elapsed().as_millis() as u64;
    // Detached, the day is no part of run_events: dropping it (unlinking
    // its files) waits for nothing and holds nothing anyone waits for.
    let drop = match moved {
        0 => format!("DROP TABLE IF EXISTS {table}, {kept}"),
        _ => format!("DROP TABLE IF EXISTS {table}"),
    };
    let dropping = Instant::now();
    sqlx::query(AssertSqlSafe(drop)).execute(&mut *conn).await?;
    let drop_ms = dropping.elapsed().as_millis() as u64;
    tracing::info!(
        partition = %table, events, moved, copy_ms, index_ms, locked_ms, drop_ms,
        "event partition dropped"
    );
    Ok(Some(DroppedDay {
        partition: table.to_owned(),
        events: events as u64,
        moved: moved as u64,
        locked_ms,
        copy_ms,
        index_ms,
        drop_ms,
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
        assert_eq!(day_of("run_events_k20261203_1764720000000000"), Some(d));
        assert_eq!(start(next(d)).to_rfc3339(), "2026-12-04T00:00:00+00:00");
    }
}
