//! Every RPC of the published contract is carried out: each checks the
//! caller's token first, and none answers UNIMPLEMENTED. An empty request
//! is refused saying what to fix, and writes nothing.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use common::*;
use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::lifecycle_service_client::LifecycleServiceClient;
use tonic::Code;

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn every_rpc_is_built_and_checks_auth_first(pool: sqlx::PgPool) {
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
            "CreatePool",
            token,
            l.create_pool(req(pb::CreatePoolRequest::default(), token))
                .await
                .map(|_| ()),
        ));
        answers.push((
            "ReserveAddress",
            token,
            l.reserve_address(req(pb::ReserveAddressRequest::default(), token))
                .await
                .map(|_| ()),
        ));
    }
    for (rpc, token, answer) in answers {
        let status = answer.unwrap_err();
        if token.is_empty() {
            assert_eq!(status.code(), Code::Unauthenticated, "{rpc}: {status:?}");
        } else {
            assert_eq!(status.code(), Code::InvalidArgument, "{rpc}: {status:?}");
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
    assert!(status.message().contains("cidr"), "{status:?}");
    assert_eq!(count_rows(&pool).await, before, "nothing written");
}
