//! The operator's repair tools on both backends: search attributes and the
//! listing filters (idempotency key, failed step, created window), rewind
//! (of a FAILED run and of a run waiting for a signal, with its
//! refusals), and BulkOperate over 1,000 runs in mixed states through the
//! API value both transports serve.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

#[macro_use]
mod support;

use std::sync::Arc;
use std::time::Duration;

use sagaflow_engine::Error;
use sagaflow_engine::api::auth::{Authenticator, dev_tokens};
use sagaflow_engine::api::{ApiOptions, WorkflowApi};
use sagaflow_engine::engine::StartRequest;
use sagaflow_engine::handler::CallKind;
use sagaflow_engine::ids::{RunId, TenantId};
use sagaflow_engine::run::OperatorAction;
use sagaflow_engine::state::{RunState, StepState};
use sagaflow_engine::store::{EventKind, RunFilter, Store};
use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::workflow_service_server::WorkflowService;
use serde_json::{Value, json};
use support::*;

on_both_backends!(
    search_attributes_and_filters_find_the_runs,
    rewind_of_a_failed_run_compensates_down_to_the_step_and_completes,
    rewind_of_a_waiting_run_goes_back_and_waits_again,
    rewind_is_refused_where_it_does_not_fit,
    bulk_over_a_thousand_runs_reports_refusals_per_run,
);

/// Three steps s1..s3 with compensations; pauses for an operator on failure;
/// searchable by `sub` and `customer.id`.
fn paused_saga() -> String {
    saga_toml(
        "paused",
        1,
        3,
        "on_failure = \"pause\"\nsearch_attributes = [\"sub\", \"customer.id\"]",
    )
}

fn start_req(tenant: &str, input: Value, key: &str) -> StartRequest {
    StartRequest {
        idempotency_key: (!key.is_empty()).then(|| key.to_owned()),
        ..StartRequest::new(tenant, "paused", input)
    }
}

async fn ids(h: &Harness, f: RunFilter) -> Vec<RunId> {
    let f = RunFilter { limit: 100, ..f };
    let mut v: Vec<RunId> = h
        .engine
        .list(&tenant(), &f)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    v.sort();
    v
}

fn sorted(mut v: Vec<RunId>) -> Vec<RunId> {
    v.sort();
    v
}

async fn search_attributes_and_filters_find_the_runs(store: Arc<dyn Store>) {
    let h = Harness::new(store, &[paused_saga()]).await;
    let mut alice = Vec::new();
    for (i, sub) in ["alice", "bob", "alice", "carol"].iter().enumerate() {
        let fatal_at = if i % 2 == 0 { "s2" } else { "s3" };
        let input = json!({"sub": sub, "customer": {"id": 100 + i}, "fatal": {fatal_at: true}});
        let id = h
            .engine
            .start(start_req(TENANT, input, &format!("order-{i}")))
            .await
            .unwrap()
            .run
            .id;
        h.wait_state(id, RunState::Failed).await;
        if *sub == "alice" {
            alice.push(id);
        }
    }
    let all = ids(&h, RunFilter::default()).await;
    assert_eq!(all.len(), 4);
    let search = |k: &str, v: &str| RunFilter {
        search: vec![(k.into(), v.into())],
        ..Default::default()
    };
    assert_eq!(ids(&h, search("sub", "alice")).await, sorted(alice.clone()));
    assert_eq!(ids(&h, search("customer.id", "101")).await.len(), 1);
    assert!(ids(&h, search("sub", "nobody")).await.is_empty());
    // Both attributes must match.
    let both = RunFilter {
        search: vec![
            ("customer.id".into(), "100".into()),
            ("sub".into(), "alice".into()),
        ],
        ..Default::default()
    };
    assert_eq!(ids(&h, both).await.len(), 1);
    let by_key = RunFilter {
        idempotency_key: Some("order-3".into()),
        ..Default::default()
    };
    let found = h
        .engine
        .list(
            &tenant(),
            &RunFilter {
                limit: 10,
                ..by_key
            },
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].input["sub"], "carol");
    // Failed at s2: runs 0 and 2 (both alice's).
    let at = h.engine.failed_at(Some("paused"), "s2").await.unwrap();
    assert_eq!(at.len(), 1);
    let failed = RunFilter {
        failed_at: Some(at),
        ..Default::default()
    };
    assert_eq!(ids(&h, failed).await, sorted(alice.clone()));
    assert!(h.engine.failed_at(None, "nope").await.unwrap().is_empty());
    let none = RunFilter {
        failed_at: Some(Vec::new()),
        ..Default::default()
    };
    assert!(ids(&h, none).await.is_empty());
    // The created window.
    let newest = h.get(all[0]).await.created_at;
    let window = RunFilter {
        created_after: Some(newest - chrono::Duration::hours(1)),
        created_before: Some(newest + chrono::Duration::hours(1)),
        ..Default::default()
    };
    assert_eq!(ids(&h, window).await.len(), 4);
    let later = RunFilter {
        created_after: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
        ..Default::default()
    };
    assert!(ids(&h, later).await.is_empty());
    h.shutdown().await;
}

