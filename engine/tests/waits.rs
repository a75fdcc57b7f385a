//! Steps that wait: signal steps (before and after the wait, repeated keys,
//! finished runs, timeouts), sleep steps, handlers that answer "not ready
//! yet", cancelling a waiting run, the run deadline, and waiting runs
//! holding no executor slot. Every scenario runs on PostgreSQL and SQLite.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

#[macro_use]
mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sagaflow_engine::Error;
use sagaflow_engine::clock::{Clock, ManualClock};
use sagaflow_engine::engine::{SignalRequest, Signalled};
use sagaflow_engine::executor::ExecutorOptions;
use sagaflow_engine::ids::RunId;
use sagaflow_engine::run::OperatorAction;
use sagaflow_engine::state::{RunState, StepState};
use sagaflow_engine::store::{EventKind, RunRecord, Store};
use serde_json::{Value, json};
use support::*;

on_both_backends!(
    signal_after_the_wait_completes_the_step,
    signal_before_the_wait_is_kept_until_the_step_waits,
    a_repeated_signal_key_is_one_signal,
    signals_to_finished_or_unknown_runs_are_refused,
    signal_timeout_fails_the_step_and_compensates,
    sleep_fires_at_its_time,
    not_ready_handler_is_asked_again_until_ready,
    not_ready_handler_times_out,
    cancel_of_a_waiting_run_compensates_what_completed,
    run_deadline_fails_a_waiting_run,
    waiting_runs_hold_no_executor_slot,
);

const FAST_RETRY: &str = "[defaults]\ntimeout_ms = 5000\n\
    [defaults.retry]\nmax_attempts = 1\ninitial_interval_ms = 5\nmax_interval_ms = 20\njitter = 0.0\n\
    [defaults.compensation_retry]\nmax_attempts = 3\ninitial_interval_ms = 5\nmax_interval_ms = 20\n";

/// `first` (a task with a compensation), then `middle` (TOML of the
/// waiting step, named `wait`), then `last` (a task).
fn waiting_toml(name: &str, top: &str, middle: &str) -> String {
    format!(
        "name = \"{name}\"\nversion = 1\n{top}\n{FAST_RETRY}\
         [[steps]]\nname = \"first\"\nhandler = \"test.do\"\ncompensation = \"test.undo\"\n\
         [[steps]]\nname = \"wait\"\n{middle}\n\
         [[steps]]\nname = \"last\"\nhandler = \"test.do\"\n"
    )
}

fn approve_toml() -> String {
    waiting_toml(
        "approval",
        "",
        "kind = \"signal\"\nsignal = \"approve\"\noutput_path = \"/approval\"",
    )
}

fn request(id: RunId, name: &str, payload: Value, key: &str) -> SignalRequest {
    SignalRequest {
        tenant_id: tenant(),
        run_id: id,
        name: name.into(),
        payload,
        idempotency_key: key.into(),
        actor: "crm-a".into(),
    }
}

async fn signal(h: &Harness, id: RunId, name: &str, payload: Value, key: &str) -> Signalled {
    h.engine
        .signal(request(id, name, payload, key))
        .await
        .unwrap()
}

/// Polls until step `i` of the run is WAITING (and the run released).
async fn wait_waiting(h: &Harness, id: RunId, i: usize) -> RunRecord {
    let engine = h.engine.clone();
    poll(
        &format!("step {i} of {id} to wait"),
        Duration::from_secs(10),
        || {
            let engine = engine.clone();
            async move {
                let r = engine.get(&tenant(), id).await.unwrap();
                (r.steps[i].state == StepState::Waiting && r.lease_owner.is_none()).then_some(r)
            }
        },
    )
    .await
}

/// A harness on a manual clock, with its executor running.
async fn manual(store: Arc<dyn Store>, tomls: &[String]) -> (Harness, ManualClock) {
    let clock = ManualClock::new(Utc::now());
    let h = Harness::with_clock(store, tomls, Arc::new(clock.clone())).await;
    (h, clock)
}

async fn kinds(h: &Harness, id: RunId) -> Vec<EventKind> {
    let events = h.engine.events(&tenant(), id, 0).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "gapless"
    );
    events.iter().map(|e| e.kind).collect()
}

fn count(kinds: &[EventKind], k: EventKind) -> usize {
    kinds.iter().filter(|x| **x == k).count()
}

