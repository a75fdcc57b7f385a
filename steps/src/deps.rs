//! What the ISP domain's handlers need: [`DomainDeps`] (the adapters of the
//! external systems, the clock, the maintenance configuration and the
//! notifier) and [`Isp`], the database and those dependencies shared by
//! every handler of the subscriber, IPAM, lifecycle, ONU, CPE and billing
//! domains.

use std::sync::Arc;

use sagaflow_engine::clock::Clock;

use crate::billing::BillingAdapter;
use crate::cpe::CpeAdapter;
use crate::db::DomainDb;
use crate::ipam::{IpamBackend, IpamBackends};
use crate::maintenance::MaintenanceConfig;
use crate::notify::Notifier;
use crate::onu::OnuAdapter;

/// The adapters and clock the ISP handlers use.
#[derive(Clone)]
pub struct DomainDeps {
    pub onu: Arc<dyn OnuAdapter>,
    pub cpe: Arc<dyn CpeAdapter>,
    pub billing: Arc<dyn BillingAdapter>,
    pub clock: Arc<dyn Clock>,
    /// Ages, thresholds and batch size of the maintenance jobs.
    pub maintenance: MaintenanceConfig,
    /// Where the maintenance jobs send notifications.
    pub notifier: Arc<dyn Notifier>,
    /// Each tenant's IPAM backend.
    pub ipam: Arc<IpamBackends>,
    /// How long `onu.await_online` waits before it looks again.
    pub onu_online_poll: std::time::Duration,
}

impl std::fmt::Debug for DomainDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DomainDeps")
    }
}

/// The state every ISP handler runs with; each domain's `handlers.rs` adds
/// its step handlers as methods.
pub(crate) struct Isp {
    pub(crate) db: DomainDb,
    pub(crate) deps: DomainDeps,
}

impl Isp {
    pub(crate) fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.deps.clock.now()
    }

    /// `tenant`'s IPAM backend.
    pub(crate) fn ipam(&self, tenant: &str) -> &Arc<dyn IpamBackend> {
        self.deps.ipam.for_tenant(tenant)
    }
}
