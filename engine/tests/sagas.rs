//! The engine's behaviour, on both backends: each scenario runs against a
//! fresh PostgreSQL database (`#[sqlx::test]`) and a fresh SQLite file.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

#[macro_use]
mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sagaflow_engine::Error;
use sagaflow_engine::clock::ManualClock;
use sagaflow_engine::engine::StartRequest;
use sagaflow_engine::handler::CallKind;
use sagaflow_engine::ids::LeaseToken;
use sagaflow_engine::saga::OperatorAction;
use sagaflow_engine::state::{RunState, StepState};
use sagaflow_engine::store::{Checkpoint, CheckpointAck, EventKind, RunFilter, Store};
use serde_json::json;
use support::*;

on_both_backends!(
    ten_step_saga_completes_with_gapless_events,
    retryable_failures_back_off_within_policy,
    required_step_giving_up_compensates_in_reverse,
    paused_failure_and_operator_actions,
    operator_cancels_running_runs,
    cancel_reaching_a_run_that_then_pauses,
    optional_and_conditional_steps,
    idempotent_start_creates_one_run,
    concurrency_key_queue_runs_one_after_the_other,
    concurrency_key_reject_refuses_the_second,
    timed_out_attempt_is_cancelled_and_retried,
    step_with_unknown_outcome_is_compensated_too,
    run_pinned_to_v1_finishes_on_v1,
    stale_lease_holder_writes_nothing,
);

async fn ten_step_saga_completes_with_gapless_events(store: Arc<dyn Store>) {
    let h = Harness::new(store, &[saga_toml("ten", 1, 10, "")]).await;
    let s = h.start("ten", json!({"order": "o-1"})).await;
    assert!(s.created);
    let run = h.wait_state(s.run.id, RunState::Completed).await;
    assert_eq!(run.context["order"], json!("o-1"));
    for i in 1..=10 {
        assert_eq!(
            run.context[format!("s{i}_done")],
            json!(1),
            "output of s{i} in context"
        );
        assert_eq!(run.steps[i - 1].state, StepState::Succeeded);
        assert_eq!(run.steps[i - 1].attempts, 1);
    }
    assert!(run.finished_at.is_some());
    let events = h.engine.events(&tenant(), run.id, 0).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=22).collect::<Vec<_>>(), "gapless, in order");
    let mut expected = vec![(EventKind::RunStarted, None)];
    for i in 1..=10 {
        expected.push((EventKind::StepStarted, Some(format!("s{i}"))));
        expected.push((EventKind::StepSucceeded, Some(format!("s{i}"))));
    }
    expected.push((EventKind::RunCompleted, None));
    let got: Vec<_> = events.iter().map(|e| (e.kind, e.step.clone())).collect();
    assert_eq!(got, expected);
    assert_eq!(events.last().unwrap().run_state, RunState::Completed);
    assert!(events.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(run.last_seq, 22);
    h.shutdown().await;
}

async fn retryable_failures_back_off_within_policy(store: Arc<dyn Store>) {
    let clock = ManualClock::new(Utc::now());
    let toml = saga_toml("retry", 1, 3, "").replace(
        "[[steps]]\nname = \"s2\"\nhandler = \"test.do\"\ncompensation = \"test.undo\"\n",
        "[[steps]]\nname = \"s2\"\nhandler = \"test.do\"\ncompensation = \"test.undo\"\n\
         retry = { max_attempts = 5, initial_interval_ms = 1000, backoff_coefficient = 2.0, max_interval_ms = 10000, jitter = 0.2 }\n",
    );
    let h = Harness::with_clock(store, &[toml], Arc::new(clock.clone())).await;
    let id = h.start("retry", json!({"fail": {"s2": 2}})).await.run.id;
    // Attempt n fails at time T; the next is due at T + 1000·2^(n-1) ms ± 20 %.
    for (attempt, base) in [(1u32, 1000i64), (2, 2000)] {
        let engine = h.engine.clone();
        let step = poll("retry to be scheduled", Duration::from_secs(10), || {
            let engine = engine.clone();
            async move {
                let r = engine.get(&tenant(), id).await.unwrap();
                let s = r.steps[1].clone();
                (s.attempts == attempt
                    && s.state == StepState::Pending
                    && s.next_attempt_at.is_some())
                .then_some(s)
            }
        })
        .await;
        let failed_at = h
            .engine
            .events(&tenant(), id, 0)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == EventKind::StepFailed && e.attempt == attempt)
            .map(|e| e.at)
            .next()
            .expect("step_failed event");
        let next = step.next_attempt_at.unwrap();
        let delay = ms(failed_at, next);
        assert!(
            (base * 8 / 10..=base * 12 / 10).contains(&delay),
            "attempt {attempt}: delay {delay} ms outside {base} ms ± 20 %"
        );
        assert_eq!(h.get(id).await.state, RunState::Running);
        // Nothing happens before the time comes…
        h.engine.wake();
        assert_eq!(h.get(id).await.steps[1].attempts, attempt);
        clock.set(next);
        h.engine.wake();
    }
    let run = h.wait_state(id, RunState::Completed).await;
    assert_eq!(run.steps[1].attempts, 3);
    let s2: Vec<u32> = h
        .script
        .calls()
        .iter()
        .filter(|c| c.step == "s2")
        .map(|c| c.attempt)
        .collect();
    assert_eq!(s2, vec![1, 2, 3]);
    h.shutdown().await;
}