async fn signal_after_the_wait_completes_the_step(store: Arc<dyn Store>) {
    let h = Harness::new(store, &[approve_toml()]).await;
    let id = h.start("approval", json!({})).await.run.id;
    let waiting = wait_waiting(&h, id, 1).await;
    assert_eq!(waiting.state, RunState::Running);
    assert_eq!(
        waiting.next_run_at, None,
        "no timeout: only a signal wakes it"
    );
    let s = signal(&h, id, "approve", json!({"by": "alice"}), "").await;
    assert!(s.delivered, "the step was waiting for it");
    let done = h.wait_state(id, RunState::Completed).await;
    assert_eq!(done.context["approval"], json!({"by": "alice"}));
    assert_eq!(
        done.steps[1].output,
        Some(json!({"approval": {"by": "alice"}}))
    );
    let k = kinds(&h, id).await;
    for want in [
        EventKind::StepWaiting,
        EventKind::SignalReceived,
        EventKind::StepWoken,
    ] {
        assert_eq!(count(&k, want), 1, "{want:?} in {k:?}");
    }
    h.shutdown().await;
}

async fn signal_before_the_wait_is_kept_until_the_step_waits(store: Arc<dyn Store>) {
    let h = Harness::idle(
        store,
        &[approve_toml()],
        Arc::new(sagaflow_engine::clock::SystemClock),
    )
    .await;
    let id = h.start("approval", json!({})).await.run.id;
    let s = signal(&h, id, "approve", json!({"early": true}), "").await;
    assert!(!s.delivered, "no step waits yet: the signal is kept");
    assert_eq!(s.run.state, RunState::Pending);
    let exec = h.engine.start_executor(fast("a"));
    let done = h.wait_state(id, RunState::Completed).await;
    assert_eq!(done.context["approval"], json!({"early": true}));
    let k = kinds(&h, id).await;
    assert_eq!(count(&k, EventKind::SignalReceived), 1);
    assert_eq!(count(&k, EventKind::StepWoken), 1);
    assert!(
        h.engine
            .store()
            .pending_signals(id)
            .await
            .unwrap()
            .is_empty(),
        "the signal was taken"
    );
    exec.shutdown().await;
}

async fn a_repeated_signal_key_is_one_signal(store: Arc<dyn Store>) {
    let h = Harness::idle(
        store,
        &[approve_toml()],
        Arc::new(sagaflow_engine::clock::SystemClock),
    )
    .await;
    let id = h.start("approval", json!({})).await.run.id;
    signal(&h, id, "approve", json!({"n": 1}), "k1").await;
    let seq = h.get(id).await.last_seq;
    let again = signal(&h, id, "approve", json!({"n": 2}), "k1").await;
    assert!(!again.delivered);
    assert_eq!(again.run.last_seq, seq, "a repeat appends nothing");
    assert_eq!(h.engine.store().pending_signals(id).await.unwrap().len(), 1);
    let exec = h.engine.start_executor(fast("a"));
    let done = h.wait_state(id, RunState::Completed).await;
    assert_eq!(
        done.context["approval"],
        json!({"n": 1}),
        "the first one counts"
    );
    let repeat = signal(&h, id, "approve", json!({"n": 3}), "k1").await;
    assert!(repeat.delivered, "a repeat of a signal a step took says so");
    assert_eq!(count(&kinds(&h, id).await, EventKind::SignalReceived), 1);
    exec.shutdown().await;
}

async fn signals_to_finished_or_unknown_runs_are_refused(store: Arc<dyn Store>) {
    let h = Harness::new(store, &[saga_toml("plain", 1, 1, "")]).await;
    let id = h.start("plain", json!({})).await.run.id;
    let done = h.wait_state(id, RunState::Completed).await;
    let req = |id, name: &str, payload| request(id, name, payload, "");
    let e = h
        .engine
        .signal(req(id, "approve", json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::FailedPrecondition(m) if m.contains("COMPLETED")),
        "{e}"
    );
    let e = h
        .engine
        .signal(req(RunId::new(), "approve", json!({})))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::RunNotFound(_)), "{e}");
    for (name, payload) in [("Approve!", json!({})), ("", json!({})), ("ok", json!([1]))] {
        let e = h.engine.signal(req(id, name, payload)).await.unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    }
    let after = h.get(id).await;
    assert_eq!(after.last_seq, done.last_seq, "nothing stored");
    h.shutdown().await;
}

