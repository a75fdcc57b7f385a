//! The ISP domain's part of the server: address pools, the ONU/OLT, CPE and
//! billing endpoints (simulators where none is set), started when the store
//! has a domain database.

use std::sync::Arc;

use anyhow::Context;
use sagaflow_engine::clock::SystemClock;

use crate::app;
use crate::config::Config;

/// Starts the domain runtime and hands its dependencies to `deps`; `None`
/// when the store has no domain database. `dev` adds the dev tenant's pools
/// when none are configured.
pub(super) async fn start(
    config: &Config,
    dev: bool,
    deps: &mut sagaflow_steps::Deps,
) -> anyhow::Result<Option<sagaflow_steps::DomainRuntime>> {
    Ok(match deps.domain_db() {
        Some(db) => {
            let mut cfg = config.domain.clone();
            if dev && cfg.pools.is_empty() {
                cfg.pools = sagaflow_steps::DomainConfig::dev(app::DEV_TENANT).pools;
            }
            for (system, endpoint) in [
                ("onu", &cfg.onu),
                ("cpe", &cfg.cpe),
                ("billing", &cfg.billing),
            ] {
                if endpoint.is_none() && !dev {
                    tracing::warn!(
                        system,
                        "no endpoint configured; using the built-in simulator"
                    );
                }
            }
            let rt = sagaflow_steps::DomainRuntime::start(&db, &cfg, Arc::new(SystemClock))
                .await
                .context("starting the ISP domain (domain.* configuration)")?;
            deps.domain = Some(rt.deps.clone());
            Some(rt)
        }
        None => None,
    })
}