fn calls_of(h: &Harness, id: RunId, kind: CallKind) -> Vec<String> {
    h.script
        .calls()
        .into_iter()
        .filter(|c| c.run == id && c.kind == kind)
        .map(|c| c.step)
        .collect()
}

async fn rewind(h: &Harness, id: RunId, to: &str, patch: Value, reason: &str) -> Result<(), Error> {
    h.engine
        .act(
            &tenant(),
            id,
            OperatorAction::Rewind {
                to_step: to.into(),
                context_patch: patch.as_object().cloned(),
            },
            "op-1",
            reason,
        )
        .await
        .map(drop)
}

async fn rewind_of_a_failed_run_compensates_down_to_the_step_and_completes(store: Arc<dyn Store>) {
    let h = Harness::new(store, &[paused_saga()]).await;
    let id = h
        .start("paused", json!({"sub": "a", "fatal": {"s3": true}}))
        .await
        .run
        .id;
    h.wait_state(id, RunState::Failed).await;
    rewind(
        &h,
        id,
        "s2",
        json!({"fatal": {"s3": false}, "fixed": 1}),
        "ticket 7",
    )
    .await
    .unwrap();
    let done = h.wait_state(id, RunState::Completed).await;
    assert_eq!(done.context["fixed"], 1, "the patch was merged");
    assert_eq!(
        calls_of(&h, id, CallKind::Compensate),
        vec!["s2"],
        "only s2 (completed, from to_step on) was undone; s1 stays"
    );
    assert_eq!(
        calls_of(&h, id, CallKind::Forward),
        vec!["s1", "s2", "s3", "s2", "s3"],
        "forward again from s2"
    );
    assert!(done.steps.iter().all(|s| s.state == StepState::Succeeded));
    assert!(done.steps.iter().all(|s| !s.rewind_target));
    let events = h.engine.events(&tenant(), id, 0).await.unwrap();
    let rewound = events
        .iter()
        .find(|e| e.kind == EventKind::OperatorRewind)
        .expect("operator_rewind in the history");
    assert_eq!(rewound.actor, "op-1");
    assert_eq!(rewound.message.as_deref(), Some("ticket 7"));
    assert_eq!(rewound.step.as_deref(), Some("s2"));
    assert!(events.iter().any(|e| e.kind == EventKind::RunRewound));
    h.shutdown().await;
}

/// `first` (compensated), `wait` for signal `approve`, `last`.
fn waiting_saga() -> String {
    "name = \"approval\"\nversion = 1\n\
     [defaults]\ntimeout_ms = 5000\n[defaults.retry]\nmax_attempts = 1\n\
     [defaults.compensation_retry]\nmax_attempts = 3\ninitial_interval_ms = 5\nmax_interval_ms = 20\n\
     [[steps]]\nname = \"first\"\nhandler = \"test.do\"\ncompensation = \"test.undo\"\n\
     [[steps]]\nname = \"wait\"\nkind = \"signal\"\nsignal = \"approve\"\n\
     [[steps]]\nname = \"last\"\nhandler = \"test.do\"\n"
        .to_owned()
}

async fn wait_waiting(h: &Harness, id: RunId, forward_calls: usize) {
    let engine = h.engine.clone();
    let script = h.script.clone();
    poll(
        &format!("{id} to wait after {forward_calls} forward calls"),
        Duration::from_secs(10),
        || {
            let engine = engine.clone();
            let script = script.clone();
            async move {
                let r = engine.get(&tenant(), id).await.unwrap();
                let calls = script
                    .calls()
                    .iter()
                    .filter(|c| c.run == id && c.kind == CallKind::Forward)
                    .count();
                (r.steps[1].state == StepState::Waiting
                    && r.lease_owner.is_none()
                    && calls == forward_calls)
                    .then_some(())
            }
        },
    )
    .await
}

async fn rewind_of_a_waiting_run_goes_back_and_waits_again(store: Arc<dyn Store>) {
    let h = Harness::new(store, &[waiting_saga()]).await;
    let id = h.start("approval", json!({})).await.run.id;
    wait_waiting(&h, id, 1).await;
    rewind(&h, id, "first", json!({"plan": "gold"}), "wrong plan")
        .await
        .unwrap();
    wait_waiting(&h, id, 2).await;
    assert_eq!(calls_of(&h, id, CallKind::Compensate), vec!["first"]);
    let r = h.get(id).await;
    assert_eq!(r.state, RunState::Running);
    assert_eq!(r.context["plan"], "gold");
    assert_eq!(r.steps[0].state, StepState::Succeeded);
    h.shutdown().await;
}

