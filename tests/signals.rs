//! SignalWorkflow over gRPC, on the shipped `demo_wait` workflow: the
//! waiting step shows what it waits for and until when, a signal completes
//! it, callers need a token of the run's tenant (crm and above), and bad
//! input is refused with INVALID_ARGUMENT and stores nothing.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::time::{Duration, Instant};

use common::*;
use sagaflow_proto::v1 as pb;
use serde_json::json;
use tonic::Code;

const DEMO_WAIT: &str = include_str!("../workflows/demo_wait.v1.toml");

fn signal(
    id: &str,
    name: &str,
    payload: serde_json::Value,
    key: &str,
) -> pb::SignalWorkflowRequest {
    pb::SignalWorkflowRequest {
        id: id.into(),
        signal_name: name.into(),
        payload: obj(payload),
        idempotency_key: key.into(),
    }
}

async fn stored(pool: &sqlx::PgPool) -> (i64, i64) {
    let signals: i64 = sqlx::query_scalar("SELECT count(*) FROM run_signals")
        .fetch_one(pool)
        .await
        .unwrap();
    (signals, count_rows(pool).await.1)
}

#[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
async fn signal_workflow_over_grpc(pool: sqlx::PgPool) {
    let mut t = start(&pool, &[("demo_wait.v1.toml", DEMO_WAIT.to_owned())]).await;
    let c = &mut t.client;
    let id = start_run(c, "crm-a", "demo_wait", json!({}), "")
        .await
        .unwrap()
        .workflow
        .unwrap()
        .id;
    // The run waits for `approve`, with its timeout shown.
    let end = Instant::now() + Duration::from_secs(20);
    let waiting = loop {
        let w = c
            .get_workflow(req(pb::GetWorkflowRequest { id: id.clone() }, "crm-a"))
            .await
            .unwrap()
            .into_inner();
        if w.steps[1].state == pb::StepState::Waiting as i32 {
            break w;
        }
        assert!(Instant::now() < end, "the run never waited: {w:?}");
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval
    };
    assert_eq!(state(&waiting), pb::WorkflowState::Running);
    assert_eq!(waiting.current_step, "approve");
    assert_eq!(waiting.steps[1].waiting_for, "approve");
    let wake = waiting.steps[1].wake_at.unwrap();
    let created = waiting.created_at.unwrap();
    assert!(
        (3599..=3601).contains(&(wake.seconds - created.seconds)),
        "an hour's timeout: {wake:?} vs {created:?}"
    );

    // Refused before anything is stored.
    let before = stored(&pool).await;
    let cases = [
        (
            "",
            signal(&id, "approve", json!({}), ""),
            Code::Unauthenticated,
        ),
        (
            "crm-b",
            signal(&id, "approve", json!({}), ""),
            Code::NotFound,
        ),
        (
            "crm-a",
            signal("not-a-run", "approve", json!({}), ""),
            Code::InvalidArgument,
        ),
        (
            "crm-a",
            signal(&id, "", json!({}), ""),
            Code::InvalidArgument,
        ),
        (
            "crm-a",
            signal(&id, "Approve Now", json!({}), ""),
            Code::InvalidArgument,
        ),
        (
            "crm-a",
            signal(&id, "approve", json!({}), &"k".repeat(300)),
            Code::InvalidArgument,
        ),
    ];
    for (token, r, code) in cases {
        let status = c.signal_workflow(req(r.clone(), token)).await.unwrap_err();
        assert_eq!(status.code(), code, "{token} {r:?}: {status:?}");
        assert!(!status.message().is_empty());
    }
    assert_eq!(stored(&pool).await, before, "nothing stored");

    // An operator (crm and above) delivers it.
    let answer = c
        .signal_workflow(req(
            signal(&id, "approve", json!({"by": "alice"}), "order-1"),
            "operator-a",
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.delivered, "the step was waiting for it");
    let done = wait_state(c, "crm-a", &id, pb::WorkflowState::Completed).await;
    let ctx = sagaflow_proto::json::struct_to_json(done.context.as_ref().unwrap()).unwrap();
    assert_eq!(ctx["approval"], json!({"by": "alice"}));
    let history = c
        .get_workflow_history(req(
            pb::GetWorkflowHistoryRequest { id: id.clone() },
            "crm-a",
        ))
        .await
        .unwrap()
        .into_inner();
    let kinds: Vec<&str> = history.events.iter().map(|e| e.r#type.as_str()).collect();
    for k in ["step_waiting", "signal_received", "step_woken"] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    let received = history
        .events
        .iter()
        .find(|e| e.r#type == "signal_received")
        .unwrap();
    assert_eq!(received.actor, "operator-a-user");

    // A repeat of the same key is answered as before; a new signal to the
    // finished run is refused.
    let repeat = c
        .signal_workflow(req(
            signal(&id, "approve", json!({"by": "alice"}), "order-1"),
            "crm-a",
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(repeat.delivered);
    let status = c
        .signal_workflow(req(signal(&id, "approve", json!({}), "order-2"), "admin-a"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("COMPLETED"),
        "{}",
        status.message()
    );
}
