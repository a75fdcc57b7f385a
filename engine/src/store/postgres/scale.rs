//! Bulk seeding for `sagaflow bench scale`: finished runs written by the
//! database itself, as a year of production would leave them.

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, PgPool};

use super::Result;

/// Inserts `n` finished runs of `workflows` (round robin) for `tenant`,
/// created over the `span_days` before `until`, in one statement per
/// `chunk` rows; 90 % COMPLETED, the rest COMPENSATED, FAILED and
/// CANCELLED (the FAILED ones stopped at the seventh or eighth step); every
/// tenth with a concurrency key; each with an idempotency key
/// (`order-<n>`) and the search attribute `subscriber_id`
/// (`subscriber-<n mod 100000>`). Their `steps` are a realistic ten-step
/// record.
#[allow(clippy::too_many_arguments)]
pub async fn seed_finished(
    pool: &PgPool,
    tenant: &str,
    definition_id: &str,
    workflows: &[String],
    n: u64,
    chunk: u64,
    until: DateTime<Utc>,
    span_days: u32,
    mut progress: impl FnMut(u64),
) -> Result<()> {
    let steps = crate::store::steps_encode(
        &(1..=10)
            .map(|i| crate::store::StepRecord {
                state: crate::run::state::StepState::Succeeded,
                attempts: 1,
                started_at: Some(until),
                finished_at: Some(until),
                ..crate::store::StepRecord::new(&format!("step{i}"))
            })
            .collect::<Vec<_>>(),
    );
    let span_us = i64::from(span_days) * 86_400_000_000;
    let mut done = 0;
    while done < n {
        let k = chunk.min(n - done);
        sqlx::query(
            "WITH r AS (INSERT INTO runs (id, tenant_id, workflow_name, workflow_version, definition_id, state, \
                input, input_hash, context, steps, cursor, idempotency_key, concurrency_key, last_seq, \
                created_at, updated_at, finished_at) \
             SELECT gen_random_uuid(), $1, ($2::text[])[1 + g % cardinality($2::text[])], 1, $3, \
                CASE WHEN g % 100 < 90 THEN 'COMPLETED' WHEN g % 100 < 96 THEN 'COMPENSATED' \
                     WHEN g % 100 < 98 THEN 'FAILED' ELSE 'CANCELLED' END, \
                jsonb_build_object('i', g, 'subscriber_id', 'subscriber-' || (g % 100000)), md5(g::text), \
                jsonb_build_object('i', g), $4, CASE WHEN g % 100 BETWEEN 96 AND 97 THEN g % 10 ELSE 10 END, \
                'order-' || g, CASE WHEN g % 10 = 0 THEN 'subscriber-' || (g % 100000) END, 22, \
                $5 - make_interval(secs => (g * ($6::float8 / $7::float8)) / 1e6), \
                $5 - make_interval(secs => (g * ($6::float8 / $7::float8)) / 1e6) + interval '20 ms', \
                $5 - make_interval(secs => (g * ($6::float8 / $7::float8)) / 1e6) + interval '20 ms' \
             FROM generate_series($8::int8, $9::int8) AS g RETURNING id, input) \
             INSERT INTO run_search (run_id, tenant_id, key, value) \
             SELECT id, $1, 'subscriber_id', input->>'subscriber_id' FROM r",
        )
        .bind(tenant)
        .bind(workflows)
        .bind(definition_id)
        .bind(&steps)
        .bind(until)
        .bind(span_us as f64)
        .bind(n as f64)
        .bind(done as i64)
        .bind((done + k - 1) as i64)
        .execute(pool)
        .await?;
        done += k;
        progress(done);
    }
    sqlx::query("ANALYZE runs").execute(pool).await?;
    sqlx::query("ANALYZE run_search").execute(pool).await?;
    Ok(())
}

