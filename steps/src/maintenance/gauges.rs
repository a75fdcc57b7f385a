//! The domain gauges: address records by lifecycle state and pool use,
//! read from the database at each gauge refresh of every replica (so every
//! replica exports the same values, whichever ran a maintenance job last),
//! labelled with the tenant.

use metrics::gauge;

use super::Result;
use crate::db::DomainDb;
use crate::ipam::repo as ipam;
use crate::lifecycle::repo as lifecycle;
use crate::lifecycle::{AddressState, Family};

/// Sets `sagaflow_address_records` (every family and state of each tenant
/// that has records, zeros included) and the pool gauges of every pool;
/// `horizon_days` is `domain.maintenance.exhaustion_horizon_days`.
pub async fn refresh(db: &DomainDb, horizon_days: u32) -> Result<()> {
    let counts = lifecycle::counts_by_tenant(db).await?;
    let mut tenants: Vec<&str> = counts.iter().map(|(t, _)| t.as_str()).collect();
    tenants.dedup();
    for tenant in tenants {
        for family in Family::ALL {
            for state in AddressState::ALL {
                let n = counts
                    .iter()
                    .find(|(t, c)| t == tenant && c.family == family && c.state == state)
                    .map_or(0, |(_, c)| c.count);
                gauge!(
                    "sagaflow_address_records",
                    "tenant" => tenant.to_owned(),
                    "family" => family.as_str(),
                    "state" => state.as_str()
                )
                .set(n as f64);
            }
        }
    }
    for u in ipam::utilization(db, None).await? {
        let (t, p) = (u.pool.tenant_id.clone(), u.pool.name.clone());
        let set = |name: &'static str, v: f64| {
            gauge!(name, "tenant" => t.clone(), "pool" => p.clone()).set(v);
        };
        set("sagaflow_pool_capacity", u.capacity() as f64);
        set("sagaflow_pool_in_use", u.in_use as f64);
        set("sagaflow_pool_utilization_ratio", u.percent() / 100.0);
        // The pool's own thresholds, for alerts that honour them.
        set(
            "sagaflow_pool_warning_ratio",
            f64::from(u.pool.warning_percent) / 100.0,
        );
        set(
            "sagaflow_pool_critical_ratio",
            f64::from(u.pool.critical_percent) / 100.0,
        );
        set(
            "sagaflow_pool_exhaustion_horizon_days",
            f64::from(horizon_days),
        );
    }
    Ok(())
}
