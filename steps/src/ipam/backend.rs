//! Who holds the allocations: the [`IpamBackend`] trait, the built-in
//! backend (the database, [`super::repo`]), and the choice of backend per
//! tenant ([`IpamConfig`], [`IpamBackends`]).
//!
//! Whatever the backend, the address lifecycle stays in sagaflow: every
//! allocation is an `address_records` row, found again by its allocation
//! key. An external backend ([`super::netbox`]) holds the allocation itself
//! and sagaflow records the address it handed out.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::netbox::{NetBox, NetBoxConfig};
use super::repo::{self as ipam, AllocateRequest};
use super::{IpamError, Pool, Result};
use crate::db::DomainDb;
use crate::lifecycle::Family;
use crate::lifecycle::repo::AddressRecord;

/// Allocation and release, idempotent by allocation key; reservations,
/// idempotent by reservation key.
#[async_trait]
pub trait IpamBackend: Send + Sync + 'static {
    /// `builtin` or `netbox`.
    fn name(&self) -> &'static str;

    /// Allocates for `req` (an address or prefix of `req.pool`). A second
    /// call with the same key returns what the first one allocated, even
    /// when the first call's answer was lost.
    async fn allocate(
        &self,
        db: &DomainDb,
        req: &AllocateRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<AddressRecord>;

    /// The undo of an allocation: releases what the allocation key `key`
    /// made, and only that. Nothing to release is not an error.
    async fn undo_allocation(
        &self,
        db: &DomainDb,
        tenant: &str,
        family: Family,
        key: &str,
        run_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<AddressRecord>>;

    /// Releases a held record (deprovisioning, cleanup); idempotent.
    async fn release(
        &self,
        db: &DomainDb,
        record: &AddressRecord,
        run_id: &str,
        now: DateTime<Utc>,
    ) -> Result<AddressRecord>;

    /// Holds an address of `pool` for the reservation `key` of
    /// `subscriber`: `address` when given (refused with
    /// [`IpamError::Taken`] when the backend has it), else a free one.
    /// Returns the address the backend holds, `None` when the reservation's
    /// record is all there is (built in). A second call with the same key
    /// returns what the first one held, even when its answer was lost.
    async fn reserve(
        &self,
        pool: &Pool,
        subscriber: &str,
        key: &str,
        address: Option<&str>,
    ) -> Result<Option<String>>;

    /// Gives back what the reservation `key` holds, and only that. Nothing
    /// to give back is not an error.
    async fn unreserve(&self, tenant: &str, family: Family, key: &str) -> Result<()>;
}

/// The built-in backend: the pools and records in sagaflow's database.
#[derive(Debug, Clone, Copy, Default)]
pub struct Builtin;

#[async_trait]
impl IpamBackend for Builtin {
    fn name(&self) -> &'static str {
        BackendKind::Builtin.as_str()
    }

    async fn allocate(
        &self,
        db: &DomainDb,
        req: &AllocateRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<AddressRecord> {
        ipam::allocate(db, req, now).await
    }

    async fn undo_allocation(
        &self,
        db: &DomainDb,
        tenant: &str,
        _family: Family,
        key: &str,
        run_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<AddressRecord>> {
        match ipam::by_allocation_key(db, tenant, key).await? {
            Some(rec) => Ok(Some(ipam::release(db, tenant, rec.id, run_id, now).await?)),
            None => Ok(None),
        }
    }

    async fn release(
        &self,
        db: &DomainDb,
        record: &AddressRecord,
        run_id: &str,
        now: DateTime<Utc>,
    ) -> Result<AddressRecord> {
        ipam::release(db, &record.tenant_id, record.id, run_id, now).await
    }

    /// The record is the reservation: nothing to hold elsewhere.
    async fn reserve(
        &self,
        _pool: &Pool,
        _subscriber: &str,
        _key: &str,
        _address: Option<&str>,
    ) -> Result<Option<String>> {
        Ok(None)
    }

    async fn unreserve(&self, _tenant: &str, _family: Family, _key: &str) -> Result<()> {
        Ok(())
    }
}

/// The IPAM backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// sagaflow's database.
    #[default]
    Builtin,
    /// NetBox's REST API ([`IpamConfig::netbox`]).
    Netbox,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Builtin => "builtin",
            BackendKind::Netbox => "netbox",
        }
    }
}

/// Which backend each tenant's pools use (`[domain.ipam]`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IpamConfig {
    /// The backend of tenants not listed in `tenants`.
    pub backend: BackendKind,
    /// A backend per tenant, e.g. `{ acme = "netbox" }`.
    pub tenants: BTreeMap<String, BackendKind>,
    /// NetBox, when a tenant uses it.
    pub netbox: Option<NetBoxConfig>,
}

impl IpamConfig {
    /// The backend `tenant` uses.
    pub fn kind_for(&self, tenant: &str) -> BackendKind {
        self.tenants.get(tenant).copied().unwrap_or(self.backend)
    }

    fn uses_netbox(&self) -> bool {
        self.backend == BackendKind::Netbox
            || self.tenants.values().any(|k| *k == BackendKind::Netbox)
    }
}

/// The backends, built: each tenant's.
#[derive(Clone)]
pub struct IpamBackends {
    config: IpamConfig,
    builtin: Arc<dyn IpamBackend>,
    netbox: Option<Arc<dyn IpamBackend>>,
}

impl std::fmt::Debug for IpamBackends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpamBackends")
            .field("config", &self.config)
            .finish()
    }
}

impl Default for IpamBackends {
    fn default() -> Self {
        Self {
            config: IpamConfig::default(),
            builtin: Arc::new(Builtin),
            netbox: None,
        }
    }
}

impl IpamBackends {
    /// Builds the backends `cfg` names; NetBox must be configured when a
    /// tenant uses it.
    pub fn new(cfg: &IpamConfig) -> Result<Self> {
        let netbox: Option<Arc<dyn IpamBackend>> = match (&cfg.netbox, cfg.uses_netbox()) {
            (Some(n), _) => Some(Arc::new(NetBox::new(n)?)),
            (None, true) => {
                return Err(IpamError::Config(
                    "a tenant uses the netbox backend but domain.ipam.netbox is not set".into(),
                ));
            }
            (None, false) => None,
        };
        Ok(Self {
            config: cfg.clone(),
            builtin: Arc::new(Builtin),
            netbox,
        })
    }

    /// The backend of `tenant`.
    pub fn for_tenant(&self, tenant: &str) -> &Arc<dyn IpamBackend> {
        match (self.config.kind_for(tenant), &self.netbox) {
            (BackendKind::Netbox, Some(n)) => n,
            _ => &self.builtin,
        }
    }

    /// The name of `tenant`'s backend.
    pub fn kind_for(&self, tenant: &str) -> BackendKind {
        self.config.kind_for(tenant)
    }
}
