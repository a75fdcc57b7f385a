//! Nothing blocks a run forever, on both backends: a run whose next attempt
//! needs a handler this replica lacks is left for one that has it; a row
//! that cannot be decoded does not hold the others back; an operator can end
//! a run that waits for one; a run queued behind its key can time out.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

#[macro_use]
mod support;

use std::sync::Arc;
use std::time::Duration;

use sagaflow_engine::clock::{Clock, SystemClock};
use sagaflow_engine::executor::ExecutorOptions;
use sagaflow_engine::handler::CallKind;
use sagaflow_engine::ids::RunId;
use sagaflow_engine::saga::OperatorAction;
use sagaflow_engine::state::{RunState, StepState};
use sagaflow_engine::store::{EventKind, Store};
use sagaflow_engine::{Engine, Error};
use serde_json::json;
use support::*;

on_both_backends!(
    unknown_handler_leaves_the_run_to_a_replica_that_has_it,
    compensation_failed_run_resolved_by_hand_frees_its_key,
    queued_run_past_its_ttl_ends_cancelled_without_running,
    a_key_freed_after_the_ttl_is_not_handed_to_the_expired_run,
);

/// `s1` uses `test.do`; `s2` uses `test.new`, which only the newer replica
/// has, forward and as compensation.
fn rolling_toml() -> String {
    saga_toml("rolling", 1, 2, "").replace(
        "name = \"s2\"\nhandler = \"test.do\"\ncompensation = \"test.undo\"",
        "name = \"s2\"\nhandler = \"test.new\"\ncompensation = \"test.new\"",
    )
}

