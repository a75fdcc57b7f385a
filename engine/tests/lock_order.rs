//! Statements that update many runs at once lock them in id order,
//! whatever order they are handed in: a lease renewal and a checkpoint
//! batch given runs `[high, low]` wait for `low` before they touch `high`.
//! Were they to lock in the order given (or the table's), two batches
//! sharing runs could each hold what the other waits for, and PostgreSQL's
//! deadlock detector would break one after a second's stall.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sagaflow_engine::clock::SystemClock;
use sagaflow_engine::ids::{LeaseToken, RunId};
use sagaflow_engine::state::RunState;
use sagaflow_engine::store::{Checkpoint, CheckpointAck, RunRecord, Store};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use support::*;

const LEASE: Duration = Duration::from_secs(60);

/// Two runs of a fresh workflow leased to one token, by id, among 5,000
/// finished copies (the table a batch meets in service, not one of two
/// rows, where the planner would scan the whole table instead of looking
/// runs up by id). The lower one's row is then rewritten, so that the
/// table holds its current version after the higher one's: neither the
/// order given (`[high, low]`) nor the table's order is the id order.
async fn two_leased(
    pool: &sqlx::PgPool,
    store: &Arc<dyn Store>,
    token: LeaseToken,
) -> Vec<RunRecord> {
    let h = Harness::idle(
        store.clone(),
        &[saga_toml("order", 1, 2, "")],
        Arc::new(SystemClock),
    )
    .await;
    for i in 0..2 {
        h.start("order", json!({ "i": i })).await;
    }
    let mut claimed = store
        .claim("A", token, Utc::now(), LEASE, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    claimed.sort_by_key(|r| r.id.0);
    sqlx::query(
        "INSERT INTO runs (id, tenant_id, workflow_name, workflow_version, definition_id, state, \
            input, input_hash, context, steps, created_at, updated_at, finished_at) \
         SELECT gen_random_uuid(), tenant_id, workflow_name, workflow_version, definition_id, \
            'COMPLETED', input, input_hash, context, steps, created_at, updated_at, now() \
         FROM runs, generate_series(1, 2500) WHERE id = ANY($1)",
    )
    .bind(claimed.iter().map(|r| r.id.0).collect::<Vec<_>>())
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE runs").execute(pool).await.unwrap();
    sqlx::query("UPDATE runs SET updated_at = updated_at WHERE id = $1")
        .bind(claimed[0].id.0)
        .execute(pool)
        .await
        .unwrap();
    claimed
}

/// Another session locks `low`; `write` is started with the runs in the
/// order `[high, low]` and left waiting for it. While it waits, `high` must
/// still be free: the other session takes it without waiting. Then the
/// other session ends and `write` finishes.
async fn waits_for_low_before_high<F, Fut, T>(
    pool: &sqlx::PgPool,
    low: RunId,
    high: RunId,
    write: F,
) -> T
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let url = pool.connect_options();
    let mut other = PgConnection::connect_with(&url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut other).await.unwrap();
    sqlx::query("SELECT 1 FROM runs WHERE id = $1 FOR UPDATE")
        .bind(low.0)
        .execute(&mut other)
        .await
        .unwrap();
    let task = tokio::spawn(write());
    let waiting = pool.clone();
    poll(
        "the write to wait for the locked run",
        Duration::from_secs(10),
        || {
            let waiting = waiting.clone();
            async move {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                )
                .fetch_one(&waiting)
                .await
                .unwrap();
                (n > 0).then_some(())
            }
        },
    )
    .await;
    let high_free = sqlx::query("SELECT 1 FROM runs WHERE id = $1 FOR UPDATE NOWAIT")
        .bind(high.0)
        .execute(&mut other)
        .await;
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the write finished once the other session ended")
        .unwrap();
    assert!(
        high_free.is_ok(),
        "the write locked the higher id before the lower one: {high_free:?}"
    );
    out
}

#[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
async fn a_lease_renewal_locks_its_runs_in_id_order(pool: sqlx::PgPool) {
    let store = postgres(pool.clone());
    let token = LeaseToken::new();
    let runs = two_leased(&pool, &store, token).await;
    let (low, high) = (runs[0].id, runs[1].id);
    let s = store.clone();
    let lost = waits_for_low_before_high(&pool, low, high, move || async move {
        s.renew_leases(&[(high, token), (low, token)], LEASE).await
    })
    .await
    .unwrap();
    assert!(lost.is_empty(), "both leases renewed: {lost:?}");
}

#[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
async fn a_checkpoint_batch_locks_its_runs_in_id_order(pool: sqlx::PgPool) {
    let store = postgres(pool.clone());
    let token = LeaseToken::new();
    let runs = two_leased(&pool, &store, token).await;
    let (low, high) = (runs[0].id, runs[1].id);
    let now = Utc::now();
    let cps: Vec<Checkpoint> = [&runs[1], &runs[0]]
        .into_iter()
        .map(|r| Checkpoint {
            run_id: r.id,
            lease: token,
            id: uuid::Uuid::now_v7(),
            expected_seq: r.last_seq,
            now,
            state: RunState::Running,
            cursor: 0,
            context: None,
            steps: r.steps.clone(),
            error: None,
            events: vec![],
            next_run_at: None,
            keep_lease: Some(LEASE),
            finished_at: None,
            release_concurrency_key: false,
            take_signal: None,
            deliveries: vec![],
        })
        .collect();
    let s = store.clone();
    let acks = waits_for_low_before_high(&pool, low, high, move || async move {
        s.checkpoint_many(&cps).await
    })
    .await
    .unwrap();
    assert!(
        acks.iter()
            .all(|a| matches!(a, CheckpointAck::Applied { .. })),
        "both checkpoints applied: {acks:?}"
    );
    for r in [low, high] {
        let run = store.get_run(&tenant(), r).await.unwrap().unwrap();
        assert_eq!(run.state, RunState::Running, "run {r} written");
    }
}
