//! The RPCs of the published contract this server does not carry out yet
//! (rewind, bulk operations):
//! each checks the caller's token and role first, then answers
//! UNIMPLEMENTED with a message naming the RPC, and writes nothing.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use common::*;
use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::lifecycle_service_client::LifecycleServiceClient;
use tonic::Code;

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn rpcs_not_built_yet_answer_unimplemented_after_auth(pool: sqlx::PgPool) {
    let mut t = start(&pool, &[]).await;
    let mut l = LifecycleServiceClient::new(t.channel.clone());
    let before = count_rows(&pool).await;
    let mut answers = Vec::new();
    for token in ["", "admin-a"] {
        let c = &mut t.client;
        answers.push((
            "RewindWorkflow",
            token,
            c.rewind_workflow(req(pb::RewindWorkflowRequest::default(), token))
                .await
                .map(|_| ()),
        ));
        answers.push((
            "BulkOperate",
            token,
            c.bulk_operate(req(pb::BulkOperateRequest::default(), token))
                .await
                .map(|_| ()),
        ));
    }
    for (rpc, token, answer) in answers {
        let status = answer.unwrap_err();
        if token.is_empty() {
            assert_eq!(status.code(), Code::Unauthenticated, "{rpc}: {status:?}");
        } else {
            assert_eq!(status.code(), Code::Unimplemented, "{rpc}: {status:?}");
            assert!(
                status.message().contains(rpc),
                "{rpc}: {}",
                status.message()
            );
        }
    }
    // Pool administration: a crm token may not even learn it exists; an
    // admin's request without a range is refused, saying what to fix.
    let status = l
        .create_pool(req(pb::CreatePoolRequest::default(), "crm-a"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = l
        .create_pool(req(pb::CreatePoolRequest::default(), "admin-a"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("cidr"), "{status:?}");
    assert_eq!(count_rows(&pool).await, before, "nothing written");
}