async fn unknown_handler_leaves_the_run_to_a_replica_that_has_it(store: Arc<dyn Store>) {
    let toml = rolling_toml();
    let old = Script::named("old");
    let new = Script::named("new");
    let new_registry = new.registry_with(&["test.do", "test.undo", "test.new"]);
    // The definition is valid (the newer replica has every handler); the
    // older replica runs it with what it has.
    let defs = definitions(&new_registry, std::slice::from_ref(&toml));
    let engine_old = Engine::new(
        store.clone(),
        Arc::new(old.registry()),
        defs,
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let exec_old = engine_old.start_executor(ExecutorOptions {
        unknown_handler_delay: Duration::from_millis(300),
        ..fast("old")
    });
    let id = engine_old
        .start(sagaflow_engine::engine::StartRequest::new(
            TENANT,
            "rolling",
            json!({}),
        ))
        .await
        .unwrap()
        .run
        .id;

    // The older replica does s1, then leaves the run untouched at s2: no
    // attempt started, nothing failed, the lease given back.
    let released = poll(
        "s1 done and the run released",
        Duration::from_secs(10),
        || {
            let e = engine_old.clone();
            async move {
                let r = e.get(&tenant(), id).await.unwrap();
                (r.steps[0].state == StepState::Succeeded && r.lease_owner.is_none()).then_some(r)
            }
        },
    )
    .await;
    assert_eq!(released.state, RunState::Running);
    assert_eq!(
        (released.steps[1].state, released.steps[1].attempts),
        (StepState::Pending, 0)
    );
    assert!(released.next_run_at.is_some(), "still due for someone");

    // The newer replica joins and finishes it.
    let defs = definitions(&new_registry, std::slice::from_ref(&toml));
    let engine_new = Engine::new(store, Arc::new(new_registry), defs, Arc::new(SystemClock))
        .await
        .unwrap();
    let exec_new = engine_new.start_executor(fast("new"));
    let done = poll("the run to complete", Duration::from_secs(15), || {
        let e = engine_new.clone();
        async move {
            let r = e.get(&tenant(), id).await.unwrap();
            r.state.is_terminal().then_some(r)
        }
    })
    .await;
    assert_eq!(done.state, RunState::Completed);
    assert_eq!(
        done.steps[1].attempts, 1,
        "no attempt was counted for the older replica"
    );
    assert_eq!(done.context["s2_done"], json!(1));
    let events = engine_new.events(&tenant(), id, 0).await.unwrap();
    assert!(
        !events.iter().any(|e| matches!(
            e.kind,
            EventKind::StepFailed | EventKind::RunFailed | EventKind::StepInterrupted
        )),
        "{events:?}"
    );
    let s2_calls: Vec<_> = new
        .calls()
        .into_iter()
        .filter(|c| c.step == "s2" && c.kind == CallKind::Forward)
        .collect();
    assert_eq!(s2_calls.len(), 1);
    assert!(old.calls().iter().all(|c| c.step == "s1"));
    exec_old.shutdown().await;
    exec_new.shutdown().await;
}

/// One run whose `steps` text is corrupted by `corrupt` and five good ones
/// are due together: the claim takes all six, the five complete, and the
/// bad one is given back, not due for a long time. Returns the bad run.
async fn undecodable_row_does_not_hold_the_others_back(
    store: Arc<dyn Store>,
    corrupt: impl AsyncFnOnce(RunId),
) -> RunId {
    let h = Harness::idle(
        store,
        &[saga_toml("plain", 1, 2, "")],
        Arc::new(SystemClock),
    )
    .await;
    let bad = h.start("plain", json!({})).await.run.id;
    corrupt(bad).await;
    let mut good = Vec::new();
    for _ in 0..5 {
        good.push(h.start("plain", json!({})).await.run.id);
    }
    let exec = h.engine.start_executor(fast("a"));
    for id in good {
        h.wait_state(id, RunState::Completed).await;
    }
    assert!(
        h.engine.get(&tenant(), bad).await.is_err(),
        "still undecodable"
    );
    exec.shutdown().await;
    bad
}

#[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
async fn undecodable_row_is_parked_postgres(pool: sqlx::PgPool) {
    let p = pool.clone();
    let bad = undecodable_row_does_not_hold_the_others_back(
        postgres(pool.clone()),
        async move |id: RunId| {
            sqlx::query("UPDATE runs SET steps = 'not json' WHERE id = $1")
                .bind(id.0)
                .execute(&p)
                .await
                .unwrap();
        },
    )
    .await;
    let (owner, parked): (Option<String>, bool) = sqlx::query_as(
        "SELECT lease_owner, next_run_at > now() + interval '50 minutes' FROM runs WHERE id = $1",
    )
    .bind(bad.0)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((owner, parked), (None, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_row_is_parked_sqlite() {
    let (store, dir) = sqlite().await;
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let p = pool.clone();
    let bad = undecodable_row_does_not_hold_the_others_back(store, async move |id: RunId| {
        sqlx::query("UPDATE runs SET steps = 'not json' WHERE id = ?1")
            .bind(id.0.to_string())
            .execute(&p)
            .await
            .unwrap();
    })
    .await;
    let (owner, next): (Option<String>, i64) =
        sqlx::query_as("SELECT lease_owner, next_run_at FROM runs WHERE id = ?1")
            .bind(bad.0.to_string())
            .fetch_one(&pool)
            .await
            .unwrap();
    let soon = (chrono::Utc::now() + chrono::Duration::minutes(50)).timestamp_micros();
    assert_eq!(owner, None);
    assert!(next > soon, "parked for about an hour: {next} vs {soon}");
}

async fn compensation_failed_run_resolved_by_hand_frees_its_key(store: Arc<dyn Store>) {
    let extra = "concurrency = { key = \"/subscriber_id\", policy = \"queue\" }";
    let h = Harness::new(store, &[saga_toml("k", 1, 3, extra)]).await;
    let stuck = h
        .start(
            "k",
            json!({"subscriber_id": "alice", "fatal": {"s3": true}, "comp_fail": {"s2": 99}}),
        )
        .await
        .run
        .id;
    h.wait_state(stuck, RunState::CompensationFailed).await;
    let queued = h.start("k", json!({"subscriber_id": "alice"})).await.run;
    assert_eq!(queued.state, RunState::Pending);
    assert!(queued.next_run_at.is_none(), "queued behind the key");
    let act = |compensate: bool, reason: &'static str| {
        let engine = h.engine.clone();
        async move {
            engine
                .act(
                    &tenant(),
                    stuck,
                    OperatorAction::Cancel { compensate },
                    "alice-ops",
                    reason,
                )
                .await
        }
    };
    assert!(
        matches!(act(true, "x").await, Err(Error::FailedPrecondition(m)) if m.contains("retry"))
    );
    assert!(
        matches!(act(false, "").await, Err(Error::InvalidArgument(m)) if m.starts_with("reason"))
    );
    let run = act(false, "undone by hand").await.unwrap();
    assert_eq!(run.state, RunState::Terminated);
    assert!(run.finished_at.is_some());
    assert_eq!(
        run.steps[1].state,
        StepState::CompensationFailed,
        "left as it was"
    );
    let events = h.engine.events(&tenant(), stuck, 0).await.unwrap();
    let n = events.len();
    assert_eq!(
        (
            events[n - 2].kind,
            events[n - 2].actor.as_str(),
            events[n - 2].message.as_deref()
        ),
        (
            EventKind::OperatorCancel,
            "alice-ops",
            Some("undone by hand")
        )
    );
    assert_eq!(events[n - 1].kind, EventKind::RunTerminated);
    h.wait_state(queued.id, RunState::Completed).await;
    h.shutdown().await;
}

/// A run holds key `alice` (FAILED, waiting for an operator); a second run
/// queued behind it with a 60 s time-to-live ends CANCELLED once the clock
/// is 61 s on, without any handler call; a third, queued later, is still
/// within its time when the holder finishes, and runs as before.
async fn queued_run_past_its_ttl_ends_cancelled_without_running(store: Arc<dyn Store>) {
    let (h, clock, holder) = key_held_with_queue_ttl(store, "ttl", 2, 60000, "alice").await;
    let queued = h.start("ttl", json!({"subscriber_id": "alice"})).await.run;
    assert!(queued.next_run_at.is_none(), "queued behind the key");

    clock.advance(Duration::from_secs(61));
    let expired_at = clock.now();
    let ended = h.wait_state(queued.id, RunState::Cancelled).await;
    assert_eq!(
        ended.error.as_deref(),
        Some("queued longer than 1m behind concurrency key alice")
    );
    assert_eq!(ended.finished_at, Some(expired_at));
    assert!(ended.next_run_at.is_none() && ended.lease_owner.is_none());
    assert!(
        ended
            .steps
            .iter()
            .all(|s| s.state == StepState::Pending && s.attempts == 0),
        "{:?}",
        ended.steps
    );
    let events = h.engine.events(&tenant(), queued.id, 0).await.unwrap();
    let seen: Vec<_> = events
        .iter()
        .map(|e| (e.seq, e.kind, e.run_state))
        .collect();
    assert_eq!(
        seen,
        [
            (1, EventKind::RunStarted, RunState::Pending),
            (2, EventKind::RunQueued, RunState::Pending),
            (3, EventKind::RunQueueExpired, RunState::Cancelled),
        ]
    );
    assert_eq!(ended.last_seq, 3);
    assert_eq!(events[2].message, ended.error);
    assert_eq!(
        (events[2].actor.as_str(), events[2].at),
        ("engine", expired_at)
    );
    assert!(h.script.calls().iter().all(|c| c.run != queued.id));
    // The holder still holds the key: a new run queues behind it.
    assert_eq!(h.get(holder).await.state, RunState::Failed);
    let third = h.start("ttl", json!({"subscriber_id": "alice"})).await.run;
    assert!(third.next_run_at.is_none(), "queued behind the key");

    h.script.heal();
    h.engine
        .act(
            &tenant(),
            holder,
            OperatorAction::Retry {
                from_step: None,
                context_patch: None,
            },
            "ops",
            "fixed",
        )
        .await
        .unwrap();
    h.wait_state(holder, RunState::Completed).await;
    let done = h.wait_state(third.id, RunState::Completed).await;
    assert!(done.error.is_none());
    let third_events = h.engine.events(&tenant(), third.id, 0).await.unwrap();
    assert!(
        !third_events
            .iter()
            .any(|e| e.kind == EventKind::RunQueueExpired),
        "{third_events:?}"
    );
    assert_eq!(
        h.get(queued.id).await.state,
        RunState::Cancelled,
        "stays ended"
    );
    h.shutdown().await;
}

/// The holder's key is freed (an operator ends it) after the queued run's
/// time is up but before any executor expired it: the key is not handed to
/// the expired run, neither on release nor by the promotion pass; the
/// expiry pass then ends it, and a new run takes the free key at once.
async fn a_key_freed_after_the_ttl_is_not_handed_to_the_expired_run(store: Arc<dyn Store>) {
    let (mut h, clock, holder) =
        key_held_with_queue_ttl(store.clone(), "ttl", 1, 1500, "bob").await;
    h.executor.take().unwrap().shutdown().await;
    let queued = h.start("ttl", json!({"subscriber_id": "bob"})).await.run;
    assert!(queued.next_run_at.is_none(), "queued behind the key");

    clock.advance(Duration::from_millis(1500));
    let ended = h
        .engine
        .act(
            &tenant(),
            holder,
            OperatorAction::Cancel { compensate: false },
            "ops",
            "ended by hand",
        )
        .await
        .unwrap();
    assert_eq!(ended.state, RunState::Terminated);
    let still = h.get(queued.id).await;
    assert_eq!((still.state, still.next_run_at), (RunState::Pending, None));
    assert_eq!(store.promote_queued(clock.now()).await.unwrap(), 0);
    assert!(h.get(queued.id).await.next_run_at.is_none());

    let expired = store
        .expire_queued(clock.now(), 10, &Default::default())
        .await
        .unwrap();
    assert_eq!(
        expired
            .iter()
            .map(|e| (e.run_id, e.workflow_name.as_str()))
            .collect::<Vec<_>>(),
        [(queued.id, "ttl")]
    );
    let run = h.get(queued.id).await;
    assert_eq!(run.state, RunState::Cancelled);
    assert_eq!(
        run.error.as_deref(),
        Some("queued longer than 1500ms behind concurrency key bob")
    );
    assert!(
        store
            .expire_queued(clock.now(), 10, &Default::default())
            .await
            .unwrap()
            .is_empty(),
        "once"
    );
    let next = h.start("ttl", json!({"subscriber_id": "bob"})).await.run;
    assert!(next.next_run_at.is_some(), "the key was free");
    h.shutdown().await;
}

#[test]
fn queue_ttl_must_be_positive_bounded_and_with_queue_policy() {
    let registry = Script::default().registry();
    let refused = |concurrency: &str| {
        let text = saga_toml("ttl", 1, 1, concurrency);
        let def = match sagaflow_engine::definition::parse(&text, "ttl.toml") {
            Ok(d) => d,
            Err(e) => return e.to_string(),
        };
        sagaflow_engine::definition::Definitions::default()
            .add(def, "ttl.toml", &registry)
            .map(|_| ())
            .expect_err("must be refused")
            .to_string()
    };
    let ttl = |v: &str, policy: &str| {
        format!("concurrency = {{ key = \"/k\", policy = \"{policy}\", queue_ttl_ms = {v} }}")
    };
    for bad in ["0", "2592000001"] {
        let e = refused(&ttl(bad, "queue"));
        assert!(
            e.contains("ttl.toml")
                && e.contains(&format!(
                    "concurrency.queue_ttl_ms = {bad} must be between 1 and"
                )),
            "{e}"
        );
    }
    let e = refused(&ttl("-5", "queue"));
    assert!(e.contains("ttl.toml") && e.contains("queue_ttl_ms"), "{e}");
    let e = refused(&ttl("\"1h\"", "queue"));
    assert!(e.contains("queue_ttl_ms"), "{e}");
    let e = refused(&ttl("1000", "reject"));
    assert!(e.contains("policy = \"queue\" only"), "{e}");
    // The largest value loads.
    let def = sagaflow_engine::definition::parse(
        &saga_toml("ttl", 1, 1, &ttl("2592000000", "queue")),
        "ttl.toml",
    )
    .unwrap();
    let loaded = sagaflow_engine::definition::Definitions::default()
        .add(def, "ttl.toml", &registry)
        .unwrap();
    let c = loaded.definition.concurrency.as_ref().unwrap();
    assert_eq!(c.queue_ttl(), Some(Duration::from_secs(30 * 24 * 3600)));
}
