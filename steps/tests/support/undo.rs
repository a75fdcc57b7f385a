//! The undo scenario every IPAM backend must pass: each provisioning step
//! made to fail for good in turn, and nothing left behind.
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::BTreeSet;
use std::future::Future;

use sagaflow_engine::state::{RunState, StepState};
use sagaflow_steps::lifecycle::repo as lifecycle;
use sagaflow_steps::lifecycle::{AddressState, Family};
use sagaflow_steps::sim::Fault;
use serde_json::Value;

use super::{TENANT, World, provision_input};

/// How each provisioning step is made to fail for good.
enum Breaks {
    /// The handler fails (the records steps).
    Handler(&'static str),
    /// The simulator answers every call 503.
    Simulator(&'static str),
}

const STEPS: [(&str, Breaks); 10] = [
    ("create_customer", Breaks::Handler("customer.create")),
    ("create_subscriber", Breaks::Handler("subscriber.create")),
    (
        "create_network_profile",
        Breaks::Handler("network_profile.create"),
    ),
    ("allocate_ip_address", Breaks::Handler("ipam.allocate")),
    (
        "create_radius_account",
        Breaks::Handler("radius.create_account"),
    ),
    (
        "activate_ipv4_lifecycle",
        Breaks::Handler("lifecycle.activate_ipv4"),
    ),
    ("activate_onu", Breaks::Simulator("onu.activate")),
    ("wait_onu_online", Breaks::Handler("onu.await_online")),
    ("configure_cpe", Breaks::Simulator("cpe.configure")),
    (
        "create_billing_service",
        Breaks::Simulator("billing.create"),
    ),
];

/// The steps that wait (for the ONU to range, for the CPE's inform).
const WAITS: [&str; 2] = ["wait_onu_online", "cpe_inform"];

/// No system outside the world to compare.
pub async fn nothing_outside() -> Value {
    Value::Null
}

/// Provisions once, then makes each step fail for good in turn: every run
/// is compensated and leaves the world as it was, and `outside()` (what
/// an external system holds) unchanged.
pub async fn every_failing_step_leaves_the_system_as_it_was<F, Fut>(w: World, outside: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Value>,
{
    // Something already provisioned, so "as before" is not just "empty".
    let base = w
        .run("provision_subscriber", provision_input("base", true))
        .await;
    assert_eq!(base.state, RunState::Completed, "{:?}", base.error);
    let before = w.state().await;
    assert_eq!(before.held.len(), 2);
    let outside_before = outside().await;

    for (i, (step, breaks)) in STEPS.iter().enumerate() {
        match breaks {
            Breaks::Handler(h) => w.set_broken(h, true),
            Breaks::Simulator(op) => w.sims().set_fault(op, Fault::always()),
        }
        let sub = format!("sub-{i}");
        let run = w
            .run("provision_subscriber", provision_input(&sub, true))
            .await;
        assert_eq!(run.state, RunState::Compensated, "{step}: {:?}", run.error);
        let failed: Vec<&str> = run
            .steps
            .iter()
            .filter(|s| s.state == StepState::Failed)
            .map(|s| s.name.as_str())
            .collect();
        match breaks {
            Breaks::Handler(_) => assert_eq!(failed, vec![*step]),
            // Every answer a 503: the outcome is unknown, so the step that
            // gave up is compensated too.
            Breaks::Simulator(_) => {
                assert!(failed.is_empty(), "{step}: {failed:?}");
                let s = run.steps.iter().find(|s| s.name == *step).unwrap();
                assert_eq!(s.state, StepState::Compensated, "{step}");
                assert!(
                    run.error.as_deref().unwrap_or("").contains("uncertain"),
                    "{step}: {:?}",
                    run.error
                );
            }
        }
        // The waits have nothing to undo: they stay SUCCEEDED.
        assert!(
            run.steps.iter().all(|s| WAITS.contains(&s.name.as_str())
                || !matches!(
                    s.state,
                    StepState::Succeeded | StepState::CompensationFailed
                )),
            "{step}: every completed step was compensated: {:?}",
            run.steps
        );
        let after = w.state().await;
        assert_eq!(after, before, "{step}: the system changed");
        assert_eq!(
            outside().await,
            outside_before,
            "{step}: the outside changed"
        );
        let records = lifecycle::for_subscriber(&w.db, TENANT, &sub)
            .await
            .unwrap();
        assert!(
            records.iter().all(|r| !r.state.holds_address()),
            "{step}: {records:?}"
        );
        match breaks {
            Breaks::Handler(h) => w.set_broken(h, false),
            Breaks::Simulator(op) => w.sims().set_fault(op, Fault::default()),
        }
    }

    // The optional step: its failure does not fail provisioning; the prefix
    // stays ALLOCATED (the cleanup job reports it as a leak later).
    w.set_broken("lifecycle.activate_ipv6", true);
    let run = w
        .run("provision_subscriber", provision_input("opt", true))
        .await;
    assert_eq!(run.state, RunState::Completed, "{:?}", run.error);
    let step = run
        .steps
        .iter()
        .find(|s| s.name == "activate_ipv6_lifecycle")
        .unwrap();
    assert_eq!(step.state, StepState::FailedNonBlocking);
    let states: BTreeSet<(Family, AddressState)> = lifecycle::for_subscriber(&w.db, TENANT, "opt")
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.family, r.state))
        .collect();
    assert_eq!(
        states,
        BTreeSet::from([
            (Family::Ipv4, AddressState::Active),
            (Family::Ipv6, AddressState::Allocated)
        ])
    );
    w.shutdown().await;
}
