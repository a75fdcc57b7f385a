//! Nothing blocks a run forever, on both backends: a run whose next attempt
//! needs a handler this replica lacks is left for one that has it; a row
//! that cannot be decoded does not hold the others back; an operator can end
//! a run that waits for one; a run queued behind its key can time out.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

#[macro_use]
mod support;

use std::sync::Arc;
use std::time::Duration;

use sagaflow_engine::Engine;
use sagaflow_engine::clock::SystemClock;
use sagaflow_engine::executor::ExecutorOptions;
use sagaflow_engine::handler::CallKind;
use sagaflow_engine::state::{RunState, StepState};
use sagaflow_engine::store::{EventKind, Store};
use serde_json::json;
use support::*;

on_both_backends!(unknown_handler_leaves_the_run_to_a_replica_that_has_it,);

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
