//! An operator ends a run that waits for one (COMPENSATION_FAILED or FAILED)
//! as resolved by hand over gRPC: CancelWorkflow with compensate = false and
//! a reason ends it TERMINATED, records who and why, and frees its
//! concurrency key for the run queued behind it.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use sagaflow_proto::v1 as pb;
use serde_json::json;
use sqlx::PgPool;
use tonic::Code;

fn cancel(id: &str, compensate: bool, reason: &str) -> pb::CancelWorkflowRequest {
    pb::CancelWorkflowRequest {
        id: id.into(),
        compensate,
        reason: reason.into(),
    }
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn compensation_failed_run_is_resolved_by_hand_and_frees_its_key(pool: PgPool) {
    let t = start(&pool, &[("keyed.toml", keyed_demo("keyed", "queue"))]).await;
    let mut c = t.client.clone();
    // FAILED at `bill`, then the operator's compensation gives up at `configure`.
    let stuck = start_run(
        &mut c,
        "crm-a",
        "keyed",
        json!({"subscriber_id": "alice", "demo": {"fail_step": "bill", "fail_compensation": "configure"}}),
        "",
    )
    .await
    .unwrap()
    .workflow
    .unwrap()
    .id;
    wait_state(&mut c, "crm-a", &stuck, pb::WorkflowState::Failed).await;
    c.compensate_workflow(req(
        pb::CompensateWorkflowRequest {
            id: stuck.clone(),
            reason: "order withdrawn".into(),
        },
        "operator-a",
    ))
    .await
    .unwrap();
    wait_state(
        &mut c,
        "crm-a",
        &stuck,
        pb::WorkflowState::CompensationFailed,
    )
    .await;
    // The next run for the same subscriber waits behind the key.
    let queued = start_run(
        &mut c,
        "crm-a",
        "keyed",
        json!({"subscriber_id": "alice"}),
        "",
    )
    .await
    .unwrap()
    .workflow
    .unwrap()
    .id;
    let w = c
        .get_workflow(req(pb::GetWorkflowRequest { id: queued.clone() }, "crm-a"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&w), pb::WorkflowState::Pending);

    // Compensating again is what retry is for.
    let e = c
        .cancel_workflow(req(cancel(&stuck, true, "again"), "operator-a"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message().contains("retry") && e.message().contains("compensate = false"),
        "{}",
        e.message()
    );
    // Resolving by hand needs a reason.
    for reason in ["", "   "] {
        let e = c
            .cancel_workflow(req(cancel(&stuck, false, reason), "operator-a"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with("reason"), "{}", e.message());
    }
    // A crm token cannot.
    let e = c
        .cancel_workflow(req(cancel(&stuck, false, "x"), "crm-a"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    let w = c
        .cancel_workflow(req(
            cancel(&stuck, false, "RADIUS rows removed by hand, ticket 42"),
            "operator-a",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&w), pb::WorkflowState::Terminated);
    assert!(w.finished_at.is_some());
    let h = c
        .get_workflow_history(req(
            pb::GetWorkflowHistoryRequest { id: stuck.clone() },
            "crm-a",
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    let tail: Vec<(&str, &str, &str)> = h
        .iter()
        .rev()
        .take(2)
        .rev()
        .map(|e| (e.r#type.as_str(), e.actor.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(
        tail[0],
        (
            "operator_cancel",
            "operator-a-user",
            "RADIUS rows removed by hand, ticket 42"
        )
    );
    assert_eq!(tail[1].0, "run_terminated");
    // The key is free: the queued run starts and completes.
    wait_state(&mut c, "crm-a", &queued, pb::WorkflowState::Completed).await;
    // Terminal now: nothing more.
    let e = c
        .cancel_workflow(req(cancel(&stuck, false, "again"), "operator-a"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    t.server.shutdown().await;
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn failed_run_is_resolved_by_hand_with_a_reason(pool: PgPool) {
    let t = start(&pool, &[("demo.toml", DEMO.to_owned())]).await;
    let mut c = t.client.clone();
    let id = failed_run(&mut c, "crm-a").await;
    let e = c
        .cancel_workflow(req(cancel(&id, false, ""), "operator-a"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let w = c
        .cancel_workflow(req(cancel(&id, false, "configured by hand"), "operator-a"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&w), pb::WorkflowState::Terminated);
    t.server.shutdown().await;
}
