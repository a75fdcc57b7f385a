//! The API's reads have a statement timeout of their own
//! (`database.api_statement_timeout_ms`): on PostgreSQL, a read held up past
//! it (here by a lock another session keeps on `run_events`) is cancelled
//! and answered DEADLINE_EXCEEDED over gRPC and 504 over HTTP, with a
//! message naming the key, instead of hanging; once the lock is gone the
//! same read answers.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::http::Http;
use common::*;
use sagaflow_proto::v1 as pb;
use serde_json::json;
use tonic::Code;

/// A bound on each call of this test, so a hang fails it rather than
/// stalling the suite (the timeout under test is 300 ms).
const NO_HANG: Duration = Duration::from_secs(30);

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn a_read_past_the_api_statement_timeout_answers_deadline_exceeded(pool: sqlx::PgPool) {
    let t = start_with(&pool, &[("demo.toml", DEMO.to_owned())], |c| {
        c.database.api_statement_timeout_ms = 300;
    })
    .await;
    let mut c = t.client.clone();
    let id = run_until(
        &mut c,
        "crm-a",
        "demo_saga",
        json!({}),
        pb::WorkflowState::Completed,
    )
    .await;

    // Another session holds run_events: every read of a history waits.
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE run_events IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();

    let call = c.get_workflow_history(req(
        pb::GetWorkflowHistoryRequest { id: id.clone() },
        "crm-a",
    ));
    let e = tokio::time::timeout(NO_HANG, call)
        .await
        .expect("the read answered")
        .unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(
        e.message().contains("database.api_statement_timeout_ms"),
        "{}",
        e.message()
    );

    let http = Http::new(t.server.http_addr);
    let a = tokio::time::timeout(
        NO_HANG,
        http.get(&format!("/v1/workflows/{id}/history"), "crm-a"),
    )
    .await
    .expect("the HTTP read answered");
    assert_eq!(a.status, 504, "{}", a.text);
    assert_eq!(a.code(), "DEADLINE_EXCEEDED");

    // The lock gone, the same read answers.
    blocker.rollback().await.unwrap();
    let events = history_of(&mut c, "crm-a", &id).await;
    assert!(!events.is_empty());
}