/// Up to `n` random run ids of `tenant`.
pub async fn sample_ids(pool: &PgPool, tenant: &str, n: i64) -> Result<Vec<uuid::Uuid>> {
    // A 1 % sample of the pages spreads the reads over a large table; on a
    // small one it can hold none of the tenant's runs: then the first ones.
    let sampled: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT id FROM runs TABLESAMPLE SYSTEM (1) WHERE tenant_id = $1 LIMIT $2",
    )
    .bind(tenant)
    .bind(n)
    .fetch_all(pool)
    .await?;
    if !sampled.is_empty() {
        return Ok(sampled);
    }
    Ok(
        sqlx::query_scalar("SELECT id FROM runs WHERE tenant_id = $1 LIMIT $2")
            .bind(tenant)
            .bind(n)
            .fetch_all(pool)
            .await?,
    )
}

/// Seeds `per_run` `step_succeeded` events for each of `tenant`'s runs
/// created in `[from, to)` (one statement); how many were written.
pub async fn seed_events(
    pool: &PgPool,
    tenant: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    per_run: i64,
) -> Result<u64> {
    Ok(sqlx::query(
        "INSERT INTO run_events (run_id, seq, at, kind, step, attempt, run_state, actor) \
         SELECT r.id, s, r.created_at + s * interval '1 ms', 'step_succeeded', 'step' || s, 1, \
            r.state, 'bench' \
         FROM runs r, generate_series(1, $4::int8) AS s \
         WHERE r.tenant_id = $1 AND r.created_at >= $2 AND r.created_at < $3",
    )
    .bind(tenant)
    .bind(from)
    .bind(to)
    .bind(per_run)
    .execute(pool)
    .await?
    .rows_affected())
}

/// `VACUUM (FREEZE, ANALYZE)` of what the seeds wrote: seeded rows stand
/// for rows written months ago, which autovacuum has long since visited
/// (hint bits set, pages all-visible). Left unvisited, the first reader of
/// each page (retention's copy of a day) sets its hint bits and dirties it:
/// hundreds of MB written back in bursts that no real database sees.
pub async fn vacuum_seeded(pool: &PgPool) -> Result<()> {
    for table in ["runs", "run_search", "run_events"] {
        sqlx::raw_sql(AssertSqlSafe(format!("VACUUM (FREEZE, ANALYZE) {table}")))
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// `CHECKPOINT`: dirty pages written out now.
pub async fn checkpoint(pool: &PgPool) -> Result<()> {
    sqlx::query("CHECKPOINT").execute(pool).await?;
    Ok(())
}

/// The longest any other transaction now holds a lock on `runs` or
/// `run_events` (any mode), and the longest it holds one that blocks
/// writes (share modes and stronger), in seconds.
pub async fn held_locks(pool: &PgPool) -> Result<(f64, f64)> {
    Ok(sqlx::query_as(
        "SELECT coalesce(max(age), 0)::float8, \
            coalesce(max(age) FILTER (WHERE mode IN ('ShareLock', 'ShareRowExclusiveLock', \
                'ExclusiveLock', 'AccessExclusiveLock')), 0)::float8 \
         FROM (SELECT extract(epoch FROM clock_timestamp() - a.xact_start) AS age, l.mode \
               FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
               WHERE l.locktype = 'relation' \
               AND l.relation IN ('runs'::regclass, 'run_events'::regclass) \
               AND l.granted AND a.pid <> pg_backend_pid()) x",
    )
    .fetch_one(pool)
    .await?)
}

/// `ANALYZE runs`, as autovacuum would have done after the thousands of
/// runs a calibration wrote (it analyzes a table once a tenth of it has
/// changed). Without it (autovacuum off), the executor's prepared batch
/// statements keep the generic plans PostgreSQL made while the table was
/// nearly empty, which scan all of `runs` on every checkpoint; the new
/// statistics make it plan them again (docs/performance.md).
pub async fn analyze_runs(pool: &PgPool) -> Result<()> {
    sqlx::query("ANALYZE runs").execute(pool).await?;
    Ok(())
}
