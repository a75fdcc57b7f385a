//! The ceiling: raw PostgreSQL checkpoint rates next to sagaflow's.

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use crate::setup::Setup;
use crate::throughput::{STARTERS, throughput};

pub(crate) async fn ceiling(
    s: &Setup,
    runs: usize,
    concurrency: usize,
    seconds: u64,
    connections: u32,
) -> anyhow::Result<Value> {
    use sagaflow_engine::store::postgres::ceiling as raw;
    let pool =
        s.pg.clone()
            .context("the ceiling scenario needs a postgres:// database")?;
    let engine = throughput(s, runs, concurrency, STARTERS).await?;
    let ours = engine["step_checkpoints_per_s"].as_f64().unwrap_or(0.0);
    let ids = raw::create_tables(&pool, 10_000).await?;
    let d = Duration::from_secs(seconds);
    let workers = connections as usize;
    let single = raw::single(&pool, &ids, workers, d).await? as f64 / d.as_secs_f64();
    let batched = raw::batched(&pool, &ids, workers, d).await? as f64 / d.as_secs_f64();
    raw::drop_tables(&pool).await?;
    Ok(json!({
        "scenario": "ceiling",
        "backend": "postgres",
        "connections": connections,
        "sagaflow_step_checkpoints_per_s": ours,
        "raw_single_statement_per_s": single,
        "raw_10x10_per_tx_per_s": batched,
        "ratio_to_single": ours / single.max(1.0),
        "ratio_to_batched": ours / batched.max(1.0),
        "sagaflow": engine,
    }))
}
