//! Durable timers survive the replica that set them: runs sleep on a real
//! `sagaflow serve` process, which is SIGKILLed while they wait; another
//! replica (started only then) wakes every one of them once, on time
//! within a poll interval, and the step after the sleep applies its effect
//! exactly once per run.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sagaflow_engine::Engine;
use sagaflow_engine::clock::SystemClock;
use sagaflow_engine::definition::Definitions;
use sagaflow_engine::engine::StartRequest;
use sagaflow_engine::ids::{RunId, TenantId};
use sagaflow_engine::state::{RunState, StepState};
use sagaflow_engine::store::postgres::PgStore;
use sagaflow_engine::store::{EventKind, RunRecord};
use serde_json::json;
use sqlx::PgPool;

const WORKFLOW: &str = "name = \"nap_saga\"\nversion = 1\n\
    [[steps]]\nname = \"before\"\nhandler = \"ledger.apply\"\n\
    [[steps]]\nname = \"nap\"\nkind = \"sleep\"\nduration_ms = 4000\n\
    [[steps]]\nname = \"after\"\nhandler = \"ledger.apply\"\n";

async fn all_runs(engine: &Engine, ids: &[RunId]) -> Vec<RunRecord> {
    let tenant = TenantId::new("timers");
    let mut out = Vec::new();
    for id in ids {
        out.push(engine.get(&tenant, *id).await.unwrap());
    }
    out
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn timers_fire_once_on_the_other_replica_after_a_sigkill(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("nap_saga.toml"), WORKFLOW).unwrap();
    let url = common::database_url(&pool);
    let deps = sagaflow_steps::Deps {
        postgres: Some(pool.clone()),
        ..Default::default()
    };
    let registry = sagaflow::app::registry(&deps);
    let defs = Definitions::load_dir(dir.path(), &registry).unwrap();
    let store = Arc::new(PgStore::from_pool(pool.clone()));
    let engine = Engine::new(store, Arc::new(registry), defs, Arc::new(SystemClock))
        .await
        .unwrap();

    let a = common::serve::spawn_serve(&url, dir.path(), "timers-a", None);
    let mut ids = Vec::new();
    for i in 0..20 {
        let s = engine
            .start(StartRequest::new("timers", "nap_saga", json!({"n": i})))
            .await
            .unwrap();
        ids.push(s.run.id);
    }
    // Every run sleeps, released by replica A.
    let deadline = Instant::now() + Duration::from_secs(60);
    let waiting = loop {
        let runs = all_runs(&engine, &ids).await;
        if runs
            .iter()
            .all(|r| r.steps[1].state == StepState::Waiting && r.lease_owner.is_none())
        {
            break runs;
        }
        assert!(
            Instant::now() < deadline,
            "the runs never all slept: {:?}",
            runs.iter()
                .map(|r| (r.state, r.steps[1].state, r.lease_owner.clone()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval (loop has a deadline)
    };
    let mut a = a;
    a.0.kill().expect("SIGKILL");
    a.0.wait().unwrap();
    let _b = common::serve::spawn_serve(&url, dir.path(), "timers-b", None);

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let runs = all_runs(&engine, &ids).await;
        if runs.iter().all(|r| r.state == RunState::Completed) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "runs not completed: {:?}",
            runs.iter().map(|r| r.state).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval (loop has a deadline)
    }
    let tenant = TenantId::new("timers");
    let mut late = Vec::new();
    for r in &waiting {
        let wake = r.steps[1].wake_at.unwrap();
        let woken: Vec<_> = engine
            .events(&tenant, r.id, 0)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == EventKind::StepWoken)
            .collect();
        assert_eq!(woken.len(), 1, "run {}: the timer fires once", r.id);
        let delay = woken[0].at - wake;
        assert!(delay >= chrono::Duration::zero(), "never early: {delay}");
        late.push(delay.num_milliseconds());
    }
    // Within a poll interval (50 ms), with room for a busy test machine.
    let worst = late.iter().max().copied().unwrap_or_default();
    assert!(worst < 1000, "timers fired up to {worst} ms late: {late:?}");
    let per_key: Vec<(String, i64)> = sqlx::query_as(
        "SELECT idempotency_key, count(*) FROM effect_ledger \
         WHERE idempotency_key LIKE '%:after' GROUP BY idempotency_key",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        per_key.len(),
        ids.len(),
        "every run's step after the sleep ran"
    );
    assert!(per_key.iter().all(|(_, n)| *n == 1), "{per_key:?}");
    eprintln!("20 timers fired on the other replica; lateness {late:?} ms");
}
