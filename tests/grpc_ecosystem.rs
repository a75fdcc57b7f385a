//! What generic gRPC tools rely on: server reflection in both versions
//! (v1, and v1alpha for older grpcurl, Postman and Kreya) listing the API's
//! services, and a health status for the server and for each service.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::{v1, v1alpha};

const SERVICES: [&str; 3] = [
    "sagaflow.v1.WorkflowService",
    "sagaflow.v1.ScheduleService",
    "sagaflow.v1.LifecycleService",
];

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn reflection_in_both_versions_and_health_per_service(pool: sqlx::PgPool) {
    let t = start(&pool, &[("demo.toml", DEMO.to_string())]).await;

    // v1alpha: list the services, then the file that defines one.
    let mut alpha =
        v1alpha::server_reflection_client::ServerReflectionClient::new(t.channel.clone());
    use v1alpha::server_reflection_request::MessageRequest as AReq;
    use v1alpha::server_reflection_response::MessageResponse as AResp;
    let reqs = vec![
        v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(AReq::ListServices(String::new())),
        },
        v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(AReq::FileContainingSymbol(
                "sagaflow.v1.WorkflowService".into(),
            )),
        },
    ];
    let mut answers = alpha
        .server_reflection_info(tokio_stream::iter(reqs))
        .await
        .unwrap()
        .into_inner();
    let Some(AResp::ListServicesResponse(list)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("v1alpha answered ListServices with something else")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for s in SERVICES {
        assert!(
            names.contains(&s.to_owned()),
            "v1alpha lists {s}: {names:?}"
        );
    }
    let Some(AResp::FileDescriptorResponse(files)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("v1alpha answered FileContainingSymbol with something else")
    };
    assert!(!files.file_descriptor_proto.is_empty());

    // v1: the same list.
    let mut v1c = v1::server_reflection_client::ServerReflectionClient::new(t.channel.clone());
    let mut answers = v1c
        .server_reflection_info(tokio_stream::iter(vec![v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        }]))
        .await
        .unwrap()
        .into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("v1 answered ListServices with something else")
    };
    assert!(list.service.iter().any(|s| s.name == SERVICES[0]));

    // Health: the server and every service, SERVING once the store is ready.
    let mut health = HealthClient::new(t.channel.clone());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    for svc in std::iter::once("").chain(SERVICES) {
        loop {
            let r = health
                .check(HealthCheckRequest {
                    service: svc.into(),
                })
                .await;
            if let Ok(r) = &r
                && r.get_ref().status == ServingStatus::Serving as i32
            {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{svc:?}: {r:?}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await; // poll interval
        }
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "sagaflow.v1.Nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    t.server.shutdown().await;
}
