//! ScheduleService and LifecycleService over real gRPC: an in-process server
//! on a fresh PostgreSQL database with the subscriber workflows and the
//! built-in simulators.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::lifecycle_service_client::LifecycleServiceClient;
use sagaflow_proto::v1::schedule_service_client::ScheduleServiceClient;
use serde_json::json;
use tonic::Code;

const PROVISION: &str = include_str!("../workflows/provision_subscriber.v1.toml");

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn lifecycle_service_shows_a_provisioned_subscriber(pool: sqlx::PgPool) {
    let t = start_with(&pool, &[("provision.toml", PROVISION.to_string())], |c| {
        c.domain.pools = sagaflow_steps::DomainConfig::dev("a").pools;
        // The ACS simulator signals the CPE's inform as tenant a's crm.
        c.domain.simulators.inform_tokens = [("a".to_owned(), "crm-a".to_owned())].into();
    })
    .await;
    let mut c = t.client.clone();
    let input = json!({
        "subscriber_id": "sub-7", "plan": "fiber-300", "enable_ipv6": true,
        "customer": {"id": "c-7", "name": "Grace Hopper", "email": "grace@example.net"},
        "nas": {"ip": "127.0.0.1"}, "onu_serial": "ALCL0007", "cpe_serial": "CPE0007"
    });
    let id = start_run(&mut c, "crm-a", "provision_subscriber", input, "order-7")
        .await
        .unwrap()
        .workflow
        .unwrap()
        .id;
    wait_state(&mut c, "crm-a", &id, pb::WorkflowState::Completed).await;

    let mut l = LifecycleServiceClient::new(t.channel.clone());
    let addrs = l
        .get_subscriber_addresses(req(
            pb::GetSubscriberAddressesRequest {
                subscriber_id: "sub-7".into(),
            },
            "crm-a",
        ))
        .await
        .unwrap()
        .into_inner()
        .addresses;
    assert_eq!(addrs.len(), 2);
    for a in &addrs {
        assert_eq!(a.state, pb::LifecycleState::Active as i32);
        assert_eq!(a.workflow_id, id);
        assert!(a.allocated_at.is_some() && a.activated_at.is_some());
    }
    let families: Vec<i32> = addrs.iter().map(|a| a.family).collect();
    assert!(
        families.contains(&(pb::AddressFamily::Ipv4 as i32))
            && families.contains(&(pb::AddressFamily::Ipv6 as i32))
    );
    // Another tenant sees nothing of it.
    let other = l
        .get_subscriber_addresses(req(
            pb::GetSubscriberAddressesRequest {
                subscriber_id: "sub-7".into(),
            },
            "crm-b",
        ))
        .await
        .unwrap()
        .into_inner()
        .addresses;
    assert!(other.is_empty());

    let pools = l
        .list_pools(req(pb::ListPoolsRequest {}, "crm-a"))
        .await
        .unwrap()
        .into_inner()
        .pools;
    assert_eq!(pools.len(), 2);
    for p in &pools {
        assert_eq!(p.in_use, 1, "{p:?}");
        assert!(p.capacity > 1000);
        assert!(p.utilization_percent > 0.0 && p.utilization_percent < 1.0);
        assert_eq!(
            (p.warning_threshold_percent, p.critical_threshold_percent),
            (80, 100)
        );
    }
    let summary = l
        .get_lifecycle_summary(req(pb::GetLifecycleSummaryRequest {}, "crm-a"))
        .await
        .unwrap()
        .into_inner()
        .counts;
    let active: u64 = summary
        .iter()
        .filter(|c| c.state == pb::LifecycleState::Active as i32)
        .map(|c| c.count)
        .sum();
    assert_eq!(active, 2);
    let e = l
        .get_subscriber_addresses(req(
            pb::GetSubscriberAddressesRequest {
                subscriber_id: String::new(),
            },
            "crm-a",
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = l
        .list_pools(tonic::Request::new(pb::ListPoolsRequest {}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    t.server.shutdown().await;
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn schedule_service_round_trip(pool: sqlx::PgPool) {
    let t = start(&pool, &[("demo.toml", DEMO.to_string())]).await;
    let mut s = ScheduleServiceClient::new(t.channel.clone());
    let create = |name: &str, cron: &str, tz: &str| pb::CreateScheduleRequest {
        name: name.into(),
        cron: cron.into(),
        timezone: tz.into(),
        workflow_name: "demo_saga".into(),
        input: obj(json!({"demo": {}})),
        overlap_policy: pb::OverlapPolicy::Skip as i32,
        catchup_policy: pb::CatchupPolicy::One as i32,
        paused: false,
    };
    let made = s
        .create_schedule(req(
            create("nightly", "0 2 * * *", "Europe/Berlin"),
            "admin-a",
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(made.next_fire_at.is_some());
    assert_eq!(made.timezone, "Europe/Berlin");
    for (bad, code) in [
        (create("bad-cron", "61 * * * *", ""), Code::InvalidArgument),
        (
            create("bad-zone", "0 2 * * *", "Mars/Olympus"),
            Code::InvalidArgument,
        ),
        (create("nightly", "0 3 * * *", ""), Code::AlreadyExists),
        (
            pb::CreateScheduleRequest {
                workflow_name: "nope".into(),
                ..create("x", "0 2 * * *", "")
            },
            Code::InvalidArgument,
        ),
    ] {
        assert_eq!(
            s.create_schedule(req(bad, "admin-a"))
                .await
                .unwrap_err()
                .code(),
            code
        );
    }
    assert_eq!(
        s.create_schedule(req(create("by-operator", "0 2 * * *", ""), "operator-a"))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let list = s
        .list_schedules(req(pb::ListSchedulesRequest {}, "admin-a"))
        .await
        .unwrap()
        .into_inner()
        .schedules;
    assert_eq!(list.len(), 1);
    assert!(
        s.list_schedules(req(pb::ListSchedulesRequest {}, "admin-b"))
            .await
            .unwrap()
            .into_inner()
            .schedules
            .is_empty()
    );
    let paused = s
        .pause_schedule(req(
            pb::PauseScheduleRequest {
                id: made.id.clone(),
                reason: "maintenance".into(),
            },
            "admin-a",
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(paused.paused);
    let resumed = s
        .resume_schedule(req(
            pb::ResumeScheduleRequest {
                id: made.id.clone(),
            },
            "admin-a",
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!resumed.paused);
    let started = s
        .trigger_schedule(req(
            pb::TriggerScheduleRequest {
                id: made.id.clone(),
            },
            "admin-a",
        ))
        .await
        .unwrap()
        .into_inner();
    let run = started.workflow.unwrap();
    assert_eq!(run.schedule_id, made.id);
    let after = s
        .get_schedule(req(
            pb::GetScheduleRequest {
                id: made.id.clone(),
            },
            "admin-a",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        after.next_fire_at, made.next_fire_at,
        "a trigger leaves the next regular fire alone"
    );
    assert_eq!(
        s.get_schedule(req(
            pb::GetScheduleRequest {
                id: made.id.clone()
            },
            "admin-b"
        ))
        .await
        .unwrap_err()
        .code(),
        Code::NotFound
    );
    assert_eq!(
        s.get_schedule(req(pb::GetScheduleRequest { id: "nope".into() }, "admin-a"))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    s.delete_schedule(req(
        pb::DeleteScheduleRequest {
            id: made.id.clone(),
        },
        "admin-a",
    ))
    .await
    .unwrap();
    assert_eq!(
        s.get_schedule(req(pb::GetScheduleRequest { id: made.id }, "admin-a"))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    t.server.shutdown().await;
}
