//! The settings every connection of the store's pools starts with: its
//! statement timeout, and the pages it writes flushed every 256 kB
//! (`backend_flush_after`) so that the kernel never holds a burst of
//! write-back for the sagas' commits to wait behind; and what a connection
//! the server ended costs the executor (nothing).
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sagaflow_engine::state::RunState;
use sagaflow_engine::store::postgres::{PgOptions, PgStore};
use serde_json::json;
use support::*;

#[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
async fn store_connections_flush_what_they_write_as_they_go(pool: sqlx::PgPool) {
    let opts = PgOptions {
        max_connections: 2,
        statement_timeout: Duration::from_millis(12_345),
        ..PgOptions::default()
    };
    let pg = PgStore::connect_opts((*pool.connect_options()).clone(), &opts)
        .await
        .unwrap();
    let mut conn = pg.pool().acquire().await.unwrap();
    let (flush, timeout): (String, String) = sqlx::query_as(
        "SELECT current_setting('backend_flush_after'), current_setting('statement_timeout')",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(flush, "256kB");
    assert_eq!(timeout, "12345ms");

    // A connection opened otherwise keeps the server's default (0: off).
    let other: String = sqlx::query_scalar("SELECT current_setting('backend_flush_after')")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(other, "0");
}

/// Every connection of the executor's pool is ended by the server
/// (`pg_terminate_backend`, as an operator or a failover does) while a
/// step runs: the run's next checkpoint is written on a connection opened
/// again, the run ends with each step called once and a gapless history.
#[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
async fn an_executor_connection_the_server_ended_costs_nothing(pool: sqlx::PgPool) {
    let pg = PgStore::connect_opts((*pool.connect_options()).clone(), &PgOptions::default())
        .await
        .unwrap();
    let h = Harness::new(Arc::new(pg), &[saga_toml("closed", 1, 3, "")]).await;
    let started = h.start("closed", json!({"sleep_ms": {"s2": 1500}})).await;
    let id = started.run.id;
    // s2 runs: the checkpoint that recorded its start was written on an
    // executor connection.
    poll("s2 to start", Duration::from_secs(30), || {
        let pool = pool.clone();
        async move { (events(&pool, id, "step_started", "s2").await == 1).then_some(()) }
    })
    .await;
    let closed = terminate(&pool, "sagaflow-executor").await;
    assert!(closed >= 1, "no executor connection was open");
    h.wait_state(id, RunState::Completed).await;
    let mut per_step: HashMap<String, u32> = HashMap::new();
    for c in h.script.calls() {
        *per_step.entry(c.step).or_default() += 1;
    }
    assert_eq!(per_step.len(), 3);
    assert!(per_step.values().all(|n| *n == 1), "{per_step:?}");
    let seqs: Vec<i64> =
        sqlx::query_scalar("SELECT seq FROM run_events WHERE run_id = $1 ORDER BY seq")
            .bind(id.0)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    h.shutdown().await;
}

/// A statement whose connection the server ends under it (SQLSTATE 57P01,
/// as at a shutdown or a failover) failed because the database went away,
/// not because of the statement: the executor retries it, the API answers
/// UNAVAILABLE.
#[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
async fn a_connection_the_server_ends_counts_as_the_database_unreachable(pool: sqlx::PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let err = sqlx::query("SELECT pg_terminate_backend(pg_backend_pid())")
        .execute(&mut *conn)
        .await
        .unwrap_err();
    assert!(
        sagaflow_engine::store::unreachable_database(&err),
        "not counted as unreachable: {err:?}"
    );
    assert!(sagaflow_engine::store::StoreError::Database(err).is_unavailable());
}

/// Starts keep their connection between inserts, unpinged while it is
/// fresh. A kept connection the server ended while it sat idle (a restart,
/// an operator) is not used once it is older than a second: the next start
/// takes a pinged one and succeeds.
#[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
async fn a_start_after_the_server_ended_the_kept_connections_succeeds(pool: sqlx::PgPool) {
    let pg = PgStore::connect_opts((*pool.connect_options()).clone(), &PgOptions::default())
        .await
        .unwrap();
    let h = Harness::new(Arc::new(pg), &[saga_toml("kept", 1, 2, "")]).await;
    let first = h
        .start("kept", json!({"sleep_ms": {"s1": 1500}}))
        .await
        .run
        .id;
    let closed = terminate(&pool, "sagaflow").await;
    assert!(closed >= 1, "no connection of the general pool was open");
    // The first run's first step takes 1.5 s: once it is done, the kept
    // connection has sat unused for longer than a second.
    poll(
        "s1 of the first run to succeed",
        Duration::from_secs(30),
        || {
            let pool = pool.clone();
            async move { (events(&pool, first, "step_succeeded", "s1").await == 1).then_some(()) }
        },
    )
    .await;
    let second = h
        .engine
        .start(sagaflow_engine::engine::StartRequest::new(
            TENANT,
            "kept",
            json!({}),
        ))
        .await
        .expect("a start on a connection opened again");
    h.wait_state(first, RunState::Completed).await;
    h.wait_state(second.run.id, RunState::Completed).await;
    h.shutdown().await;
}

/// How many events of `kind` for `step` run `id` has, read where they land.
async fn events(
    pool: &sqlx::PgPool,
    id: sagaflow_engine::ids::RunId,
    kind: &str,
    step: &str,
) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM run_events WHERE run_id = $1 AND kind = $2 AND step = $3",
    )
    .bind(id.0)
    .bind(kind)
    .bind(step)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Ends every connection of this database named `application` on the
/// server's side (as an operator or a failover does); how many.
async fn terminate(pool: &sqlx::PgPool, application: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND datname = current_database()) t",
    )
    .bind(application)
    .fetch_one(pool)
    .await
    .unwrap()
}
