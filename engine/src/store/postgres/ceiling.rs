//! Raw checkpoint rates of this PostgreSQL server, for `sagaflow bench
//! ceiling`: the cheapest ways a client can write a step checkpoint.

use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;

use super::Result;

/// Creates the scratch tables (dropped by [`drop_tables`]).
pub async fn create_tables(pool: &PgPool, runs: usize) -> Result<Vec<Uuid>> {
    sqlx::query("DROP TABLE IF EXISTS ceiling_events, ceiling_runs")
        .execute(pool)
        .await?;
    sqlx::query("CREATE TABLE ceiling_runs (id UUID PRIMARY KEY, seq BIGINT NOT NULL, state TEXT NOT NULL, steps TEXT NOT NULL)")
        .execute(pool)
        .await?;
    sqlx::query("CREATE TABLE ceiling_events (run_id UUID NOT NULL, seq BIGINT NOT NULL, kind TEXT NOT NULL, PRIMARY KEY (run_id, seq))")
        .execute(pool)
        .await?;
    let ids: Vec<Uuid> = (0..runs).map(|_| Uuid::now_v7()).collect();
    sqlx::query(
        "INSERT INTO ceiling_runs SELECT id, 0, 'RUNNING', '[]' FROM unnest($1::uuid[]) AS id",
    )
    .bind(&ids)
    .execute(pool)
    .await?;
    Ok(ids)
}

pub async fn drop_tables(pool: &PgPool) -> Result<()> {
    sqlx::query("DROP TABLE IF EXISTS ceiling_events, ceiling_runs")
        .execute(pool)
        .await?;
    Ok(())
}

/// The `steps` value every checkpoint writes.
const STEPS: &str = r#"[{"n":"step1","s":"SUCCEEDED","a":1}]"#;

/// One prepared single statement (update the run, append its event)
/// per transaction, from `workers` tasks, for `duration`. Returns the
/// checkpoints written.
pub async fn single(
    pool: &PgPool,
    ids: &[Uuid],
    workers: usize,
    duration: Duration,
) -> Result<u64> {
    run(pool, ids, workers, duration, 1, |pool, chunk| async move {
        let id = chunk[0];
        sqlx::query(
            "WITH u AS (UPDATE ceiling_runs SET seq = seq + 1, state = 'RUNNING', steps = $2 WHERE id = $1 RETURNING id, seq) \
             INSERT INTO ceiling_events SELECT id, seq, 'step_succeeded' FROM u",
        )
        .bind(id)
        .bind(STEPS)
        .execute(&pool)
        .await?;
        Ok(1)
    })
    .await
}

/// Ten checkpoints of ten runs per transaction: one statement with
/// arrays, as the engine's group commit writes them.
pub async fn batched(
    pool: &PgPool,
    ids: &[Uuid],
    workers: usize,
    duration: Duration,
) -> Result<u64> {
    run(pool, ids, workers, duration, 10, |pool, chunk| async move {
        let n = chunk.len() as u64 * 10;
        let mut tx = pool.begin().await?;
        for _ in 0..10 {
            sqlx::query(
                "WITH u AS (UPDATE ceiling_runs SET seq = seq + 1, steps = $2 \
                            FROM unnest($1::uuid[]) AS c(id) WHERE ceiling_runs.id = c.id RETURNING ceiling_runs.id, seq) \
                 INSERT INTO ceiling_events SELECT id, seq, 'step_succeeded' FROM u",
            )
            .bind(&chunk)
            .bind(STEPS)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(n)
    })
    .await
}

/// Runs `op` on chunks of `per_task` of `ids` from `workers` tasks until
/// `duration` is over; returns the sum of what the calls returned. Each
/// call gets its own handle on `pool`.
async fn run<F, Fut>(
    pool: &PgPool,
    ids: &[Uuid],
    workers: usize,
    duration: Duration,
    per_task: usize,
    op: F,
) -> Result<u64>
where
    F: Fn(PgPool, Vec<Uuid>) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<u64>> + Send,
{
    let end = Instant::now() + duration;
    let mut tasks = Vec::new();
    let per_worker = (ids.len() / workers.max(1)).max(per_task);
    for w in 0..workers {
        let mine: Vec<Uuid> = ids
            .iter()
            .skip(w * per_worker)
            .take(per_worker)
            .copied()
            .collect();
        let op = op.clone();
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            let mut i = 0;
            while Instant::now() < end && !mine.is_empty() {
                let chunk: Vec<Uuid> = (0..per_task).map(|k| mine[(i + k) % mine.len()]).collect();
                i += per_task;
                done += op(pool.clone(), chunk).await?;
            }
            Ok::<u64, super::StoreError>(done)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t
            .await
            .map_err(|e| super::StoreError::Corrupt(e.to_string()))??;
    }
    Ok(total)
}
