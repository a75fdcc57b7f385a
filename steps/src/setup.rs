//! Domain configuration and start-up: pools into the database, adapters
//! built from their endpoints, and the simulators started for any system
//! without one (the `sagaflow dev` default).

use std::sync::Arc;

use sagaflow_engine::clock::Clock;
use serde::{Deserialize, Serialize};

use crate::adapters::{AdapterError, EndpointConfig};
use crate::billing::HttpBilling;
use crate::cpe::HttpCpe;
use crate::db::DomainDb;
use crate::deps::DomainDeps;
use crate::ipam::{IpamBackends, IpamConfig, IpamError, Pool, PoolConfig, repo as ipam};
use crate::maintenance::MaintenanceConfig;
use crate::notify::{NotifyConfig, NotifyError};
use crate::onu::HttpOnu;
use crate::sim::{SimConfig, SimHandle, Simulators};

/// What the ISP domain is configured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DomainConfig {
    /// Address pools, created (or their thresholds updated) at start.
    pub pools: Vec<PoolConfig>,
    /// Which IPAM backend each tenant uses, and NetBox.
    pub ipam: IpamConfig,
    /// The ONU/OLT gateway; the simulator when unset.
    pub onu: Option<EndpointConfig>,
    /// The TR-069 ACS; the simulator when unset.
    pub cpe: Option<EndpointConfig>,
    /// Billing; the simulator when unset.
    pub billing: Option<EndpointConfig>,
    /// How the simulators run, when any system uses them.
    pub simulators: SimConfig,
    /// Ages, thresholds and batch size of the maintenance jobs.
    pub maintenance: MaintenanceConfig,
    /// Where notifications go: a webhook, or the log.
    pub notify: NotifyConfig,
    /// How often `onu.await_online` asks the OLT whether the ONU ranged.
    pub onu_online_poll_ms: u64,
}

impl Default for DomainConfig {
    fn default() -> Self {
        Self {
            pools: Vec::new(),
            ipam: IpamConfig::default(),
            onu: None,
            cpe: None,
            billing: None,
            simulators: SimConfig::default(),
            maintenance: MaintenanceConfig::default(),
            notify: NotifyConfig::default(),
            onu_online_poll_ms: 1000,
        }
    }
}

impl DomainConfig {
    /// `sagaflow dev`'s defaults: the simulators, an IPv4 pool
    /// `dev-v4` (100.64.0.0/16) and an IPv6 pool `dev-v6` (2001:db8:1000::/40
    /// delegating /56s), both for tenant `tenant`.
    pub fn dev(tenant: &str) -> Self {
        let parse = |s: &str| s.parse().unwrap_or(ipnet::IpNet::V4(Default::default()));
        Self {
            pools: vec![
                PoolConfig::new(tenant, "dev-v4", parse("100.64.0.0/16")),
                PoolConfig::new(tenant, "dev-v6", parse("2001:db8:1000::/40")),
            ],
            ..Self::default()
        }
    }
}

/// Why the domain could not start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("address pools: {0}")]
    Pools(#[from] IpamError),
    #[error(transparent)]
    Adapter(#[from] AdapterError),
    #[error("starting the simulators: {0}")]
    Simulators(#[from] std::io::Error),
    #[error("{0}")]
    Maintenance(String),
    #[error(transparent)]
    Notify(#[from] NotifyError),
}

/// The domain, started: its handler dependencies, its pools, and the
/// simulators if it runs them.
pub struct DomainRuntime {
    pub deps: DomainDeps,
    pub pools: Vec<Pool>,
    pub simulators: Option<SimHandle>,
}

impl std::fmt::Debug for DomainRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DomainRuntime")
            .field("pools", &self.pools.len())
            .field("simulators", &self.simulators)
            .finish()
    }
}

impl DomainRuntime {
    /// Ensures the pools and builds the adapters, starting the simulators
    /// for systems without an endpoint.
    pub async fn start(
        db: &DomainDb,
        cfg: &DomainConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, SetupError> {
        cfg.maintenance
            .validate()
            .map_err(SetupError::Maintenance)?;
        let notifier = cfg.notify.notifier()?;
        let backends = IpamBackends::new(&cfg.ipam)?;
        // Pools without their own thresholds take the maintenance defaults.
        let pool_configs: Vec<PoolConfig> = cfg
            .pools
            .iter()
            .cloned()
            .map(|mut p| {
                p.warning_percent
                    .get_or_insert(cfg.maintenance.warning_percent);
                p.critical_percent
                    .get_or_insert(cfg.maintenance.critical_percent);
                p
            })
            .collect();
        let pools = ipam::ensure_pools(db, &pool_configs, clock.now()).await?;
        let needs_sim = cfg.onu.is_none() || cfg.cpe.is_none() || cfg.billing.is_none();
        let simulators = if needs_sim {
            Some(Simulators::start(cfg.simulators.clone()).await?)
        } else {
            None
        };
        let sim_endpoints = simulators.as_ref().map(SimHandle::endpoints);
        let pick = |own: &Option<EndpointConfig>, i: usize| -> EndpointConfig {
            match (own, &sim_endpoints) {
                (Some(e), _) => e.clone(),
                (None, Some(s)) => [&s.0, &s.1, &s.2][i].clone(),
                (None, None) => EndpointConfig::new(""),
            }
        };
        let deps = DomainDeps {
            onu: Arc::new(HttpOnu::new(&pick(&cfg.onu, 0))?),
            cpe: Arc::new(HttpCpe::new(&pick(&cfg.cpe, 1))?),
            billing: Arc::new(HttpBilling::new(&pick(&cfg.billing, 2))?),
            clock,
            maintenance: cfg.maintenance.clone(),
            notifier,
            ipam: Arc::new(backends),
            onu_online_poll: std::time::Duration::from_millis(cfg.onu_online_poll_ms),
        };
        Ok(Self {
            deps,
            pools,
            simulators,
        })
    }

    /// Stops the simulators, if running.
    pub async fn shutdown(self) {
        if let Some(s) = self.simulators {
            s.shutdown().await;
        }
    }
}
