//! Checkpoints survive ambiguous commits: the connection is cut right after
//! the commit reaches PostgreSQL, so the executor never learns whether it
//! happened and sends the checkpoint again. No event is ever written twice
//! and every history still replays through the transition tables.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sagaflow_engine::Engine;
use sagaflow_engine::clock::SystemClock;
use sagaflow_engine::engine::StartRequest;
use sagaflow_engine::executor::ExecutorOptions;
use sagaflow_engine::state::{RunEvent, RunState};
use sagaflow_engine::store::EventRecord;
use serde_json::json;
use support::proxy::Proxy;
use support::*;

#[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
async fn resent_checkpoints_after_lost_commits_apply_once(pool: sqlx::PgPool) {
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let script = Script::named("a");
    let registry = script.registry();
    let defs = definitions(&registry, &[saga_toml("ambiguous", 1, 3, "")]);
    let engine = Engine::new(
        proxied(&pool, &proxy, 8).await,
        Arc::new(registry),
        defs,
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let mut ids = Vec::new();
    for i in 0..30 {
        let r = engine
            .start(StartRequest::new(TENANT, "ambiguous", json!({"i": i})))
            .await
            .unwrap();
        ids.push(r.run.id);
    }
    // From now on every third commit's answer is lost, 25 times.
    proxy.cut_after_commits(3, 25);
    let exec = engine.start_executor(ExecutorOptions {
        lease: Duration::from_secs(2),
        claim_batch: 4,
        ..fast("a")
    });
    let direct = sagaflow_engine::store::postgres::PgStore::from_pool(pool.clone());
    let direct: Arc<dyn sagaflow_engine::store::Store> = Arc::new(direct);
    for id in &ids {
        poll(
            &format!("run {id} to complete"),
            Duration::from_secs(60),
            || {
                let direct = direct.clone();
                let id = *id;
                async move {
                    let r = direct.get_run(&tenant(), id).await.unwrap().unwrap();
                    (r.state == RunState::Completed).then_some(())
                }
            },
        )
        .await;
    }
    assert!(
        proxy.cuts() >= 10,
        "only {} commits lost their answer",
        proxy.cuts()
    );
    for id in &ids {
        let run = direct.get_run(&tenant(), *id).await.unwrap().unwrap();
        let events = direct.events(&tenant(), *id, 0).await.unwrap().unwrap();
        assert_history(&events);
        assert_eq!(run.last_seq, events.len() as u64, "run {id}: last_seq");
    }
    exec.abort();
}

/// Gapless, no event twice, and every change of the run's state allowed by
/// the run's transition table.
fn assert_history(events: &[EventRecord]) {
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    let mut seen = HashSet::new();
    for e in events {
        assert!(
            seen.insert((e.kind, e.step.clone(), e.attempt)),
            "run {}: {:?} of {:?} attempt {} written twice",
            e.run_id,
            e.kind,
            e.step,
            e.attempt
        );
    }
    let mut state = RunState::Pending;
    for e in events {
        if e.run_state != state {
            assert!(
                RunEvent::ALL
                    .iter()
                    .any(|ev| state.apply(*ev).is_ok_and(|t| t.to == e.run_state)),
                "run {}: {state} cannot become {} ({:?})",
                e.run_id,
                e.run_state,
                e.kind
            );
            state = e.run_state;
        }
    }
    assert_eq!(state, RunState::Completed);
}