async fn signal_timeout_fails_the_step_and_compensates(store: Arc<dyn Store>) {
    let clock = ManualClock::new(Utc::now());
    let toml = waiting_toml(
        "timed",
        "",
        "kind = \"signal\"\nsignal = \"cpe_inform\"\nwait_timeout_ms = 60000",
    );
    let h = Harness::with_clock(store, &[toml], Arc::new(clock.clone())).await;
    let id = h.start("timed", json!({})).await.run.id;
    let waiting = wait_waiting(&h, id, 1).await;
    let until = clock.now() + chrono::Duration::seconds(60);
    assert_eq!(waiting.steps[1].wake_at, Some(until));
    assert_eq!(
        waiting.next_run_at,
        Some(until),
        "due when the wait times out"
    );
    clock.advance(Duration::from_secs(61));
    let done = h.wait_state(id, RunState::Compensated).await;
    assert_eq!(done.steps[0].state, StepState::Compensated);
    assert_eq!(done.steps[1].state, StepState::Failed);
    assert!(
        done.error
            .as_deref()
            .unwrap()
            .contains("no signal cpe_inform within 60000 ms"),
        "{:?}",
        done.error
    );
    let k = kinds(&h, id).await;
    assert_eq!(count(&k, EventKind::WaitTimedOut), 1);
    h.shutdown().await;
}

async fn sleep_fires_at_its_time(store: Arc<dyn Store>) {
    let clock = ManualClock::new(Utc::now());
    let wake = clock.now() + chrono::Duration::seconds(90);
    let tomls = [
        waiting_toml("nap", "", "kind = \"sleep\"\nduration_ms = 30000"),
        waiting_toml("alarm", "", "kind = \"sleep\"\nuntil = \"/wake\""),
    ];
    let h = Harness::with_clock(store, &tomls, Arc::new(clock.clone())).await;
    let nap = h.start("nap", json!({})).await.run.id;
    let alarm = h
        .start("alarm", json!({"wake": wake.to_rfc3339()}))
        .await
        .run
        .id;
    let n = wait_waiting(&h, nap, 1).await;
    assert_eq!(
        n.next_run_at,
        Some(clock.now() + chrono::Duration::seconds(30))
    );
    let a = wait_waiting(&h, alarm, 1).await;
    assert_eq!(a.next_run_at, Some(wake));
    clock.advance(Duration::from_secs(31));
    h.wait_state(nap, RunState::Completed).await;
    assert_eq!(h.get(alarm).await.steps[1].state, StepState::Waiting);
    clock.advance(Duration::from_secs(60));
    h.wait_state(alarm, RunState::Completed).await;
    h.shutdown().await;
}

async fn not_ready_handler_is_asked_again_until_ready(store: Arc<dyn Store>) {
    let toml = waiting_toml("poll", "", "handler = \"test.do\"\nwait_timeout_ms = 60000");
    let (h, clock) = manual(store, &[toml]).await;
    let id = h
        .start("poll", json!({"not_ready": {"wait": 3}}))
        .await
        .run
        .id;
    for _ in 0..3 {
        let w = wait_waiting(&h, id, 1).await;
        assert_eq!(
            w.next_run_at,
            Some(clock.now() + chrono::Duration::seconds(1))
        );
        clock.advance(Duration::from_secs(1));
        let engine = h.engine.clone();
        poll(
            "the step to be asked again",
            Duration::from_secs(10),
            || {
                let engine = engine.clone();
                let clock = clock.clone();
                async move {
                    let r = engine.get(&tenant(), id).await.unwrap();
                    let moved = r.steps[1].state != StepState::Waiting
                        || r.steps[1].wake_at.is_some_and(|t| t > clock.now());
                    moved.then_some(())
                }
            },
        )
        .await;
    }
    let done = h.wait_state(id, RunState::Completed).await;
    assert_eq!(
        done.steps[1].attempts, 1,
        "answers of not ready are not attempts"
    );
    let k = kinds(&h, id).await;
    assert_eq!(count(&k, EventKind::StepWaiting), 3);
    assert_eq!(count(&k, EventKind::StepWoken), 3);
    assert_eq!(count(&k, EventKind::StepRetryScheduled), 0);
    h.shutdown().await;
}

