//! Lease renewal and checkpoints have a pool of their own: a saturated API
//! pool (slow listings, slow queries, far more callers than connections)
//! does not cost a single lease.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sagaflow_engine::Engine;
use sagaflow_engine::clock::SystemClock;
use sagaflow_engine::engine::StartRequest;
use sagaflow_engine::executor::ExecutorOptions;
use sagaflow_engine::store::RunFilter;
use sagaflow_engine::store::postgres::{PgOptions, PgStore};
use serde_json::json;
use support::*;

#[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
async fn a_saturated_api_pool_costs_no_lease(pool: sqlx::PgPool) {
    let opts = PgOptions {
        max_connections: 4,
        hot_connections: 4,
        acquire_timeout: Duration::from_secs(1),
        ..PgOptions::default()
    };
    let pg = PgStore::connect_opts((*pool.connect_options()).clone(), &opts)
        .await
        .unwrap();
    let api_pool = pg.pool().clone();
    let script = Script::named("a");
    let registry = script.registry();
    let defs = definitions(&registry, &[saga_toml("busy", 1, 3, "")]);
    let engine = Engine::new(
        Arc::new(pg),
        Arc::new(registry),
        defs,
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let runs = 200;
    for i in 0..runs {
        engine
            .start(StartRequest::new(
                TENANT,
                "busy",
                json!({"i": i, "sleep_ms": {"s1": 200, "s2": 200, "s3": 200}}),
            ))
            .await
            .unwrap();
    }
    // 200 callers on 4 connections: slow queries and listings, until the
    // runs are done.
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for i in 0..200 {
        let (stop, api_pool, engine) = (stop.clone(), api_pool.clone(), engine.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if i % 2 == 0 {
                    let _ = sqlx::query("SELECT pg_sleep(0.5)").execute(&api_pool).await;
                } else {
                    let f = RunFilter {
                        limit: 500,
                        ..Default::default()
                    };
                    let _ = engine.list(&tenant(), &f).await;
                }
            }
        }));
    }
    // The lease is long enough that a busy machine's scheduling delays (the
    // load above shares this test's one runtime thread) cannot expire it,
    // and far shorter than the wait for a connection that a shared pool
    // would impose on renewals (200 callers on 4 connections).
    let exec = engine.start_executor(ExecutorOptions {
        lease: Duration::from_secs(5),
        ..fast("a")
    });
    poll("every run to complete", Duration::from_secs(120), || {
        let pool = pool.clone();
        async move {
            let done: i64 =
                sqlx::query_scalar("SELECT count(*) FROM runs WHERE state = 'COMPLETED'")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            (done == runs).then_some(())
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let interrupted: i64 =
        sqlx::query_scalar("SELECT count(*) FROM run_events WHERE kind = 'step_interrupted'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(interrupted, 0, "attempts were cut short by lost leases");
    let mut per_step: HashMap<(String, String), u32> = HashMap::new();
    for c in script.calls() {
        *per_step.entry((c.run.to_string(), c.step)).or_default() += 1;
    }
    assert_eq!(per_step.len(), runs as usize * 3);
    assert!(
        per_step.values().all(|n| *n == 1),
        "a step ran twice: a lease was lost"
    );
    exec.shutdown().await;
}