async fn required_step_giving_up_compensates_in_reverse(store: Arc<dyn Store>) {
    let h = Harness::new(store, &[saga_toml("comp", 1, 10, "")]).await;
    let id = h
        .start(
            "comp",
            json!({"fatal": {"s6": true}, "comp_fail": {"s3": 2}}),
        )
        .await
        .run
        .id;
    let run = h.wait_state(id, RunState::Compensated).await;
    let calls = h.script.calls();
    let forward: Vec<String> = calls
        .iter()
        .filter(|c| c.kind == CallKind::Forward)
        .map(|c| c.step.clone())
        .collect();
    assert_eq!(
        forward,
        vec!["s1", "s2", "s3", "s4", "s5", "s6"],
        "a non-retryable error is not retried"
    );
    let comp: Vec<(String, u32)> = calls
        .iter()
        .filter(|c| c.kind == CallKind::Compensate)
        .map(|c| (c.step.clone(), c.attempt))
        .collect();
    assert_eq!(
        comp,
        vec![
            ("s5".into(), 1),
            ("s4".into(), 1),
            ("s3".into(), 1),
            ("s3".into(), 2),
            ("s3".into(), 3),
            ("s2".into(), 1),
            ("s1".into(), 1)
        ],
        "exact reverse order; s3's compensation retried by its own policy"
    );
    for (i, s) in run.steps.iter().enumerate() {
        let want = match i {
            0..=4 => StepState::Compensated,
            5 => StepState::Failed,
            _ => StepState::Pending,
        };
        assert_eq!(s.state, want, "step s{}", i + 1);
    }
    assert!(
        calls
            .iter()
            .all(|c| c.kind == CallKind::Forward || c.key.ends_with(":compensate"))
    );
    let kinds: Vec<EventKind> = h
        .engine
        .events(&tenant(), id, 0)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.contains(&EventKind::CompensationStarted));
    assert_eq!(kinds.last(), Some(&EventKind::RunCompensated));
    h.shutdown().await;
}