async fn not_ready_handler_times_out(store: Arc<dyn Store>) {
    let toml = waiting_toml("never", "", "handler = \"test.do\"\nwait_timeout_ms = 2500");
    let (h, clock) = manual(store, &[toml]).await;
    let id = h
        .start("never", json!({"not_ready": {"wait": 1000}}))
        .await
        .run
        .id;
    let engine = h.engine.clone();
    let c = clock.clone();
    poll("the wait to time out", Duration::from_secs(20), || {
        let engine = engine.clone();
        let c = c.clone();
        async move {
            let r = engine.get(&tenant(), id).await.unwrap();
            if r.state == RunState::Compensated {
                return Some(());
            }
            if r.steps[1].state == StepState::Waiting && r.lease_owner.is_none() {
                c.advance(Duration::from_millis(500));
            }
            None
        }
    })
    .await;
    let done = h.get(id).await;
    assert_eq!(done.steps[1].state, StepState::Failed);
    assert_eq!(done.steps[1].attempts, 1);
    assert!(
        done.error
            .as_deref()
            .unwrap()
            .contains("not ready within 2500 ms")
    );
    assert_eq!(done.steps[0].state, StepState::Compensated);
    assert_eq!(count(&kinds(&h, id).await, EventKind::WaitTimedOut), 1);
    h.shutdown().await;
}

async fn cancel_of_a_waiting_run_compensates_what_completed(store: Arc<dyn Store>) {
    let h = Harness::new(store, &[approve_toml()]).await;
    let id = h.start("approval", json!({})).await.run.id;
    wait_waiting(&h, id, 1).await;
    h.engine
        .act(
            &tenant(),
            id,
            OperatorAction::Cancel { compensate: true },
            "op",
            "customer withdrew",
        )
        .await
        .unwrap();
    let done = h.wait_state(id, RunState::Cancelled).await;
    assert_eq!(done.steps[0].state, StepState::Compensated);
    assert_eq!(
        done.steps[1].state,
        StepState::Pending,
        "the wait was withdrawn"
    );
    assert_eq!(done.steps[1].wake_at, None);
    let e = h
        .engine
        .signal(request(id, "approve", json!({}), ""))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::FailedPrecondition(_)), "{e}");
    h.shutdown().await;
}

async fn run_deadline_fails_a_waiting_run(store: Arc<dyn Store>) {
    let clock = ManualClock::new(Utc::now());
    let toml = waiting_toml(
        "bounded",
        "deadline_ms = 60000",
        "kind = \"signal\"\nsignal = \"approve\"",
    );
    let h = Harness::with_clock(store, &[toml], Arc::new(clock.clone())).await;
    let started = h.start("bounded", json!({})).await.run;
    let w = wait_waiting(&h, started.id, 1).await;
    assert_eq!(
        w.next_run_at,
        Some(started.created_at + chrono::Duration::seconds(60)),
        "a signal wait without timeout is looked at by the deadline"
    );
    clock.advance(Duration::from_secs(61));
    let done = h.wait_state(started.id, RunState::Compensated).await;
    assert!(
        done.error.as_deref().unwrap().contains("deadline"),
        "{:?}",
        done.error
    );
    assert_eq!(done.steps[0].state, StepState::Compensated);
    assert_eq!(
        count(&kinds(&h, started.id).await, EventKind::RunDeadlineExceeded),
        1
    );
    h.shutdown().await;
}

async fn waiting_runs_hold_no_executor_slot(store: Arc<dyn Store>) {
    let h = Harness::idle(
        store,
        &[approve_toml(), saga_toml("plain", 1, 2, "")],
        Arc::new(sagaflow_engine::clock::SystemClock),
    )
    .await;
    let exec = h.engine.start_executor(ExecutorOptions {
        max_in_flight: 1,
        ..fast("a")
    });
    let mut ids = Vec::new();
    for _ in 0..100 {
        ids.push(h.start("approval", json!({})).await.run.id);
    }
    let engine = h.engine.clone();
    let all = ids.clone();
    poll("100 runs to wait", Duration::from_secs(60), || {
        let engine = engine.clone();
        let all = all.clone();
        async move {
            for id in all {
                let r = engine.get(&tenant(), id).await.unwrap();
                if r.steps[1].state != StepState::Waiting || r.lease_owner.is_some() {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    let plain = h.start("plain", json!({})).await.run.id;
    h.wait_state(plain, RunState::Completed).await;
    for id in &ids {
        signal(&h, *id, "approve", json!({}), "").await;
    }
    for id in ids {
        h.wait_state(id, RunState::Completed).await;
    }
    exec.shutdown().await;
}