async fn rewind_is_refused_where_it_does_not_fit(store: Arc<dyn Store>) {
    let h = Harness::new(store, &[paused_saga()]).await;
    let done = h.start("paused", json!({})).await.run.id;
    h.wait_state(done, RunState::Completed).await;
    let e = rewind(&h, done, "s1", json!({}), "why").await.unwrap_err();
    assert!(matches!(e, Error::FailedPrecondition(_)), "{e}");
    let failed = h
        .start("paused", json!({"fatal": {"s2": true}}))
        .await
        .run
        .id;
    h.wait_state(failed, RunState::Failed).await;
    let seq = h.get(failed).await.last_seq;
    for (to, reason) in [("s1", ""), ("nope", "why"), ("s3", "why")] {
        let e = rewind(&h, failed, to, json!({}), reason).await.unwrap_err();
        assert!(
            matches!(e, Error::InvalidArgument(_) | Error::FailedPrecondition(_)),
            "{to}: {e}"
        );
    }
    assert_eq!(
        h.get(failed).await.last_seq,
        seq,
        "a refusal writes nothing"
    );
    h.shutdown().await;
}

fn operator<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", "Bearer dev-operator".parse().unwrap());
    r
}

async fn bulk_over_a_thousand_runs_reports_refusals_per_run(store: Arc<dyn Store>) {
    let demo = TenantId::new("demo");
    let mut h = Harness::new(store, &[paused_saga()]).await;
    let mut failed = Vec::new();
    for i in 0..300 {
        let input = json!({"sub": format!("s{i}"), "fatal": {"s2": true}});
        failed.push(
            h.engine
                .start(start_req("demo", input, ""))
                .await
                .unwrap()
                .run
                .id,
        );
    }
    let engine = h.engine.clone();
    poll("300 runs to fail", Duration::from_secs(60), || {
        let engine = engine.clone();
        let demo = demo.clone();
        async move {
            let counts = engine.store().count_by_state(Some(&demo)).await.unwrap();
            counts
                .iter()
                .any(|(s, n)| *s == RunState::Failed && *n == 300)
                .then_some(())
        }
    })
    .await;
    // The other 700 stay PENDING: no executor from here on.
    if let Some(e) = h.executor.take() {
        e.shutdown().await;
    }
    for i in 0..700 {
        let input = json!({"sub": format!("p{i}")});
        h.engine.start(start_req("demo", input, "")).await.unwrap();
    }
    let auth = Arc::new(Authenticator::new(&dev_tokens()).unwrap());
    let api = WorkflowApi::new(
        h.engine.clone(),
        auth,
        ApiOptions {
            bulk_per_second: 100_000,
            ..ApiOptions::default()
        },
    );
    let seqs = |ids: Vec<RunId>| {
        let engine = h.engine.clone();
        let demo = demo.clone();
        async move {
            let mut v = Vec::new();
            for id in ids {
                v.push(engine.get(&demo, id).await.unwrap().last_seq);
            }
            v
        }
    };
    let before = seqs(failed.clone()).await;
    let bulk = |action: pb::BulkAction, dry_run: bool, filter: pb::ListWorkflowsRequest| {
        operator(pb::BulkOperateRequest {
            filter: Some(filter),
            action: action as i32,
            dry_run,
            max_runs: 0,
            reason: "OLT outage".into(),
            context_patch: None,
        })
    };
    // A dry run by failed step: the 300, nothing written.
    let dry = api
        .bulk_operate(bulk(
            pb::BulkAction::Compensate,
            true,
            pb::ListWorkflowsRequest {
                failed_step: "s2".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dry.matched, 300);
    assert_eq!(dry.workflow_ids.len(), 300);
    assert_eq!(dry.applied, 0);
    assert_eq!(
        seqs(failed.clone()).await,
        before,
        "a dry run stores nothing"
    );
    // Retry everything: the 300 FAILED runs go, the 700 PENDING are refused
    // one by one.
    let done = api
        .bulk_operate(bulk(pb::BulkAction::Retry, false, Default::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.matched, 1000);
    assert_eq!(done.applied, 300);
    assert_eq!(done.refused.len(), 700);
    assert!(
        done.refused
            .iter()
            .all(|r| r.reason.starts_with("FAILED_PRECONDITION") && r.reason.contains("PENDING")),
        "{:?}",
        done.refused.first()
    );
    for id in &failed {
        let r = h.engine.get(&demo, *id).await.unwrap();
        assert_eq!(r.state, RunState::Running, "{id}");
        let events = h.engine.events(&demo, *id, 0).await.unwrap();
        let retry = events.last().unwrap();
        assert_eq!(retry.kind, EventKind::OperatorRetry);
        assert_eq!(retry.actor, "dev-operator");
        assert_eq!(retry.message.as_deref(), Some("OLT outage"));
    }
    // A crm token may not.
    let mut crm = bulk(pb::BulkAction::Cancel, true, Default::default());
    crm.metadata_mut()
        .insert("authorization", "Bearer dev-crm".parse().unwrap());
    let e = api.bulk_operate(crm).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    // A filter naming an unknown step or attribute is refused.
    for filter in [
        pb::ListWorkflowsRequest {
            failed_step: "nope".into(),
            ..Default::default()
        },
        pb::ListWorkflowsRequest {
            search: [("nope".to_owned(), "x".to_owned())].into(),
            ..Default::default()
        },
    ] {
        let e = api
            .bulk_operate(bulk(pb::BulkAction::Retry, true, filter))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    }
}
