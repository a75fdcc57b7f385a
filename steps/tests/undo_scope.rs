//! An undo removes only what its own forward call made. Each compensation
//! of the provisioning workflow is called for a run whose forward outcome is
//! unknown (it never answered: nothing of it may have landed) while the
//! subscriber's records belong to another run, or another tenant: nothing
//! changes. And a step that applied part of its effect (IPv4 allocated,
//! IPv6 failed) is compensated by the engine. On PostgreSQL and SQLite.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use sagaflow_engine::handler::{CallKind, Registry, StepRequest};
use sagaflow_engine::ids::{RunId, TenantId};
use sagaflow_engine::state::{RunState, StepState};
use sagaflow_steps::lifecycle::repo as lifecycle;
use sagaflow_steps::{Deps, DomainDb};
use serde_json::{Value, json};
use support::{HELD, Options, TENANT, World, provision_input};
use tokio_util::sync::CancellationToken;

/// The provisioning workflow's compensations of the database steps:
/// (handler, the step it undoes).
const UNDOS: [(&str, &str); 6] = [
    ("customer.delete", "create_customer"),
    ("subscriber.delete", "create_subscriber"),
    ("network_profile.delete", "create_network_profile"),
    ("ipam.release", "allocate_ip_address"),
    ("lifecycle.revoke_ipv4", "activate_ipv4_lifecycle"),
    ("lifecycle.revoke_ipv6", "activate_ipv6_lifecycle"),
];

/// The real ISP handlers on the world's database.
fn handlers(w: &World) -> Registry {
    let mut deps = Deps {
        domain: Some(w.domain.as_ref().unwrap().deps.clone()),
        ..Deps::default()
    };
    match &w.db {
        DomainDb::Postgres(p) => deps.postgres = Some(p.clone()),
        DomainDb::Sqlite(p) => deps.sqlite = Some(p.clone()),
    }
    let mut r = Registry::new();
    sagaflow_steps::register(&mut r, &deps);
    r
}

fn compensation(tenant: &str, run: RunId, step: &str, context: &Value) -> StepRequest {
    StepRequest {
        run_id: run,
        tenant_id: TenantId::new(tenant),
        workflow: "provision_subscriber".into(),
        step: step.into(),
        kind: CallKind::Compensate,
        attempt: 1,
        idempotency_key: format!("{run}:{step}:compensate"),
        context: Arc::new(context.clone()),
        cancel: CancellationToken::new(),
    }
}

async fn undos_leave_what_another_run_made(w: World) {
    let done = w
        .run("provision_subscriber", provision_input("s1", true))
        .await;
    assert_eq!(done.state, RunState::Completed, "{:?}", done.error);
    let before = w.state().await;
    assert_eq!(before.held.len(), 2);
    assert_eq!(before.customers, ["cust-s1"]);
    let r = handlers(&w);
    let ctx = provision_input("s1", true);

    // Another run of this tenant whose forward calls never answered, and
    // (with the completed run's own id) another tenant.
    for (tenant, run) in [(TENANT, RunId::new()), ("t2", done.id)] {
        for (handler, step) in UNDOS {
            r.get(handler)
                .unwrap()
                .call(compensation(tenant, run, step, &ctx))
                .await
                .unwrap_or_else(|e| panic!("{handler} as {tenant}: {e}"));
            assert_eq!(
                w.state().await,
                before,
                "{handler} of {tenant}'s run {run} changed what run {} made",
                done.id
            );
        }
    }
    w.shutdown().await;
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn undos_leave_what_another_run_made_postgres(pool: sqlx::PgPool) {
    undos_leave_what_another_run_made(World::postgres(pool, Options::default()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undos_leave_what_another_run_made_sqlite() {
    undos_leave_what_another_run_made(World::sqlite(Options::default()).await).await;
}

/// IPv4 allocated, then the IPv6 allocation fails for good: the step's
/// failure is `uncertain`, the engine compensates the step itself, and the
/// IPv4 address goes back through `ipam.release`.
async fn a_partly_applied_allocation_is_compensated(w: World) {
    let before = w.state().await;
    let mut input = provision_input("s2", true);
    input["ipv6_pool"] = json!("no-such-pool");
    let run = w.run("provision_subscriber", input).await;
    assert_eq!(run.state, RunState::Compensated, "{:?}", run.error);
    let step = run
        .steps
        .iter()
        .find(|s| s.name == "allocate_ip_address")
        .unwrap();
    assert_eq!(step.state, StepState::Compensated, "{:?}", run.steps);
    let error = run.error.clone().unwrap_or_default();
    assert!(error.contains("uncertain"), "{error}");
    assert!(error.contains("IPv4 10.20.0.1 allocated"), "{error}");
    let records = lifecycle::for_subscriber(&w.db, TENANT, "s2")
        .await
        .unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(!HELD.contains(&records[0].state), "{records:?}");
    assert_eq!(w.state().await, before);
    w.shutdown().await;
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn a_partly_applied_allocation_is_compensated_postgres(pool: sqlx::PgPool) {
    a_partly_applied_allocation_is_compensated(World::postgres(pool, Options::default()).await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partly_applied_allocation_is_compensated_sqlite() {
    a_partly_applied_allocation_is_compensated(World::sqlite(Options::default()).await).await;
}
