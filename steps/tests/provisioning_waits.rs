//! Provisioning's waits end to end, on the shipped workflow: the ONU
//! ranges late (the run waits, then completes) or never (the wait times
//! out and every effect is undone); the ACS simulator signals the CPE's
//! inform (the run completes) or the CPE stays silent (the wait times out
//! and every effect is undone).
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use sagaflow_engine::state::{RunState, StepState};
use sagaflow_steps::sim::Devices;
use serde_json::Value;
use support::{Options, World, poll, provision_input};

/// A wait's timeout short enough for a test.
const WAIT_TIMEOUT_MS: u64 = 1_500;

/// Quick ranging and informs, and waits that time out after
/// [`WAIT_TIMEOUT_MS`].
fn short_waits() -> Options {
    Options {
        devices: w_devices(),
        wait_timeout_ms: Some(WAIT_TIMEOUT_MS),
        ..Options::default()
    }
}

fn step<'a>(
    run: &'a sagaflow_engine::store::RunRecord,
    name: &str,
) -> &'a sagaflow_engine::store::StepRecord {
    run.steps.iter().find(|s| s.name == name).unwrap()
}

/// A provisioned subscriber first, so that "as before" is not "empty".
async fn baseline(w: &World) -> support::SystemState {
    let base = w
        .run("provision_subscriber", provision_input("base", true))
        .await;
    assert_eq!(base.state, RunState::Completed, "{:?}", base.error);
    w.state().await
}

async fn an_onu_that_ranges_late_completes(w: World) {
    // Nothing ranges until the test says so.
    w.sims().set_devices(Devices {
        onu_never_range: vec!["*".into()],
        ..w_devices()
    });
    let id = w
        .start("provision_subscriber", provision_input("late", false))
        .await;
    poll("the ONU wait", Duration::from_secs(20), || async {
        let r = w.get(id).await;
        (step(&r, "wait_onu_online").state == StepState::Waiting).then_some(())
    })
    .await;
    // Still waiting, not failing, while the ONU is offline.
    let r = w.get(id).await;
    assert_eq!(r.state, RunState::Running);
    assert_eq!(step(&r, "configure_cpe").state, StepState::Pending);
    w.sims().set_devices(w_devices());
    let run = w.finish(id, Duration::from_secs(30)).await;
    assert_eq!(run.state, RunState::Completed, "{:?}", run.error);
    let snap = w.sims().snapshot();
    assert!(snap.tenant(support::TENANT).onus.contains_key("ONU-late"));
    w.shutdown().await;
}

fn w_devices() -> Devices {
    Devices {
        onu_ranging_ms: 50,
        cpe_inform_delay_ms: 10,
        ..Devices::default()
    }
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn an_onu_that_ranges_late_completes_postgres(pool: sqlx::PgPool) {
    an_onu_that_ranges_late_completes(World::postgres(pool, Options::default()).await).await;
}

#[tokio::test]
async fn an_onu_that_ranges_late_completes_sqlite() {
    an_onu_that_ranges_late_completes(World::sqlite(Options::default()).await).await;
}

/// Provisions `sub` with the devices `devices` and checks that the wait
/// `wait` timed out, the steps before it were compensated, `next` was
/// never reached, and everything is as it was before; returns the run.
async fn times_out_and_is_undone(
    w: &World,
    sub: &str,
    devices: Devices,
    (wait, next): (&str, &str),
) -> sagaflow_engine::store::RunRecord {
    let before = baseline(w).await;
    w.sims().set_devices(devices);
    let run = w
        .run("provision_subscriber", provision_input(sub, true))
        .await;
    assert_eq!(run.state, RunState::Compensated, "{:?}", run.error);
    let waited = step(&run, wait);
    assert_eq!(waited.state, StepState::Failed);
    let error = waited.last_error.as_deref().unwrap_or("");
    assert!(error.contains("wait_timeout"), "{error}");
    for s in ["create_radius_account", "activate_onu"] {
        assert_eq!(step(&run, s).state, StepState::Compensated, "{s}");
    }
    assert_eq!(step(&run, next).state, StepState::Pending);
    // Every effect undone: the devices, the addresses, the RADIUS account
    // and the records; what was there before is untouched.
    assert_eq!(w.state().await, before);
    run
}

async fn an_onu_that_never_ranges_is_undone(w: World) {
    let devices = Devices {
        onu_never_range: vec!["ONU-dark".into()],
        ..w_devices()
    };
    times_out_and_is_undone(&w, "dark", devices, ("wait_onu_online", "configure_cpe")).await;
    let snap = w.sims().snapshot();
    assert!(!snap.tenant(support::TENANT).onus.contains_key("ONU-dark"));
    assert!(
        snap.effects
            .iter()
            .any(|e| e.operation == "onu.deactivate" && e.changed),
        "{:?}",
        snap.effects
    );
    w.shutdown().await;
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn an_onu_that_never_ranges_is_undone_postgres(pool: sqlx::PgPool) {
    let o = short_waits();
    an_onu_that_never_ranges_is_undone(World::postgres(pool, o).await).await;
}

#[tokio::test]
async fn an_onu_that_never_ranges_is_undone_sqlite() {
    let o = short_waits();
    an_onu_that_never_ranges_is_undone(World::sqlite(o).await).await;
}

async fn the_cpe_inform_completes_the_run(w: World) {
    let run = w
        .run("provision_subscriber", provision_input("plugged", false))
        .await;
    assert_eq!(run.state, RunState::Completed, "{:?}", run.error);
    assert_eq!(step(&run, "cpe_inform").state, StepState::Succeeded);
    // The ACS simulator signalled the inform to this run …
    let snap = w.sims().snapshot();
    let informs: Vec<_> = snap
        .informs
        .iter()
        .filter(|i| i.run_id == run.id.to_string())
        .collect();
    assert_eq!(informs.len(), 1, "{:?}", snap.informs);
    assert_eq!(informs[0].signal, "cpe_inform");
    // … and its payload is in the run's context.
    assert_eq!(
        run.context.pointer("/cpe_inform/serial"),
        Some(&Value::from("CPE-plugged"))
    );
    w.shutdown().await;
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn the_cpe_inform_completes_the_run_postgres(pool: sqlx::PgPool) {
    the_cpe_inform_completes_the_run(World::postgres(pool, Options::default()).await).await;
}

#[tokio::test]
async fn the_cpe_inform_completes_the_run_sqlite() {
    the_cpe_inform_completes_the_run(World::sqlite(Options::default()).await).await;
}

async fn a_silent_cpe_is_undone(w: World) {
    let devices = Devices {
        cpe_silent: vec!["CPE-silent".into()],
        ..w_devices()
    };
    let run = times_out_and_is_undone(
        &w,
        "silent",
        devices,
        ("cpe_inform", "create_billing_service"),
    )
    .await;
    assert_eq!(step(&run, "configure_cpe").state, StepState::Compensated);
    // Nothing of the silent CPE left at the ACS, and no inform sent.
    let snap = w.sims().snapshot();
    assert!(!snap.tenant(support::TENANT).cpes.contains_key("CPE-silent"));
    assert!(
        snap.informs.iter().all(|i| i.run_id != run.id.to_string()),
        "{:?}",
        snap.informs
    );
    w.shutdown().await;
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn a_silent_cpe_is_undone_postgres(pool: sqlx::PgPool) {
    let o = short_waits();
    a_silent_cpe_is_undone(World::postgres(pool, o).await).await;
}

#[tokio::test]
async fn a_silent_cpe_is_undone_sqlite() {
    let o = short_waits();
    a_silent_cpe_is_undone(World::sqlite(o).await).await;
}
