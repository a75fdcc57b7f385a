//! The subscriber sagas end to end, on the shipped workflow files, with the
//! simulators and stand-in RADIUS handlers.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use sagaflow_engine::state::RunState;
use sagaflow_steps::lifecycle::repo as lifecycle;
use sagaflow_steps::lifecycle::{AddressState, Family};
use sagaflow_steps::sim::Fault;
use sagaflow_steps::subscriber::SubscriberState;
use sagaflow_steps::subscriber::repo as subscribers;
use serde_json::json;
use support::undo::{every_failing_step_leaves_the_system_as_it_was, nothing_outside};
use support::{HELD, OTHER_TENANT, Options, TENANT, V4_POOL, V6_POOL, World, provision_input};

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn every_failing_step_is_undone_postgres(pool: sqlx::PgPool) {
    every_failing_step_leaves_the_system_as_it_was(
        World::postgres(pool, Options::default()).await,
        nothing_outside,
    )
    .await;
}

#[tokio::test]
async fn every_failing_step_is_undone_sqlite() {
    every_failing_step_leaves_the_system_as_it_was(
        World::sqlite(Options::default()).await,
        nothing_outside,
    )
    .await;
}

async fn round_trip(w: World) {
    let free_before = w.state().await.usage;
    assert_eq!(free_before, vec![(V4_POOL.into(), 0), (V6_POOL.into(), 0)]);

    let run = w
        .run("provision_subscriber", provision_input("s1", true))
        .await;
    assert_eq!(run.state, RunState::Completed, "{:?}", run.error);
    let v4 = run.context["ipv4_address"].as_str().unwrap().to_owned();
    let v6 = run.context["ipv6_prefix"].as_str().unwrap().to_owned();
    assert_eq!(v4, "10.20.0.1");
    assert_eq!(v6, "2001:db8:1000::/56");
    let records = lifecycle::for_subscriber(&w.db, TENANT, "s1")
        .await
        .unwrap();
    assert_eq!(records.len(), 2);
    for r in &records {
        assert_eq!(r.state, AddressState::Active);
        assert!(r.allocated_at.unwrap() <= r.activated_at.unwrap());
        assert_eq!(r.workflow_id.as_deref(), Some(run.id.to_string().as_str()));
    }
    let snap = w.sims().snapshot();
    assert_eq!(
        snap.tenant(TENANT).onus["ONU-s1"].activation.subscriber_id,
        "s1"
    );
    assert_eq!(
        snap.tenant(TENANT).onus["ONU-s1"].activation.service_vlan,
        Some(100)
    );
    assert_eq!(
        snap.tenant(TENANT).cpes["CPE-s1"]
            .config
            .ipv4_address
            .as_deref(),
        Some(v4.as_str())
    );
    assert_eq!(
        snap.tenant(TENANT).cpes["CPE-s1"]
            .config
            .ipv6_prefix
            .as_deref(),
        Some(v6.as_str())
    );
    assert_eq!(
        snap.tenant(TENANT).services["s1"].state.to_string(),
        "ACTIVE"
    );
    assert_eq!(w.radius.accounts()["s1"].group, "fiber-500");
    assert_eq!(
        w.radius.accounts()["s1"].framed_ip.as_deref(),
        Some(v4.as_str())
    );

    let run = w
        .run("suspend_subscriber", json!({"subscriber_id": "s1"}))
        .await;
    assert_eq!(run.state, RunState::Completed, "{:?}", run.error);
    let records = lifecycle::for_subscriber(&w.db, TENANT, "s1")
        .await
        .unwrap();
    for r in &records {
        assert_eq!(r.state, AddressState::Suspended);
        assert!(r.activated_at.unwrap() <= r.suspended_at.unwrap());
        assert_eq!(r.workflow_id.as_deref(), Some(run.id.to_string().as_str()));
    }
    let suspended_at: Vec<_> = records.iter().map(|r| r.suspended_at.unwrap()).collect();
    assert_eq!(w.radius.accounts()["s1"].group, "suspended");
    assert_eq!(
        w.sims().snapshot().tenant(TENANT).services["s1"]
            .state
            .to_string(),
        "SUSPENDED"
    );
    let sub = subscribers::get_subscriber(&w.db, TENANT, "s1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sub.state, SubscriberState::Suspended);

    let run = w
        .run("reactivate_subscriber", json!({"subscriber_id": "s1"}))
        .await;
    assert_eq!(run.state, RunState::Completed, "{:?}", run.error);
    let records = lifecycle::for_subscriber(&w.db, TENANT, "s1")
        .await
        .unwrap();
    for (r, suspended_at) in records.iter().zip(suspended_at) {
        assert_eq!(r.state, AddressState::Active);
        assert!(r.activated_at.unwrap() >= suspended_at, "activated again");
        assert_eq!(r.suspended_at, Some(suspended_at), "kept");
    }
    assert_eq!(w.radius.accounts()["s1"].group, "fiber-500");
    assert_eq!(
        w.sims().snapshot().tenant(TENANT).services["s1"]
            .state
            .to_string(),
        "ACTIVE"
    );

    let run = w
        .run("deprovision_subscriber", json!({"subscriber_id": "s1"}))
        .await;
    assert_eq!(run.state, RunState::Completed, "{:?}", run.error);
    let records = lifecycle::for_subscriber(&w.db, TENANT, "s1")
        .await
        .unwrap();
    for r in &records {
        assert_eq!(r.state, AddressState::Revoked);
        let t = |s| r.entered(s).unwrap();
        assert!(t(AddressState::Allocated) <= t(AddressState::Active));
        assert!(t(AddressState::Active) <= t(AddressState::Revoking));
        assert!(t(AddressState::Revoking) <= t(AddressState::Revoked));
        assert_eq!(r.workflow_id.as_deref(), Some(run.id.to_string().as_str()));
    }
    assert_eq!(
        w.radius.packets(),
        vec![
            ("coa".into(), "s1".into(), Some(v4.clone())),
            ("coa".into(), "s1".into(), Some(v4.clone())),
            ("disconnect".into(), "s1".into(), Some(v4.clone())),
        ]
    );
    let state = w.state().await;
    assert!(state.held.is_empty());
    assert_eq!(state.usage, free_before, "the pools are free again");
    assert!(state.radius.is_empty());
    assert!(state.sim.tenant(TENANT).onus.is_empty() && state.sim.tenant(TENANT).cpes.is_empty());
    assert_eq!(
        state.sim.tenant(TENANT).services["s1"].state.to_string(),
        "SUSPENDED"
    );
    assert_eq!(
        state.subscribers,
        vec![("s1".into(), SubscriberState::Archived)]
    );
    assert_eq!(state.profiles, vec![("s1".into(), true)]);
    assert!(
        subscribers::get_subscriber(&w.db, TENANT, "s1")
            .await
            .unwrap()
            .is_none()
    );
    w.shutdown().await;
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn provision_suspend_reactivate_deprovision_postgres(pool: sqlx::PgPool) {
    round_trip(World::postgres(pool, Options::default()).await).await;
}

#[tokio::test]
async fn provision_suspend_reactivate_deprovision_sqlite() {
    round_trip(World::sqlite(Options::default()).await).await;
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn a_second_provisioning_of_a_live_subscriber_changes_nothing(pool: sqlx::PgPool) {
    let w = World::postgres(pool, Options::default()).await;
    let run = w
        .run("provision_subscriber", provision_input("dup", false))
        .await;
    assert_eq!(run.state, RunState::Completed);
    let before = w.state().await;
    let again = w
        .run("provision_subscriber", provision_input("dup", false))
        .await;
    assert_eq!(again.state, RunState::Compensated);
    assert!(
        again
            .error
            .as_deref()
            .unwrap_or("")
            .contains("subscriber_exists"),
        "{:?}",
        again.error
    );
    assert_eq!(w.state().await, before);
    w.shutdown().await;
}

/// 500 provisionings with 20 % of simulator (and RADIUS) calls failing.
#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn five_hundred_runs_with_random_failures(pool: sqlx::PgPool) {
    let w = World::postgres(
        pool,
        Options {
            max_attempts: 2,
            v4_cidr: "10.30.0.0/22".into(),
            max_in_flight: 128,
            ..Options::default()
        },
    )
    .await;
    w.sims().set_all_faults(Fault::rate(0.2));
    *w.radius.failure_rate.lock().unwrap() = 0.2;
    let mut ids = Vec::new();
    for i in 0..500 {
        let input = provision_input(&format!("r{i:03}"), i % 2 == 0);
        ids.push((i, w.start("provision_subscriber", input).await));
    }
    let mut completed = Vec::new();
    let mut compensated = Vec::new();
    for (i, id) in ids {
        let run = w.finish(id, Duration::from_secs(240)).await;
        let sub = format!("r{i:03}");
        match run.state {
            RunState::Completed => completed.push((sub, i % 2 == 0)),
            RunState::Compensated => compensated.push(sub),
            other => panic!("run {id} ended {other}: {:?}", run.error),
        }
    }
    assert!(
        !completed.is_empty() && !compensated.is_empty(),
        "{} completed, {} compensated",
        completed.len(),
        compensated.len()
    );
    w.sims().set_all_faults(Fault::default());

    let state = w.state().await;
    let snap = w.sims().snapshot();
    let accounts = w.radius.accounts();
    for (sub, ipv6) in &completed {
        let records = lifecycle::for_subscriber(&w.db, TENANT, sub).await.unwrap();
        let active: BTreeSet<Family> = records
            .iter()
            .filter(|r| r.state == AddressState::Active)
            .map(|r| r.family)
            .collect();
        let want = if *ipv6 {
            BTreeSet::from([Family::Ipv4, Family::Ipv6])
        } else {
            BTreeSet::from([Family::Ipv4])
        };
        assert_eq!(active, want, "{sub}: {records:?}");
        assert_eq!(records.len(), want.len(), "{sub}: one record per family");
        assert!(
            snap.tenant(TENANT).services.contains_key(sub),
            "{sub} has its billing service"
        );
        assert!(snap.tenant(TENANT).onus.contains_key(&format!("ONU-{sub}")));
        assert!(snap.tenant(TENANT).cpes.contains_key(&format!("CPE-{sub}")));
        assert!(accounts.contains_key(sub), "{sub} has its RADIUS account");
    }
    for sub in &compensated {
        let records = lifecycle::for_subscriber(&w.db, TENANT, sub).await.unwrap();
        assert!(
            records.iter().all(|r| !r.state.holds_address()),
            "{sub}: {records:?}"
        );
        assert!(
            !snap.tenant(TENANT).services.contains_key(sub),
            "{sub}: billing"
        );
        assert!(
            !snap.tenant(TENANT).onus.contains_key(&format!("ONU-{sub}")),
            "{sub}: ONU"
        );
        assert!(
            !snap.tenant(TENANT).cpes.contains_key(&format!("CPE-{sub}")),
            "{sub}: CPE"
        );
        assert!(!accounts.contains_key(sub), "{sub}: RADIUS");
        assert!(
            subscribers::get_subscriber(&w.db, TENANT, sub)
                .await
                .unwrap()
                .is_none()
        );
    }
    assert_eq!(snap.tenant(TENANT).services.len(), completed.len());
    // Pool use equals the lifecycle records, and no address is held twice.
    let held = lifecycle::list(&w.db, TENANT, &HELD).await.unwrap();
    let v6_count = completed.iter().filter(|(_, v6)| *v6).count() as i64;
    assert_eq!(
        state.usage,
        vec![
            (V4_POOL.into(), completed.len() as i64),
            (V6_POOL.into(), v6_count)
        ]
    );
    assert_eq!(held.len() as i64, completed.len() as i64 + v6_count);
    let distinct: BTreeSet<&str> = held.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(distinct.len(), held.len(), "an address is held twice");
    w.shutdown().await;
}

/// A provisioning whose device step gives up with an unknown outcome (every
/// answer a 5xx) is compensated; the undo must leave the device that
/// another subscriber's run activated or configured as it is.
async fn an_uncertain_device_step_is_undone_without_touching_another_subscriber(w: World) {
    let base = w
        .run("provision_subscriber", provision_input("base", false))
        .await;
    assert_eq!(base.state, RunState::Completed, "{:?}", base.error);
    let before = w.state().await.sim;
    for (op, field) in [
        ("onu.activate", "onu_serial"),
        ("cpe.configure", "cpe_serial"),
    ] {
        let mut input = provision_input(&format!("thief-{field}"), false);
        input[field] = json!(format!("{}-base", &field[..3].to_uppercase()));
        w.sims().set_fault(op, Fault::always());
        let run = w.run("provision_subscriber", input).await;
        w.sims().set_fault(op, Fault::default());
        assert_eq!(run.state, RunState::Compensated, "{op}: {:?}", run.error);
        assert!(
            run.error.as_deref().unwrap_or("").contains("uncertain"),
            "{op}: {:?}",
            run.error
        );
        assert_eq!(w.state().await.sim, before, "{op}: base's devices changed");
    }
    w.shutdown().await;
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn an_uncertain_device_step_is_undone_without_touching_another_subscriber_postgres(
    pool: sqlx::PgPool,
) {
    an_uncertain_device_step_is_undone_without_touching_another_subscriber(
        World::postgres(pool, Options::default()).await,
    )
    .await;
}

#[tokio::test]
async fn an_uncertain_device_step_is_undone_without_touching_another_subscriber_sqlite() {
    an_uncertain_device_step_is_undone_without_touching_another_subscriber(
        World::sqlite(Options::default()).await,
    )
    .await;
}

/// Two tenants run the same subscriber id with the same ONU and CPE
/// serials through provision, suspend, reactivate, deprovision and a
/// provisioning that fails and is compensated; no run of one tenant changes
/// any simulator record of the other.
async fn two_tenants_share_nothing_in_the_external_systems(w: World) {
    use RunState::{Compensated, Completed};
    let sub = json!({"subscriber_id": "alice"});
    let plan = [
        (TENANT, "provision_subscriber", Completed),
        (OTHER_TENANT, "provision_subscriber", Completed),
        (TENANT, "suspend_subscriber", Completed),
        (OTHER_TENANT, "suspend_subscriber", Completed),
        (OTHER_TENANT, "reactivate_subscriber", Completed),
        (TENANT, "reactivate_subscriber", Completed),
        (OTHER_TENANT, "deprovision_subscriber", Completed),
        // Billing refuses: the tenant's own alice still has her (suspended)
        // service. The ONU and CPE steps before it are undone.
        (OTHER_TENANT, "provision_subscriber", Compensated),
        (TENANT, "deprovision_subscriber", Completed),
        (TENANT, "provision_subscriber", Compensated),
    ];
    for (i, (actor, workflow, want)) in plan.into_iter().enumerate() {
        let other = if actor == TENANT {
            OTHER_TENANT
        } else {
            TENANT
        };
        let input = if workflow == "provision_subscriber" {
            provision_input("alice", true)
        } else {
            sub.clone()
        };
        if want == Compensated {
            // And the CPE's first answer is lost to a reset after it was
            // applied: the retry gets it, the undo removes it.
            w.sims().set_fault(
                "cpe.configure",
                Fault {
                    applied_then_reset_rate: 1.0,
                    ..Fault::default()
                },
            );
        }
        let before = w.sims().snapshot().tenant(other).clone();
        let run = w.run_as(actor, workflow, input).await;
        w.sims().set_fault("cpe.configure", Fault::default());
        assert_eq!(run.state, want, "{i}: {actor} {workflow}: {:?}", run.error);
        let snap = w.sims().snapshot();
        assert_eq!(
            snap.tenant(other),
            &before,
            "{i}: {actor} {workflow} changed {other}'s records"
        );
        let own = snap.tenant(actor);
        match (workflow, want) {
            ("provision_subscriber", Completed) => {
                let onu = &own.onus["ONU-alice"];
                assert_eq!(onu.activation.subscriber_id, "alice");
                assert_eq!(
                    onu.activated_by.as_deref(),
                    Some(format!("{}:activate_onu", run.id).as_str())
                );
                assert!(own.cpes.contains_key("CPE-alice"));
                assert!(own.services.contains_key("alice"));
            }
            ("provision_subscriber", Compensated) | ("deprovision_subscriber", _) => {
                assert!(own.onus.is_empty() && own.cpes.is_empty(), "{i}: {own:?}");
                assert_eq!(own.services["alice"].state.to_string(), "SUSPENDED");
            }
            _ => {}
        }
    }
    let snap = w.sims().snapshot();
    assert!(snap.applied_then_reset["cpe.configure"] >= 2);
    // Both tenants' services were made by their own creates.
    assert_ne!(
        snap.tenant(TENANT).services["alice"].service_id,
        snap.tenant(OTHER_TENANT).services["alice"].service_id
    );
    w.shutdown().await;
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn two_tenants_share_nothing_in_the_external_systems_postgres(pool: sqlx::PgPool) {
    two_tenants_share_nothing_in_the_external_systems(
        World::postgres(pool, Options::default()).await,
    )
    .await;
}

#[tokio::test]
async fn two_tenants_share_nothing_in_the_external_systems_sqlite() {
    two_tenants_share_nothing_in_the_external_systems(World::sqlite(Options::default()).await)
        .await;
}
