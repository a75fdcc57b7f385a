//! Two engine instances on one PostgreSQL database share the work: every
//! run completes and no step attempt ever runs on both at once.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sagaflow_engine::Engine;
use sagaflow_engine::clock::SystemClock;
use sagaflow_engine::engine::StartRequest;
use sagaflow_engine::state::RunState;
use sagaflow_engine::store::postgres::PgStore;
use sagaflow_engine::store::{RunFilter, Store};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use support::*;

#[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
async fn two_instances_complete_1000_runs_without_overlap(pool: sqlx::PgPool) {
    let pool_b = PgPoolOptions::new()
        .max_connections(5)
        .connect_with((*pool.connect_options()).clone())
        .await
        .unwrap();
    let script_a = Script::named("a");
    let script_b = Script {
        instance: "b".into(),
        ..script_a.clone()
    };
    let toml = saga_toml("shared", 1, 3, "");
    let mut engines = Vec::new();
    let mut executors = Vec::new();
    for (name, script, store) in [
        (
            "a",
            &script_a,
            Arc::new(PgStore::from_pool(pool.clone())) as Arc<dyn Store>,
        ),
        (
            "b",
            &script_b,
            Arc::new(PgStore::from_pool(pool_b)) as Arc<dyn Store>,
        ),
    ] {
        let registry = script.registry();
        let defs = definitions(&registry, std::slice::from_ref(&toml));
        let engine = Engine::new(store, Arc::new(registry), defs, Arc::new(SystemClock))
            .await
            .unwrap();
        executors.push(
            engine.start_executor(sagaflow_engine::executor::ExecutorOptions {
                max_in_flight: 64,
                claim_batch: 16,
                ..fast(name)
            }),
        );
        engines.push(engine);
    }
    let runs = 1000;
    for i in 0..runs {
        let engine = &engines[i % 2];
        engine
            .start(StartRequest::new(
                TENANT,
                "shared",
                json!({"i": i, "sleep_ms": {"s2": 1}}),
            ))
            .await
            .unwrap();
    }
    let done = poll("all runs to complete", Duration::from_secs(180), || {
        let engine = engines[0].clone();
        async move {
            let f = RunFilter {
                states: vec![RunState::Completed],
                limit: 2000,
                ..Default::default()
            };
            let n = engine.list(&tenant(), &f).await.unwrap().len();
            (n == runs).then_some(n)
        }
    })
    .await;
    assert_eq!(done, runs);
    for e in executors {
        e.shutdown().await;
    }

    let calls = script_a.calls();
    let mut by_key: HashMap<&str, Vec<&Call>> = HashMap::new();
    for c in &calls {
        by_key.entry(c.key.as_str()).or_default().push(c);
    }
    assert_eq!(by_key.len(), runs * 3, "every step of every run was called");
    for (key, mut cs) in by_key {
        cs.sort_by_key(|c| c.started);
        for w in cs.windows(2) {
            assert!(
                w[0].ended <= w[1].started,
                "attempts of {key} overlapped on {} and {}",
                w[0].instance,
                w[1].instance
            );
        }
        assert_eq!(
            cs.len(),
            1,
            "{key} ran once: nothing failed, no lease was lost"
        );
    }
    let on_a = calls.iter().filter(|c| c.instance == "a").count();
    let on_b = calls.len() - on_a;
    assert!(
        on_a > 0 && on_b > 0,
        "both instances did work (a: {on_a}, b: {on_b})"
    );
}
