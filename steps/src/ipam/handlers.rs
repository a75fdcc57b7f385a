//! IPAM's step handlers: `ipam.allocate` (an IPv4 address and, when asked,
//! an IPv6 prefix, each found again by its allocation key),
//! `ipam.release` (its undo) and `ipam.release_subscriber`, and how IPAM's
//! errors reach the engine.

use sagaflow_engine::handler::{StepError, StepOutput, StepRequest};
use serde_json::json;

use super::IpamError;
use super::repo as ipam;
use crate::context::{
    StepResult, allocation_key, flag, opt_i64, opt_str, output, run, subscriber_id,
};
use crate::db::database_error;
use crate::deps::Isp;
use crate::lifecycle::Family;
use crate::lifecycle::repo::{self as lifecycle, AddressRecord};

/// The delegated prefix length when the input names none.
const DEFAULT_PD_SIZE: u8 = 56;

impl Isp {
    async fn allocate_one(
        &self,
        req: &StepRequest,
        family: Family,
    ) -> Result<AddressRecord, IpamError> {
        let tenant = req.tenant_id.as_str();
        let (pool_name, pd) = match family {
            Family::Ipv4 => (opt_str(req, "/ipv4_pool"), None),
            Family::Ipv6 => {
                let pd = opt_i64(req, "/ipv6_pd_size")
                    .and_then(|v| u8::try_from(v).ok())
                    .unwrap_or(DEFAULT_PD_SIZE);
                (opt_str(req, "/ipv6_pool"), Some(pd))
            }
        };
        let pools = ipam::choose_pools(&self.db, tenant, family, pool_name.as_deref(), pd).await?;
        let key = allocation_key(req, family);
        let sub = subscriber_id(req).unwrap_or_default();
        let address = match family {
            Family::Ipv4 => opt_str(req, "/requested_ipv4"),
            Family::Ipv6 => opt_str(req, "/requested_ipv6_prefix"),
        };
        // Spillover: the first pool with room, in choose_pools' order. A
        // requested address is taken from the pool that holds it.
        let mut last = None;
        for pool in &pools {
            if let Some(a) = &address
                && ipam::ordinal_in(pool, a).is_err()
            {
                continue;
            }
            let result = self
                .ipam(tenant)
                .allocate(
                    &self.db,
                    &ipam::AllocateRequest {
                        pool,
                        subscriber_id: &sub,
                        key: &key,
                        run_id: &run(req),
                        metadata: json!({ "pool": pool.name }),
                        address: address.as_deref(),
                    },
                    self.now(),
                )
                .await;
            match result {
                Err(e @ IpamError::Exhausted { .. }) => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| IpamError::NotInPool {
            pool: pools
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            address: address.unwrap_or_default(),
        }))
    }

    pub(crate) async fn allocate(&self, req: StepRequest) -> StepResult {
        subscriber_id(&req)?;
        let v4 = self.allocate_one(&req, Family::Ipv4).await?;
        let mut out = json!({
            "ipv4_address": v4.address,
            "ipv4_record_id": v4.id,
        });
        if flag(&req, "/enable_ipv6") {
            match self.allocate_one(&req, Family::Ipv6).await {
                Ok(v6) => {
                    out["ipv6_prefix"] = json!(v6.address);
                    out["ipv6_record_id"] = json!(v6.id);
                }
                Err(e) => {
                    // Applied in part: the IPv4 address is held. The error
                    // is `uncertain`, so a step that gives up is compensated
                    // (ipam.release, by this step's allocation keys) instead
                    // of leaking the address.
                    let e = StepError::from(e);
                    let message = format!(
                        "IPv4 {} allocated, IPv6 failed ({}): {e}",
                        v4.address,
                        e.kind()
                    );
                    return Err(if e.is_retryable() {
                        StepError::retryable("uncertain", message)
                    } else {
                        StepError::fatal("uncertain", message)
                    });
                }
            }
        }
        Ok(output(out))
    }

    /// Releases what this step allocated (found by its allocation keys).
    pub(crate) async fn release_allocation(&self, req: StepRequest) -> StepResult {
        let tenant = req.tenant_id.as_str();
        for family in Family::ALL {
            self.ipam(tenant)
                .undo_allocation(
                    &self.db,
                    tenant,
                    family,
                    &allocation_key(&req, family),
                    &run(&req),
                    self.now(),
                )
                .await?;
        }
        Ok(StepOutput::new())
    }

    /// Releases every address the subscriber holds.
    pub(crate) async fn release_subscriber(&self, req: StepRequest) -> StepResult {
        let tenant = req.tenant_id.as_str();
        let records = lifecycle::for_subscriber(&self.db, tenant, &subscriber_id(&req)?).await?;
        let mut released = Vec::new();
        for r in records.into_iter().filter(|r| r.state.holds_address()) {
            let r = self
                .ipam(tenant)
                .release(&self.db, &r, &run(&req), self.now())
                .await?;
            released.push(r.address);
        }
        Ok(output(json!({ "released": released })))
    }
}

impl From<IpamError> for StepError {
    fn from(e: IpamError) -> Self {
        let kind = match e {
            IpamError::Lifecycle(l) => return l.into(),
            IpamError::Database(ref d) => return database_error(d, e.to_string()),
            IpamError::UnknownPool { .. } | IpamError::NoPool { .. } => "no_pool",
            IpamError::External(a) => return a.into(),
            IpamError::Exhausted { .. } => "pool_exhausted",
            IpamError::Retired { .. } => "pool_retired",
            IpamError::PoolExists { .. } => "pool_exists",
            IpamError::Taken { .. } => "address_taken",
            IpamError::NotInPool { .. } => "not_in_pool",
            IpamError::Config(_) => "ipam_config",
            IpamError::InvalidPool { .. } | IpamError::PoolChanged { .. } => "invalid_pool",
            IpamError::Corrupt(_) => "corrupt",
        };
        StepError::fatal(kind, e.to_string())
    }
}