async fn paused_failure_and_operator_actions(store: Arc<dyn Store>) {
    let h = Harness::new(
        store,
        &[saga_toml("paused", 1, 4, "on_failure = \"pause\"")],
    )
    .await;
    let t = tenant();
    let broken = json!({"fatal": {"s3": true}});
    let act = |id, action| {
        let engine = h.engine.clone();
        let t = t.clone();
        async move { engine.act(&t, id, action, "alice", "ticket 42").await }
    };

    // Retry with a context patch that fixes the input.
    let r1 = h.start("paused", broken.clone()).await.run.id;
    let failed = h.wait_state(r1, RunState::Failed).await;
    assert_eq!(failed.steps[2].state, StepState::Failed);
    assert!(failed.error.as_deref().unwrap_or("").contains("s3"));
    let patch = json!({"fatal": {}}).as_object().cloned();
    let after = act(
        r1,
        OperatorAction::Retry {
            from_step: None,
            context_patch: patch,
        },
    )
    .await
    .unwrap();
    assert!(matches!(
        after.state,
        RunState::Running | RunState::Completed
    ));
    let done = h.wait_state(r1, RunState::Completed).await;
    assert_eq!(
        done.steps[2].attempts, 1,
        "fresh attempts after an operator retry"
    );
    let history = h.engine.events(&t, r1, 0).await.unwrap();
    let op = history
        .iter()
        .find(|e| e.kind == EventKind::OperatorRetry)
        .expect("operator_retry event");
    assert_eq!(
        (op.actor.as_str(), op.message.as_deref()),
        ("alice", Some("ticket 42"))
    );

    // Compensate.
    let r2 = h.start("paused", broken.clone()).await.run.id;
    h.wait_state(r2, RunState::Failed).await;
    act(r2, OperatorAction::Compensate).await.unwrap();
    let r = h.wait_state(r2, RunState::Compensated).await;
    assert_eq!(r.steps[0].state, StepState::Compensated);
    assert_eq!(r.steps[1].state, StepState::Compensated);

    // Skip the failed step with an output.
    let r3 = h.start("paused", broken.clone()).await.run.id;
    h.wait_state(r3, RunState::Failed).await;
    let out = json!({"manual": "done by hand"}).as_object().cloned();
    assert!(matches!(
        act(
            r3,
            OperatorAction::Skip {
                step: "s1".into(),
                output: None
            }
        )
        .await,
        Err(Error::FailedPrecondition(_))
    ));
    assert!(matches!(
        act(
            r3,
            OperatorAction::Skip {
                step: "nope".into(),
                output: None
            }
        )
        .await,
        Err(Error::InvalidArgument(_))
    ));
    act(
        r3,
        OperatorAction::Skip {
            step: "s3".into(),
            output: out,
        },
    )
    .await
    .unwrap();
    let r = h.wait_state(r3, RunState::Completed).await;
    assert_eq!(r.steps[2].state, StepState::Skipped);
    assert_eq!(r.context["manual"], json!("done by hand"));
    assert_eq!(r.steps[3].state, StepState::Succeeded);

    // Cancel with compensation.
    let r4 = h.start("paused", broken.clone()).await.run.id;
    h.wait_state(r4, RunState::Failed).await;
    act(r4, OperatorAction::Cancel { compensate: true })
        .await
        .unwrap();
    let r = h.wait_state(r4, RunState::Cancelled).await;
    assert_eq!(r.steps[1].state, StepState::Compensated);

    // Cancel without compensation.
    let r5 = h.start("paused", broken.clone()).await.run.id;
    h.wait_state(r5, RunState::Failed).await;
    let r = act(r5, OperatorAction::Cancel { compensate: false })
        .await
        .unwrap();
    assert_eq!(r.state, RunState::Terminated);
    assert!(
        !h.script
            .calls()
            .iter()
            .any(|c| c.run == r5 && c.kind == CallKind::Compensate)
    );

    // Retry from a step after the failed one is refused; from an earlier one works.
    let r6 = h.start("paused", broken.clone()).await.run.id;
    h.wait_state(r6, RunState::Failed).await;
    assert!(matches!(
        act(
            r6,
            OperatorAction::Retry {
                from_step: Some("s4".into()),
                context_patch: None
            }
        )
        .await,
        Err(Error::FailedPrecondition(_))
    ));
    let patch = json!({"fatal": {}}).as_object().cloned();
    act(
        r6,
        OperatorAction::Retry {
            from_step: Some("s1".into()),
            context_patch: patch,
        },
    )
    .await
    .unwrap();
    let r = h.wait_state(r6, RunState::Completed).await;
    assert_eq!(r.steps[0].attempts, 1);
    assert_eq!(
        h.script
            .calls()
            .iter()
            .filter(|c| c.run == r6 && c.step == "s1")
            .count(),
        2,
        "s1 ran again"
    );

    // Every other transition is refused and changes nothing.
    let all = [
        OperatorAction::Retry {
            from_step: None,
            context_patch: None,
        },
        OperatorAction::Compensate,
        OperatorAction::Skip {
            step: "s3".into(),
            output: None,
        },
        OperatorAction::Cancel { compensate: true },
        OperatorAction::Cancel { compensate: false },
    ];
    for (id, state) in [
        (r1, RunState::Completed),
        (r2, RunState::Compensated),
        (r4, RunState::Cancelled),
        (r5, RunState::Terminated),
    ] {
        let before = h.get(id).await;
        assert_eq!(before.state, state);
        for a in all.clone() {
            let name = a.name();
            match act(id, a).await {
                Err(Error::FailedPrecondition(m)) => assert!(m.contains(state.as_str()), "{m}"),
                other => panic!("{name} on a {state} run must be refused, got {other:?}"),
            }
        }
        assert_eq!(
            h.get(id).await.last_seq,
            before.last_seq,
            "a refused action writes nothing"
        );
    }
    h.shutdown().await;
}

