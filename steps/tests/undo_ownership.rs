//! The undo contract of the ONU and CPE adapters against the simulators:
//! after a forward call whose outcome is unknown (timeout, 5xx, reset), the
//! undo removes only what that call made, never a device another run or
//! subscriber activated or configured.
#![allow(clippy::unwrap_used)]

mod support;

use sagaflow_engine::handler::StepError;
use sagaflow_steps::adapters::{AdapterError, Owner};
use sagaflow_steps::cpe::{CpeAdapter, CpeConfig, HttpCpe};
use sagaflow_steps::onu::{HttpOnu, OnuAdapter};
use sagaflow_steps::sim::{Fault, SimHandle};
use support::sims::{T, activation, sims};

/// ONU or CPE, driven the same way: the forward call and its undo.
#[derive(Clone, Copy, Debug)]
enum Device {
    Onu,
    Cpe,
}

impl Device {
    fn op(self) -> &'static str {
        match self {
            Device::Onu => "onu.activate",
            Device::Cpe => "cpe.configure",
        }
    }

    async fn forward(self, s: &SimHandle, key: &str, sub: &str) -> Result<(), AdapterError> {
        let mut ep = match self {
            Device::Onu => s.endpoints().0,
            Device::Cpe => s.endpoints().1,
        };
        ep.timeout_ms = 200;
        match self {
            Device::Onu => HttpOnu::new(&ep)
                .unwrap()
                .activate(T, key, "DEV1", &activation(sub))
                .await
                .map(|_| ()),
            Device::Cpe => {
                let cfg = CpeConfig {
                    subscriber_id: sub.into(),
                    pppoe_username: format!("{sub}-{key}"),
                    plan: "fiber".into(),
                    ipv4_address: None,
                    ipv6_prefix: None,
                    inform: None,
                };
                HttpCpe::new(&ep)
                    .unwrap()
                    .configure(T, key, "DEV1", &cfg)
                    .await
            }
        }
    }

    /// The undo of the forward call made with `forward_key`.
    async fn undo(self, s: &SimHandle, forward_key: &str) -> bool {
        let key = format!("{forward_key}:compensate");
        let only = Owner::Request(forward_key);
        match self {
            Device::Onu => HttpOnu::new(&s.endpoints().0)
                .unwrap()
                .deactivate(T, &key, "DEV1", only)
                .await
                .unwrap(),
            Device::Cpe => HttpCpe::new(&s.endpoints().1)
                .unwrap()
                .unconfigure(T, &key, "DEV1", only)
                .await
                .unwrap(),
        }
    }

    /// (subscriber, made by) of the stored device.
    fn stored(self, s: &SimHandle) -> Option<(String, Option<String>)> {
        let snap = s.snapshot();
        match self {
            Device::Onu => snap
                .tenant(T)
                .onus
                .get("DEV1")
                .map(|o| (o.activation.subscriber_id.clone(), o.activated_by.clone())),
            Device::Cpe => snap
                .tenant(T)
                .cpes
                .get("DEV1")
                .map(|c| (c.config.subscriber_id.clone(), c.configured_by.clone())),
        }
    }
}

/// Run A made the device for subscriber `owner`; run B's forward call for
/// `sub` meets `fault` and its outcome is unknown; B's undo must leave A's
/// device as it is, and A's own undo still removes it.
async fn undo_after_unknown_outcome(device: Device, sub: &str, fault: Fault) {
    let s = sims().await;
    device.forward(&s, "A:step", "owner").await.unwrap();
    let before = device.stored(&s);
    assert_eq!(
        before,
        Some(("owner".into(), Some("A:step".into()))),
        "{device:?}"
    );
    s.set_fault(device.op(), fault);
    let e = device.forward(&s, "B:step", sub).await.unwrap_err();
    let step = StepError::from(e.clone());
    assert!(
        step.outcome_unknown(),
        "{device:?} {fault:?}: the forward outcome must be unknown: {e}"
    );
    s.set_fault(device.op(), Fault::default());
    assert!(!device.undo(&s, "B:step").await, "{device:?} {fault:?}");
    assert_eq!(
        device.stored(&s),
        before,
        "{device:?} {fault:?}: B's undo changed A's device"
    );
    assert!(device.undo(&s, "A:step").await);
    assert_eq!(device.stored(&s), None);
    let changed: Vec<_> = s
        .snapshot()
        .effects
        .into_iter()
        .filter(|e| e.changed)
        .collect();
    assert!(
        changed
            .iter()
            .all(|e| e.key.as_deref() != Some("B:step:compensate")),
        "{changed:?}"
    );
    s.shutdown().await;
}

/// The faults that leave the forward outcome unknown, and whether the
/// request reaches its effect (then only the same subscriber can get an
/// answer other than a conflict).
fn unknown_outcomes() -> Vec<(Fault, bool)> {
    vec![
        // Held past the client's 200 ms timeout, applied.
        (
            Fault {
                stall_rate: 1.0,
                stall_ms: 600,
                ..Fault::default()
            },
            true,
        ),
        // The client gives up before the system even looks at it.
        (
            Fault {
                latency_ms: 600,
                ..Fault::default()
            },
            false,
        ),
        (
            Fault {
                lost_ack_rate: 1.0,
                ..Fault::default()
            },
            true,
        ),
        (
            Fault {
                applied_then_500_rate: 1.0,
                ..Fault::default()
            },
            true,
        ),
        (
            Fault {
                applied_then_reset_rate: 1.0,
                ..Fault::default()
            },
            true,
        ),
        (Fault::always(), false),
    ]
}

#[tokio::test]
async fn an_undo_after_an_unknown_outcome_leaves_another_runs_device_alone() {
    for device in [Device::Onu, Device::Cpe] {
        for (fault, _) in unknown_outcomes() {
            // Another run of the same subscriber made it.
            undo_after_unknown_outcome(device, "owner", fault).await;
        }
    }
}

#[tokio::test]
async fn an_undo_after_an_unknown_outcome_leaves_another_subscribers_device_alone() {
    for device in [Device::Onu, Device::Cpe] {
        for (fault, _) in unknown_outcomes()
            .into_iter()
            .filter(|(_, applied)| !applied)
        {
            undo_after_unknown_outcome(device, "intruder", fault).await;
        }
    }
}

#[tokio::test]
async fn a_device_of_another_subscriber_is_a_conflict_and_a_forward_removal_is_per_subscriber() {
    let s = sims().await;
    for device in [Device::Onu, Device::Cpe] {
        device.forward(&s, "A:step", "owner").await.unwrap();
        let e = device.forward(&s, "B:step", "intruder").await.unwrap_err();
        assert!(
            matches!(e, AdapterError::Conflict { .. }),
            "{device:?}: {e}"
        );
    }
    let onu = HttpOnu::new(&s.endpoints().0).unwrap();
    let cpe = HttpCpe::new(&s.endpoints().1).unwrap();
    let other = Owner::Subscriber("intruder");
    assert!(!onu.deactivate(T, "d1", "DEV1", other).await.unwrap());
    assert!(!cpe.unconfigure(T, "d1", "DEV1", other).await.unwrap());
    assert_eq!(Device::Onu.stored(&s).unwrap().0, "owner");
    assert_eq!(Device::Cpe.stored(&s).unwrap().0, "owner");
    let own = Owner::Subscriber("owner");
    assert!(onu.deactivate(T, "d2", "DEV1", own).await.unwrap());
    assert!(cpe.unconfigure(T, "d2", "DEV1", own).await.unwrap());
    assert!(Device::Onu.stored(&s).is_none() && Device::Cpe.stored(&s).is_none());
    s.shutdown().await;
}
