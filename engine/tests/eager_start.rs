//! Eager starts: a run started on a replica whose executor has room is
//! leased by its own insert and handed to that executor, with no claim; it
//! is fenced like a claimed run, and a start that finds no room, or a
//! stopped executor, leaves the run to the claims as before.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::sync::Arc;
use std::time::Duration;

use sagaflow_engine::engine::input_hash;
use sagaflow_engine::executor::ExecutorOptions;
use sagaflow_engine::handler::CallKind;
use sagaflow_engine::ids::{LeaseToken, RunId};
use sagaflow_engine::state::RunState;
use sagaflow_engine::store::{CreateOutcome, NewRun, StartLease, Store};
use serde_json::json;
use support::*;

/// A run inserted with a start's lease, on `store`, through `h`'s
/// definitions.
fn leased_run(h: &Harness, owner: &str, token: LeaseToken, lease: Duration) -> NewRun {
    let input = json!({"n": 1});
    NewRun {
        id: RunId::new(),
        tenant_id: tenant(),
        definition: h.engine.resolve("w", 0).unwrap(),
        input_hash: input_hash(&input),
        input,
        idempotency_key: None,
        concurrency: None,
        search: Vec::new(),
        schedule_id: None,
        traceparent: None,
        trace_id: None,
        actor: "test".into(),
        now: chrono::Utc::now(),
        lease: Some(StartLease {
            owner: owner.into(),
            token,
            lease,
        }),
    }
}

async fn the_insert_takes_the_lease_and_claims_skip_the_run(store: Arc<dyn Store>) {
    let h = Harness::idle(
        store.clone(),
        &[saga_toml("w", 1, 2, "")],
        Arc::new(sagaflow_engine::clock::SystemClock),
    )
    .await;
    let token = LeaseToken::new();
    let lease = Duration::from_secs(60);
    let before = chrono::Utc::now();
    let new = leased_run(&h, "eager", token, lease);
    let CreateOutcome::Created(_) = store.create_run(&new).await.unwrap() else {
        panic!("not created");
    };
    let after = chrono::Utc::now();
    let row = store.get_run(&tenant(), new.id).await.unwrap().unwrap();
    assert_eq!(row.state, RunState::Pending);
    assert_eq!(row.lease_owner.as_deref(), Some("eager"));
    let expires = row.lease_expires_at.expect("leased");
    let lease = chrono::Duration::from_std(lease).unwrap();
    // On the database's clock, which runs with this one here.
    assert!(
        expires >= before + lease - chrono::Duration::seconds(5)
            && expires <= after + lease + chrono::Duration::seconds(5),
        "lease runs out at {expires}, started between {before} and {after}"
    );
    // Another executor's claim leaves the run alone while the lease holds.
    let claimed = store
        .claim(
            "other",
            LeaseToken::new(),
            chrono::Utc::now(),
            Duration::from_secs(60),
            10,
        )
        .await
        .unwrap();
    assert!(
        claimed.iter().all(|r| r.id != new.id),
        "claimed while leased"
    );
}

#[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
async fn pg_the_insert_takes_the_lease_and_claims_skip_the_run(pool: sqlx::PgPool) {
    the_insert_takes_the_lease_and_claims_skip_the_run(postgres(pool)).await;
}

#[tokio::test]
async fn sqlite_the_insert_takes_the_lease_and_claims_skip_the_run() {
    let (store, _dir) = sqlite().await;
    the_insert_takes_the_lease_and_claims_skip_the_run(store).await;
}

async fn runs_started_with_room_complete_with_each_step_called_once(store: Arc<dyn Store>) {
    let h = Harness::new(store, &[saga_toml("w", 1, 3, "")]).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(h.start("w", json!({"i": i})).await.run.id);
    }
    for id in &ids {
        let r = h.wait_state(*id, RunState::Completed).await;
        assert_eq!(r.lease_owner, None, "a finished run keeps no lease");
    }
    let calls = h.script.calls();
    for id in &ids {
        for step in ["s1", "s2", "s3"] {
            let n = calls
                .iter()
                .filter(|c| c.run == *id && c.step == step && c.kind == CallKind::Forward)
                .count();
            assert_eq!(n, 1, "run {id} step {step} called {n} times");
        }
    }
    h.shutdown().await;
}

#[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
async fn pg_runs_started_with_room_complete_with_each_step_called_once(pool: sqlx::PgPool) {
    runs_started_with_room_complete_with_each_step_called_once(postgres(pool)).await;
}

#[tokio::test]
async fn sqlite_runs_started_with_room_complete_with_each_step_called_once() {
    let (store, _dir) = sqlite().await;
    runs_started_with_room_complete_with_each_step_called_once(store).await;
}

/// The executor's one slot is taken by a run whose first step takes a
/// while: a second start finds no room, so it leaves its run unleased for
/// the claims, which take it once the slot is free.
#[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
async fn a_start_that_finds_no_room_leaves_the_run_to_the_claims(pool: sqlx::PgPool) {
    let store = postgres(pool);
    let mut h = Harness::idle(
        store.clone(),
        &[saga_toml("w", 1, 2, "")],
        Arc::new(sagaflow_engine::clock::SystemClock),
    )
    .await;
    h.executor = Some(h.engine.start_executor(ExecutorOptions {
        max_in_flight: 1,
        ..fast("one-slot")
    }));
    let busy = h.start("w", json!({"sleep_ms": {"s1": 500}})).await.run.id;
    poll(
        "the first run to hold the slot",
        Duration::from_secs(10),
        || {
            let store = store.clone();
            async move {
                let r = store.get_run(&tenant(), busy).await.unwrap().unwrap();
                (r.state == RunState::Running).then_some(())
            }
        },
    )
    .await;
    let waiting = h.start("w", json!({})).await.run.id;
    let row = store.get_run(&tenant(), waiting).await.unwrap().unwrap();
    assert_eq!(row.state, RunState::Pending);
    assert_eq!(row.lease_owner, None, "leased without a free slot");
    h.wait_state(busy, RunState::Completed).await;
    h.wait_state(waiting, RunState::Completed).await;
    h.shutdown().await;
}

#[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
async fn a_start_after_the_executor_stopped_leaves_the_run_unleased(pool: sqlx::PgPool) {
    let store = postgres(pool);
    let mut h = Harness::new(store.clone(), &[saga_toml("w", 1, 2, "")]).await;
    h.executor.take().unwrap().shutdown().await;
    let id = h.start("w", json!({})).await.run.id;
    let row = store.get_run(&tenant(), id).await.unwrap().unwrap();
    assert_eq!(row.state, RunState::Pending);
    assert_eq!(row.lease_owner, None);
    assert_eq!(row.lease_expires_at, None);
    // Another executor takes it up through a claim.
    h.executor = Some(h.engine.start_executor(fast("b")));
    h.wait_state(id, RunState::Completed).await;
    h.shutdown().await;
}