async fn operator_cancels_running_runs(store: Arc<dyn Store>) {
    let h = Harness::new(store, &[saga_toml("slow", 1, 3, "")]).await;
    let t = tenant();
    for compensate in [true, false] {
        let id = h
            .start("slow", json!({"sleep_ms": {"s2": 300}}))
            .await
            .run
            .id;
        let engine = h.engine.clone();
        poll("s2 to start", Duration::from_secs(10), || {
            let engine = engine.clone();
            async move {
                (engine.get(&tenant(), id).await.unwrap().steps[1].state == StepState::Running)
                    .then_some(())
            }
        })
        .await;
        let r = h
            .engine
            .act(
                &t,
                id,
                OperatorAction::Cancel { compensate },
                "bob",
                "customer left",
            )
            .await
            .unwrap();
        assert_eq!(
            r.state,
            RunState::Running,
            "carried out at the executor's next checkpoint"
        );
        assert!(matches!(
            h.engine
                .act(
                    &t,
                    id,
                    OperatorAction::Cancel { compensate },
                    "bob",
                    "again"
                )
                .await,
            Err(Error::FailedPrecondition(_)) | Ok(_)
        ));
        let end = if compensate {
            RunState::Cancelled
        } else {
            RunState::Terminated
        };
        let r = h.wait_state(id, end).await;
        assert_eq!(
            r.steps[2].attempts, 0,
            "no step starts after the cancellation"
        );
        let comps: Vec<String> = h
            .script
            .calls()
            .iter()
            .filter(|c| c.run == id && c.kind == CallKind::Compensate)
            .map(|c| c.step.clone())
            .collect();
        if compensate {
            assert_eq!(
                comps,
                vec!["s2", "s1"],
                "the step in flight finished, so it is compensated too"
            );
        } else {
            assert!(comps.is_empty());
        }
    }
    h.shutdown().await;
}

async fn cancel_reaching_a_run_that_then_pauses(store: Arc<dyn Store>) {
    let h = Harness::new(store, &[saga_toml("p", 1, 3, "on_failure = \"pause\"")]).await;
    let id = h
        .start("p", json!({"sleep_ms": {"s2": 300}, "fatal": {"s2": true}}))
        .await
        .run
        .id;
    let engine = h.engine.clone();
    poll("s2 to start", Duration::from_secs(10), || {
        let engine = engine.clone();
        async move {
            (engine.get(&tenant(), id).await.unwrap().steps[1].state == StepState::Running)
                .then_some(())
        }
    })
    .await;
    h.engine
        .act(
            &tenant(),
            id,
            OperatorAction::Cancel { compensate: true },
            "bob",
            "",
        )
        .await
        .unwrap();
    // s2 fails for good and the run would pause; the cancel is carried out.
    let r = h.wait_state(id, RunState::Cancelled).await;
    assert_eq!(r.steps[0].state, StepState::Compensated);
    assert_eq!(r.steps[1].state, StepState::Failed);
    h.shutdown().await;
}

