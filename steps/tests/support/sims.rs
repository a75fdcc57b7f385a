//! The simulators on their own, for the adapter tests.

use sagaflow_steps::onu::OnuActivation;
use sagaflow_steps::sim::{SimConfig, SimHandle, Simulators};

/// The tenant most adapter tests act for.
pub const T: &str = "t1";

/// Simulators without faults on a free port.
pub async fn sims() -> SimHandle {
    Simulators::start(SimConfig::default()).await.unwrap()
}

pub fn activation(sub: &str) -> OnuActivation {
    OnuActivation {
        subscriber_id: sub.into(),
        plan: "fiber".into(),
        download_kbps: 1000,
        upload_kbps: 100,
        service_vlan: Some(7),
    }
}
