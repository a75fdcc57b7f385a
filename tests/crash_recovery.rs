//! Crash recovery with the real process: the `sagaflow` binary runs against
//! PostgreSQL with the `ledger.*` handlers, is SIGKILLed over and over at
//! random moments, and restarted. Every run must end terminal, and no
//! idempotency key may have its effect applied more than once.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sagaflow_engine::Engine;
use sagaflow_engine::clock::SystemClock;
use sagaflow_engine::definition::Definitions;
use sagaflow_engine::engine::StartRequest;
use sagaflow_engine::state::RunState;
use sagaflow_engine::store::RunFilter;
use sagaflow_engine::store::postgres::PgStore;
use serde_json::json;
use sqlx::PgPool;

const STEPS: usize = 5;

fn workflow() -> String {
    let mut t = String::from(
        "name = \"ledger_saga\"\nversion = 1\n\
         [defaults]\ntimeout_ms = 10000\n\
         [defaults.retry]\nmax_attempts = 100\ninitial_interval_ms = 10\nmax_interval_ms = 100\n\
         [defaults.compensation_retry]\nmax_attempts = 100\ninitial_interval_ms = 10\nmax_interval_ms = 100\n",
    );
    for i in 1..=STEPS {
        t.push_str(&format!(
            "[[steps]]\nname = \"l{i}\"\nhandler = \"ledger.apply\"\ncompensation = \"ledger.revert\"\n"
        ));
    }
    t
}

fn spawn_engine(url: &str, workflows: &Path, n: u32) -> common::serve::ServeProcess {
    common::serve::spawn_serve(url, workflows, &format!("crash-{n}"), None)
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn sigkilled_engine_loses_nothing_and_applies_each_effect_once(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ledger_saga.toml"), workflow()).unwrap();
    let url = common::database_url(&pool);

    // The test starts runs through the library (no executor here).
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

    let mut child = spawn_engine(&url, dir.path(), 0);
    let runs = 120;
    let mut expect_compensated = HashMap::new();
    for i in 0..runs {
        let fail = i % 5 == 0; // 20 % compensate
        let input = json!({
            "n": i,
            "ledger": {"sleep_ms": 20 + fastrand::u64(0..80), "fail_step": if fail { "l4" } else { "" }}
        });
        let s = engine
            .start(StartRequest::new("crash", "ledger_saga", input))
            .await
            .unwrap();
        expect_compensated.insert(s.run.id, fail);
    }

    let kills = 25;
    let calls_so_far = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM effect_calls")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    for n in 1..=kills {
        // Let it make a random amount of progress (polled, with a deadline),
        // then kill it without warning, in the middle of its work.
        let target = calls_so_far().await + fastrand::i64(1..12);
        let deadline = Instant::now() + Duration::from_secs(30);
        while calls_so_far().await < target && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await; // poll interval (loop has a deadline)
        }
        child.0.kill().expect("SIGKILL");
        child.0.wait().unwrap();
        child = spawn_engine(&url, dir.path(), n);
    }

    // Poll until every run is terminal.
    let tenant = sagaflow_engine::ids::TenantId::new("crash");
    let deadline = Instant::now() + Duration::from_secs(120);
    let all = loop {
        let all = engine
            .list(
                &tenant,
                &RunFilter {
                    limit: 1000,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        if all.iter().all(|r| r.state.is_terminal()) {
            break all;
        }
        assert!(
            Instant::now() < deadline,
            "runs still not terminal: {:?}",
            all.iter()
                .filter(|r| !r.state.is_terminal())
                .map(|r| (r.id, r.state))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await; // poll interval (loop has a deadline)
    };
    drop(child);
    assert_eq!(all.len(), runs);

    // Effects per key: exactly once.
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT idempotency_key, count(*) FROM effect_ledger GROUP BY idempotency_key",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let per_key: HashMap<String, i64> = rows.into_iter().collect();
    let dup: Vec<_> = per_key.iter().filter(|(_, n)| **n != 1).collect();
    assert!(dup.is_empty(), "keys applied more than once: {dup:?}");
    let calls: i64 = sqlx::query_scalar("SELECT count(*) FROM effect_calls")
        .fetch_one(&pool)
        .await
        .unwrap();

    for r in &all {
        let fail = expect_compensated[&r.id];
        let key = |step: usize, comp: bool| {
            format!("{}:l{step}{}", r.id, if comp { ":compensate" } else { "" })
        };
        if fail {
            assert_eq!(r.state, RunState::Compensated, "run {}", r.id);
            for s in 1..=3 {
                assert!(
                    per_key.contains_key(&key(s, false)),
                    "{} forward effect",
                    key(s, false)
                );
                assert!(
                    per_key.contains_key(&key(s, true)),
                    "{} compensated",
                    key(s, true)
                );
            }
            for s in 4..=STEPS {
                assert!(!per_key.contains_key(&key(s, false)));
                assert!(
                    !per_key.contains_key(&key(s, true)),
                    "never compensate what never ran"
                );
            }
        } else {
            assert_eq!(r.state, RunState::Completed, "run {}", r.id);
            for s in 1..=STEPS {
                assert!(
                    per_key.contains_key(&key(s, false)),
                    "{} applied",
                    key(s, false)
                );
                assert!(!per_key.contains_key(&key(s, true)));
            }
        }
    }
    // The engine was killed mid-step: attempts were interrupted and repeated.
    let interrupted: i64 =
        sqlx::query_scalar("SELECT count(*) FROM run_events WHERE kind = 'step_interrupted'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(interrupted > 0, "the kills must interrupt attempts");
    eprintln!(
        "{runs} runs, {kills} SIGKILLs, {interrupted} interrupted attempts, {} effects, {calls} handler calls",
        per_key.len()
    );
}