async fn optional_and_conditional_steps(store: Arc<dyn Store>) {
    let toml = saga_toml("opt", 1, 4, "")
        .replace("name = \"s2\"\nhandler = \"test.do\"\ncompensation = \"test.undo\"\n", "name = \"s2\"\nhandler = \"test.do\"\nrequired = false\n")
        .replace("name = \"s3\"\nhandler = \"test.do\"\n", "name = \"s3\"\nhandler = \"test.do\"\nwhen = { path = \"/enable_ipv6\", equals = true }\n");
    let h = Harness::new(store, &[toml]).await;
    let id = h
        .start("opt", json!({"fail": {"s2": 99}, "enable_ipv6": false}))
        .await
        .run
        .id;
    let r = h.wait_state(id, RunState::Completed).await;
    assert_eq!(r.steps[1].state, StepState::FailedNonBlocking);
    assert_eq!(r.steps[1].attempts, 3);
    assert_eq!(r.steps[2].state, StepState::Skipped);
    assert_eq!(r.steps[3].state, StepState::Succeeded);
    let kinds: Vec<EventKind> = h
        .engine
        .events(&tenant(), id, 0)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert!(
        kinds.contains(&EventKind::StepFailedNonBlocking)
            && kinds.contains(&EventKind::StepSkipped)
    );
    let id = h.start("opt", json!({"enable_ipv6": true})).await.run.id;
    let r = h.wait_state(id, RunState::Completed).await;
    assert_eq!(r.steps[2].state, StepState::Succeeded);
    h.shutdown().await;
}

