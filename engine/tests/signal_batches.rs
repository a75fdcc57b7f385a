//! Signals written together (group commit): a batch that mixes signals to
//! different runs, several to one run, a repeated key, a finished run and an
//! unknown run answers each as if it had been sent alone, stores each once
//! and keeps every history gapless; many callers at once through the engine
//! wake every waiting run. Both backends.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

#[macro_use]
mod support;

use std::sync::Arc;

use chrono::Utc;
use sagaflow_engine::ids::RunId;
use sagaflow_engine::state::RunState;
use sagaflow_engine::store::{EventKind, SignalAck, SignalWrite, Store};
use serde_json::json;
use support::*;

on_both_backends!(
    a_batch_answers_each_signal_as_alone,
    many_callers_at_once_wake_every_waiting_run,
);

fn approve_toml() -> String {
    "name = \"approval\"\nversion = 1\n\
     [[steps]]\nname = \"wait\"\nkind = \"signal\"\nsignal = \"approve\"\noutput_path = \"/approval\"\n\
     [[steps]]\nname = \"last\"\nhandler = \"test.do\"\n"
        .to_string()
}

fn write(run_id: RunId, name: &str, key: &str, n: i64) -> SignalWrite {
    SignalWrite {
        tenant_id: tenant(),
        run_id,
        name: name.into(),
        idempotency_key: key.into(),
        payload: json!({ "n": n }),
        actor: "crm-a".into(),
        now: Utc::now(),
    }
}

/// The run's events are numbered 1..=n without a gap; how many are
/// `signal_received`.
async fn received(store: &Arc<dyn Store>, id: RunId) -> usize {
    let events = store.events(&tenant(), id, 0).await.unwrap().unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "gapless"
    );
    events
        .iter()
        .filter(|e| e.kind == EventKind::SignalReceived)
        .count()
}

async fn a_batch_answers_each_signal_as_alone(store: Arc<dyn Store>) {
    let h = Harness::idle(
        store.clone(),
        &[approve_toml(), saga_toml("plain", 1, 1, "")],
        Arc::new(sagaflow_engine::clock::SystemClock),
    )
    .await;
    // A finished run, then three runs no executor has taken yet.
    let done = h.start("plain", json!({})).await.run.id;
    let exec = h.engine.start_executor(fast("a"));
    h.wait_state(done, RunState::Completed).await;
    exec.shutdown().await;
    let a = h.start("approval", json!({})).await.run.id;
    let b = h.start("approval", json!({})).await.run.id;
    let c = h.start("approval", json!({})).await.run.id;
    let unknown = RunId::new();
    let batch = vec![
        write(a, "approve", "", 1),
        write(a, "other", "", 2),    // a second signal to the same run
        write(b, "approve", "k", 3), // a key ...
        write(b, "approve", "k", 4), // ... repeated in the same batch
        write(c, "approve", "", 5),
        write(done, "approve", "", 6),
        write(unknown, "approve", "", 7),
    ];
    let acks = store.signal_many(&batch).await.unwrap();
    assert_eq!(acks.len(), batch.len(), "one answer per signal");
    for i in [0, 1, 2, 4] {
        assert!(
            matches!(acks[i], SignalAck::Stored { .. }),
            "{i}: {:?}",
            acks[i]
        );
    }
    assert_eq!(acks[3], SignalAck::Duplicate { taken: false });
    assert!(
        matches!(acks[5], SignalAck::Terminal { .. }),
        "{:?}",
        acks[5]
    );
    assert_eq!(acks[6], SignalAck::NotFound);
    // Where it lands: the signals kept, the events appended.
    let kept = |id| {
        let store = store.clone();
        async move { store.pending_signals(id).await.unwrap() }
    };
    let names: Vec<String> = kept(a).await.into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["approve", "other"], "both, in the order sent");
    let b_kept = kept(b).await;
    assert_eq!(b_kept.len(), 1, "a repeated key is one signal");
    assert_eq!(b_kept[0].payload, json!({"n": 3}), "the first counts");
    assert_eq!(kept(c).await.len(), 1);
    assert!(kept(done).await.is_empty(), "a finished run keeps nothing");
    assert_eq!(received(&store, a).await, 2);
    assert_eq!(received(&store, b).await, 1);
    assert_eq!(received(&store, c).await, 1);
    assert_eq!(received(&store, done).await, 0);
    // The runs go on with the signals they were given.
    let exec = h.engine.start_executor(fast("a"));
    for (id, n) in [(a, 1), (b, 3), (c, 5)] {
        let r = h.wait_state(id, RunState::Completed).await;
        assert_eq!(r.context["approval"], json!({ "n": n }));
    }
    exec.shutdown().await;
}

async fn many_callers_at_once_wake_every_waiting_run(store: Arc<dyn Store>) {
    let h = Harness::new(store.clone(), &[approve_toml()]).await;
    let mut ids = Vec::new();
    for _ in 0..60 {
        ids.push(h.start("approval", json!({})).await.run.id);
    }
    for &id in &ids {
        poll(
            "the run to wait",
            std::time::Duration::from_secs(20),
            || {
                let store = store.clone();
                async move {
                    let r = store.get_run(&tenant(), id).await.unwrap()?;
                    r.steps[0]
                        .state
                        .eq(&sagaflow_engine::state::StepState::Waiting)
                        .then_some(())
                }
            },
        )
        .await;
    }
    // Every signal sent at once (twice: the repeats answer as repeats).
    let sends = ids.iter().flat_map(|&id| {
        let engine = h.engine.clone();
        (0..2).map(move |_| {
            let engine = engine.clone();
            tokio::spawn(async move {
                engine
                    .signal(sagaflow_engine::engine::SignalRequest {
                        tenant_id: tenant(),
                        run_id: id,
                        name: "approve".into(),
                        payload: json!({ "run": id.to_string() }),
                        idempotency_key: format!("go-{id}"),
                        actor: "crm-a".into(),
                    })
                    .await
                    .unwrap()
            })
        })
    });
    let answers = futures::future::join_all(sends.collect::<Vec<_>>()).await;
    assert_eq!(answers.len(), 120);
    for &id in &ids {
        let r = h.wait_state(id, RunState::Completed).await;
        assert_eq!(r.context["approval"], json!({ "run": id.to_string() }));
        assert_eq!(received(&store, id).await, 1, "one signal per key");
    }
    h.shutdown().await;
}
