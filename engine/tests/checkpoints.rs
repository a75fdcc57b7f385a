//! Checkpoints survive ambiguous commits: the connection is cut right after
//! the commit reaches PostgreSQL, so the executor never learns whether it
//! happened and sends the checkpoint again. No event is ever written twice
//! and every history still replays through the transition tables.
//!
//! A batch that holds a stale checkpoint of a run (from an attempt whose
//! lease ran out while the store was away) beside the live one of the task
//! that claimed the run again writes the live one only: the stale one is
//! fenced, and none of its events lands in the history.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sagaflow_engine::Engine;
use sagaflow_engine::clock::SystemClock;
use sagaflow_engine::engine::StartRequest;
use sagaflow_engine::executor::ExecutorOptions;
use sagaflow_engine::ids::LeaseToken;
use sagaflow_engine::state::{RunEvent, RunState};
use sagaflow_engine::store::{
    Checkpoint, CheckpointAck, EventKind, EventRecord, NewEvent, RunRecord,
};
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

#[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
async fn a_stale_checkpoint_batched_with_the_live_one_leaves_nothing(pool: sqlx::PgPool) {
    let store = postgres(pool.clone());
    let h = Harness::idle(
        store.clone(),
        &[saga_toml("taken_over", 1, 2, "")],
        Arc::new(SystemClock),
    )
    .await;
    let id = h.start("taken_over", json!({})).await.run.id;
    // Attempt A leases the run for a moment; the lease runs out and B
    // claims it again.
    let (a, b) = (LeaseToken::new(), LeaseToken::new());
    let first = store
        .claim("A", a, Utc::now(), Duration::from_millis(1), 10)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    let run = poll("B to claim the run", Duration::from_secs(10), || {
        let store = store.clone();
        async move {
            let mut got = store
                .claim("B", b, Utc::now(), Duration::from_secs(60), 10)
                .await
                .unwrap();
            got.pop()
        }
    })
    .await;
    assert_eq!(run.id, id);
    let before = run.last_seq;
    // Both computed their checkpoint from the same history; they reach the
    // store in one batch, in either order.
    for order in [[a, b], [b, a]] {
        let run = store.get_run(&tenant(), id).await.unwrap().unwrap();
        let cps: Vec<Checkpoint> = order
            .iter()
            .map(|&t| step_started(&run, t, if t == a { "A" } else { "B" }))
            .collect();
        let acks = store.checkpoint_many(&cps).await.unwrap();
        for (t, ack) in order.iter().zip(&acks) {
            if *t == a {
                assert!(
                    matches!(ack, CheckpointAck::Fenced),
                    "A's stale checkpoint: {ack:?}"
                );
            } else {
                assert!(
                    matches!(ack, CheckpointAck::Applied { .. }),
                    "B's checkpoint: {ack:?}"
                );
            }
        }
    }
    let run = store.get_run(&tenant(), id).await.unwrap().unwrap();
    assert_eq!(
        run.last_seq,
        before + 4,
        "B's two checkpoints of two events each"
    );
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT seq, actor FROM run_events WHERE run_id = $1 ORDER BY seq, at")
            .bind(id.0)
            .fetch_all(&pool)
            .await
            .unwrap();
    let seqs: Vec<i64> = rows.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (1..=run.last_seq as i64).collect::<Vec<_>>(),
        "gapless, none twice"
    );
    let by_a: Vec<&(i64, String)> = rows.iter().filter(|(_, actor)| actor == "A").collect();
    assert!(by_a.is_empty(), "events of the fenced checkpoint: {by_a:?}");
}

/// A checkpoint under `lease` recording two events, computed from `run`
/// as it is; `actor` tells whose events they are.
fn step_started(run: &RunRecord, lease: LeaseToken, actor: &str) -> Checkpoint {
    let now = Utc::now();
    let event = |kind| NewEvent {
        kind,
        step: Some("s1".into()),
        attempt: 1,
        run_state: RunState::Running,
        message: None,
        actor: actor.into(),
        at: now,
    };
    Checkpoint {
        run_id: run.id,
        lease,
        id: uuid::Uuid::now_v7(),
        expected_seq: run.last_seq,
        now,
        state: RunState::Running,
        cursor: 0,
        context: None,
        steps: run.steps.clone(),
        error: None,
        events: vec![
            event(EventKind::StepStarted),
            event(EventKind::StepInterrupted),
        ],
        next_run_at: None,
        keep_lease: Some(Duration::from_secs(60)),
        finished_at: None,
        release_concurrency_key: false,
        take_signal: None,
        deliveries: vec![],
    }
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