async fn idempotent_start_creates_one_run(store: Arc<dyn Store>) {
    let h = Harness::idle(
        store,
        &[saga_toml("idem", 1, 2, "")],
        Arc::new(sagaflow_engine::clock::SystemClock),
    )
    .await;
    let req = |input: serde_json::Value| StartRequest {
        idempotency_key: Some("order-1".into()),
        ..StartRequest::new(TENANT, "idem", input)
    };
    let starts = (0..50).map(|_| {
        let engine = h.engine.clone();
        let r = req(json!({"a": 1, "b": [1, 2]}));
        tokio::spawn(async move { engine.start(r).await })
    });
    let results: Vec<_> = futures::future::join_all(starts)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    assert_eq!(
        results.iter().filter(|s| s.created).count(),
        1,
        "exactly one start creates the run"
    );
    let id = results[0].run.id;
    assert!(results.iter().all(|s| s.run.id == id));
    assert!(matches!(
        h.engine.start(req(json!({"a": 2}))).await,
        Err(Error::IdempotencyConflict { .. })
    ));
    // Another tenant may use the same key.
    let other = StartRequest {
        tenant_id: sagaflow_engine::ids::TenantId::new("t2"),
        ..req(json!({"a": 2}))
    };
    assert!(h.engine.start(other).await.unwrap().created);
    let all = h
        .engine
        .list(
            &tenant(),
            &RunFilter {
                limit: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
}

async fn concurrency_key_queue_runs_one_after_the_other(store: Arc<dyn Store>) {
    let extra = "concurrency = { key = \"/subscriber_id\", policy = \"queue\" }";
    let h = Harness::new(store, &[saga_toml("q", 1, 3, extra)]).await;
    let input = json!({"subscriber_id": "sub-1", "sleep_ms": {"s1": 50, "s2": 50}});
    let first = h.start("q", input.clone()).await.run.id;
    let second = h.start("q", input.clone()).await.run;
    assert_eq!(second.state, RunState::Pending);
    assert!(second.next_run_at.is_none(), "queued behind the key");
    let other = h.start("q", json!({"subscriber_id": "sub-2"})).await.run.id;
    h.wait_state(first, RunState::Completed).await;
    h.wait_state(second.id, RunState::Completed).await;
    h.wait_state(other, RunState::Completed).await;
    let calls = h.script.calls();
    let first_end = calls
        .iter()
        .filter(|c| c.run == first)
        .map(|c| c.ended)
        .max()
        .unwrap();
    let second_start = calls
        .iter()
        .filter(|c| c.run == second.id)
        .map(|c| c.started)
        .min()
        .unwrap();
    assert!(
        second_start >= first_end,
        "the second run starts after the first finished"
    );
    let kinds: Vec<EventKind> = h
        .engine
        .events(&tenant(), second.id, 0)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(&kinds[..2], &[EventKind::RunStarted, EventKind::RunQueued]);
    h.shutdown().await;
}

async fn concurrency_key_reject_refuses_the_second(store: Arc<dyn Store>) {
    let extra = "concurrency = { key = \"/subscriber_id\", policy = \"reject\" }";
    let h = Harness::new(store, &[saga_toml("rj", 1, 2, extra)]).await;
    let first = h
        .start(
            "rj",
            json!({"subscriber_id": "sub-1", "sleep_ms": {"s1": 200}}),
        )
        .await
        .run
        .id;
    match h
        .engine
        .start(StartRequest::new(
            TENANT,
            "rj",
            json!({"subscriber_id": "sub-1"}),
        ))
        .await
    {
        Err(Error::ConcurrencyKeyHeld { holder, key }) => {
            assert_eq!(holder, first);
            assert_eq!(key, "sub-1");
        }
        other => panic!("expected ConcurrencyKeyHeld, got {other:?}"),
    }
    assert!(
        matches!(
            h.engine
                .start(StartRequest::new(TENANT, "rj", json!({"other": 1})))
                .await,
            Err(Error::InvalidArgument(_))
        ),
        "the key must be in the input"
    );
    h.wait_state(first, RunState::Completed).await;
    let again = h
        .start("rj", json!({"subscriber_id": "sub-1"}))
        .await
        .run
        .id;
    h.wait_state(again, RunState::Completed).await;
    let n = h
        .engine
        .list(
            &tenant(),
            &RunFilter {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .len();
    assert_eq!(n, 2, "the refused start stored nothing");
    h.shutdown().await;
}

async fn timed_out_attempt_is_cancelled_and_retried(store: Arc<dyn Store>) {
    let toml = saga_toml("to", 1, 2, "").replace("timeout_ms = 5000", "timeout_ms = 100");
    let h = Harness::new(store, &[toml]).await;
    let id = h.start("to", json!({"hang": {"s1": 1}})).await.run.id;
    let r = h.wait_state(id, RunState::Completed).await;
    assert_eq!(r.steps[0].attempts, 2);
    let events = h.engine.events(&tenant(), id, 0).await.unwrap();
    let failed = events
        .iter()
        .find(|e| e.kind == EventKind::StepFailed)
        .expect("step_failed");
    assert_eq!(failed.attempt, 1);
    assert!(
        failed
            .message
            .as_deref()
            .unwrap_or("")
            .starts_with("timeout"),
        "{failed:?}"
    );
    assert_eq!(
        *h.script.cancelled_seen.lock().unwrap(),
        1,
        "the handler got the cancellation signal"
    );
    h.shutdown().await;
}

async fn step_with_unknown_outcome_is_compensated_too(store: Arc<dyn Store>) {
    let toml = saga_toml("unk", 1, 3, "").replace("timeout_ms = 5000", "timeout_ms = 100");
    let h = Harness::new(store, &[toml]).await;
    // Every attempt of s2 times out: it may have had its effect.
    let id = h
        .start("unk", json!({"hang": {"s2": 99}, "fatal": {"s3": true}}))
        .await
        .run
        .id;
    let r = h.wait_state(id, RunState::Compensated).await;
    assert_eq!(r.steps[1].attempts, 3);
    assert!(r.steps[1].effect_uncertain);
    assert_eq!(r.steps[1].state, StepState::Compensated);
    let comps: Vec<String> = h
        .script
        .calls()
        .iter()
        .filter(|c| c.run == id && c.kind == CallKind::Compensate)
        .map(|c| c.step.clone())
        .collect();
    assert_eq!(
        comps,
        vec!["s2", "s1"],
        "the timed-out step is undone too, in order"
    );
    // A step that failed with a known outcome is still never compensated.
    let id = h.start("unk", json!({"fatal": {"s2": true}})).await.run.id;
    let r = h.wait_state(id, RunState::Compensated).await;
    assert_eq!(r.steps[1].state, StepState::Failed);
    assert!(!r.steps[1].effect_uncertain);
    h.shutdown().await;
}

async fn run_pinned_to_v1_finishes_on_v1(store: Arc<dyn Store>) {
    let v1 = saga_toml("pinned", 1, 3, "on_failure = \"pause\"");
    let h1 = Harness::new(store.clone(), &[v1]).await;
    let id = h1
        .start("pinned", json!({"fatal": {"s2": true}}))
        .await
        .run
        .id;
    h1.wait_state(id, RunState::Failed).await;
    h1.shutdown().await;
    // A deploy replaces v1 with v2 (five steps).
    let v2 = saga_toml("pinned", 2, 5, "on_failure = \"pause\"");
    let h2 = Harness::new(store, &[v2]).await;
    let patch = json!({"fatal": {}}).as_object().cloned();
    h2.engine
        .act(
            &tenant(),
            id,
            OperatorAction::Retry {
                from_step: None,
                context_patch: patch,
            },
            "op",
            "",
        )
        .await
        .unwrap();
    let r = h2.wait_state(id, RunState::Completed).await;
    assert_eq!(r.workflow_version, 1);
    assert_eq!(r.steps.len(), 3, "finished on v1's three steps");
    let fresh = h2.start("pinned", json!({})).await.run.id;
    let r = h2.wait_state(fresh, RunState::Completed).await;
    assert_eq!((r.workflow_version, r.steps.len()), (2, 5));
    h2.shutdown().await;
}

async fn stale_lease_holder_writes_nothing(store: Arc<dyn Store>) {
    let clock = ManualClock::new(Utc::now());
    let h = Harness::idle(
        store.clone(),
        &[saga_toml("fence", 1, 2, "")],
        Arc::new(clock.clone()),
    )
    .await;
    let id = h.start("fence", json!({})).await.run.id;
    let t0 = clock.now_utc();
    let lease = Duration::from_millis(500);
    let (a, b) = (LeaseToken::new(), LeaseToken::new());
    let claimed = store.claim("A", a, t0, lease, 10).await.unwrap();
    // The lease was set before the claim answered: it expires by then + lease.
    let answered = std::time::Instant::now();
    assert_eq!(claimed.len(), 1);
    // Leases run on the database's clock: a claimer whose clock is an hour
    // ahead still sees the lease as live.
    let ahead = t0 + chrono::Duration::hours(1);
    assert!(
        store
            .claim("B", b, ahead, lease, 10)
            .await
            .unwrap()
            .is_empty(),
        "a live lease is not claimable, whatever the claimer's clock says"
    );
    let run = claimed[0].clone();
    let cp = |token, now| Checkpoint {
        run_id: id,
        lease: token,
        id: uuid::Uuid::now_v7(),
        expected_seq: run.last_seq,
        now,
        state: RunState::Completed,
        cursor: 2,
        context: Some(json!({"hijacked": true})),
        steps: run.steps.clone(),
        error: None,
        events: vec![],
        next_run_at: None,
        keep_lease: None,
        finished_at: Some(now),
        release_concurrency_key: true,
        take_signal: None,
    };
    // A's lease expires by the database's clock (the test polls until the
    // stored expiry has passed on this machine's clock, which is the
    // database's): its write is refused even before anyone else claims,
    // whatever time A's clock says.
    let expires = store
        .get_run(&tenant(), id)
        .await
        .unwrap()
        .unwrap()
        .lease_expires_at
        .unwrap();
    let deadline = answered + lease + Duration::from_secs(10);
    while Utc::now() <= expires + chrono::Duration::milliseconds(5) {
        assert!(
            std::time::Instant::now() < deadline,
            "the lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(10)).await; // poll interval
    }
    assert_eq!(
        store.checkpoint(&cp(a, t0)).await.unwrap(),
        CheckpointAck::Fenced
    );
    assert_eq!(
        store.renew_leases(&[(id, a)], lease).await.unwrap(),
        vec![id],
        "renewal reports the loss"
    );
    // B takes the run over (even with a clock behind); A's write is refused.
    let behind = t0 - chrono::Duration::seconds(30);
    assert_eq!(
        store
            .claim("B", b, behind, Duration::from_secs(10), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store.checkpoint(&cp(a, t0)).await.unwrap(),
        CheckpointAck::Fenced
    );
    let r = h.get(id).await;
    assert_eq!(r.state, RunState::Pending);
    assert!(r.context.get("hijacked").is_none());
    assert_eq!(r.lease_owner.as_deref(), Some("B"));
    // B's write goes through, even dated long before the lease began.
    assert!(matches!(
        store.checkpoint(&cp(b, behind)).await.unwrap(),
        CheckpointAck::Applied { .. }
    ));
    assert_eq!(h.get(id).await.state, RunState::Completed);
}

trait NowUtc {
    fn now_utc(&self) -> chrono::DateTime<Utc>;
}

impl NowUtc for ManualClock {
    fn now_utc(&self) -> chrono::DateTime<Utc> {
        use sagaflow_engine::clock::Clock;
        self.now()
    }
}
