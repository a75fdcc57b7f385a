//! The NetBox backend: allocations and reservations held in NetBox (REST
//! API, 4.x), the address lifecycle kept in sagaflow. `api.rs` holds the
//! REST calls.
//!
//! A pool is the NetBox prefix with the pool's range (created, with the
//! tenant, when NetBox has none). An allocation is made by the prefix's
//! `available-ips` (IPv4) or `available-prefixes` (IPv6) endpoint, which
//! NetBox serializes under a lock, and carries two custom fields:
//! `sagaflow_key` (the step's allocation key, `<run>:<step>:<family>`) and
//! `sagaflow_subscriber`. A retry first looks for an object with its key, so
//! an attempt whose answer was lost is found instead of allocated twice;
//! an undo deletes only the objects with its key, a release only the
//! subscriber's object at the record's address. The custom fields are
//! created on first use (filter logic `exact`), so the token needs the right
//! to add custom fields once, or an administrator creates them beforehand.
//!
//! A reservation is an object with status `reserved`, the tenant, and the
//! reservation's key (`reservation:<subscriber>:<pool>:<address|any>`) in
//! `sagaflow_key`: made the same way (a specific address NetBox has is
//! taken), found again by its key, deleted by its key. The subscriber's
//! allocation from the pool takes it over: the object gets the allocation's
//! status and key.
//!
//! Failures are the adapters' ([`AdapterError`]): no connection is
//! `unavailable`, a timeout or a 5xx `uncertain`, a 429 `throttled`, all
//! retryable; NetBox's 409 to an allocation is the pool's exhaustion.

mod api;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{Mutex, OnceCell};

use self::api::{address_field, objects};
use super::backend::{Builtin, IpamBackend};
use super::repo::{self as ipam, AllocateRequest};
use super::{IpamError, Pool, Result, reservations};
use crate::adapters::{AdapterError, seg};
use crate::db::DomainDb;
use crate::lifecycle::Family;
use crate::lifecycle::repo::AddressRecord;

const SYSTEM: &str = "netbox";
/// The custom field carrying the allocation key.
pub const KEY_FIELD: &str = "sagaflow_key";
/// The custom field carrying the subscriber.
pub const SUBSCRIBER_FIELD: &str = "sagaflow_subscriber";
/// The status of a reservation's object.
pub const RESERVED: &str = "reserved";

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_status() -> String {
    "active".into()
}

/// Where NetBox is (`[domain.ipam.netbox]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetBoxConfig {
    /// e.g. `https://netbox.example.net`; `/api/...` is appended.
    pub base_url: String,
    /// An API token: a v2 token (`nbt_<key>.<secret>`, sent as `Bearer`)
    /// or a v1 one (40 characters, sent as `Token`).
    pub token: String,
    /// Limit for one request, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// A PEM file of the CA that signs NetBox's certificate, when it is not
    /// a public one.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// The status given to what sagaflow allocates.
    #[serde(default = "default_status")]
    pub status: String,
}

impl NetBoxConfig {
    pub fn new(base_url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            token: token.into(),
            timeout_ms: default_timeout_ms(),
            ca_file: None,
            status: default_status(),
        }
    }
}

/// The NetBox client and backend.
pub struct NetBox {
    client: reqwest::Client,
    base: String,
    auth: String,
    status: String,
    fields: OnceCell<()>,
    tenants: Mutex<HashMap<String, i64>>,
    prefixes: Mutex<HashMap<(String, String), i64>>,
}

impl std::fmt::Debug for NetBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetBox").field("base", &self.base).finish()
    }
}

fn config_error(message: String) -> IpamError {
    IpamError::External(AdapterError::Config {
        system: SYSTEM,
        message,
    })
}

impl NetBox {
    pub fn new(cfg: &NetBoxConfig) -> Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms.max(1)))
            .connect_timeout(Duration::from_millis(cfg.timeout_ms.clamp(1, 5_000)));
        if let Some(path) = &cfg.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| config_error(format!("ca_file {}: {e}", path.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| config_error(format!("ca_file {}: {e}", path.display())))?;
            builder = builder.add_root_certificate(cert);
        }
        let client = builder.build().map_err(|e| config_error(e.to_string()))?;
        if cfg.token.is_empty() {
            return Err(config_error("domain.ipam.netbox.token is empty".into()));
        }
        let auth = if cfg.token.starts_with("nbt_") {
            format!("Bearer {}", cfg.token)
        } else {
            format!("Token {}", cfg.token)
        };
        Ok(Self {
            client,
            base: cfg.base_url.trim_end_matches('/').to_owned(),
            auth,
            status: cfg.status.clone(),
            fields: OnceCell::new(),
            tenants: Mutex::default(),
            prefixes: Mutex::default(),
        })
    }

    /// The address the objects carrying `key` hold: what an earlier
    /// attempt made, its answer lost.
    async fn found(&self, pool: &Pool, key: &str) -> Result<Option<String>> {
        match self
            .by_key(pool.family, &pool.tenant_id, key)
            .await?
            .first()
        {
            Some(o) => o
                .address(pool.family)
                .map(Some)
                .ok_or_else(|| bad("an object without address")),
            None => Ok(None),
        }
    }

    /// Creates the object of `h`: its address when it names one (refused
    /// as taken when NetBox has that address, whoever holds it), else the
    /// first free one of the pool's prefix. Returns the address as sagaflow
    /// writes it.
    async fn make(&self, h: &Hold<'_>) -> Result<String> {
        let pool = h.pool;
        let family = pool.family;
        let tenant = self.tenant_id(&pool.tenant_id).await?;
        let fields = json!({ KEY_FIELD: h.key, SUBSCRIBER_FIELD: h.subscriber });
        let mut body = json!({
            "status": h.status,
            "tenant": tenant,
            "description": h.description,
            "custom_fields": fields,
        });
        let made = if let Some(address) = h.address {
            let wanted = match family {
                Family::Ipv4 => format!(
                    "{}/{}",
                    address.split('/').next().unwrap_or(address),
                    pool.cidr.prefix_len()
                ),
                Family::Ipv6 => address.to_owned(),
            };
            let lookup = match family {
                Family::Ipv4 => format!(
                    "{}?address={}",
                    objects(family),
                    seg(address.split('/').next().unwrap_or(address))
                ),
                Family::Ipv6 => format!("{}?prefix={}", objects(family), seg(&wanted)),
            };
            if !self.list(&lookup).await?.is_empty() {
                return Err(IpamError::Taken {
                    pool: pool.name.clone(),
                    address: address.to_owned(),
                });
            }
            body[address_field(family)] = json!(wanted);
            self.create(objects(family), &body).await
        } else {
            let prefix = self.prefix_id(pool, tenant).await?;
            let path = match family {
                Family::Ipv4 => format!("/api/ipam/prefixes/{prefix}/available-ips/"),
                Family::Ipv6 => {
                    body["prefix_length"] = json!(pool.prefix_length);
                    format!("/api/ipam/prefixes/{prefix}/available-prefixes/")
                }
            };
            self.create(&path, &body).await
        };
        match made {
            Ok(o) => o
                .address(family)
                .ok_or_else(|| bad("an object without address")),
            // NetBox answers 409 when the prefix has no room left.
            Err(AdapterError::Conflict { .. }) => Err(IpamError::Exhausted {
                pool: pool.name.clone(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Allocates in NetBox (or finds what an earlier attempt with the same
    /// key allocated, or takes the subscriber's reservation); returns the
    /// address as sagaflow writes it.
    async fn allocate_in_netbox(
        &self,
        db: &DomainDb,
        req: &AllocateRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<String> {
        self.ensure_fields().await?;
        if let Some(address) = self.found(req.pool, req.key).await? {
            return Ok(address);
        }
        if let Some(address) = self.take_reservation(db, req, now).await? {
            return Ok(address);
        }
        self.make(&Hold {
            pool: req.pool,
            key: req.key,
            subscriber: req.subscriber_id,
            status: &self.status,
            description: format!("sagaflow {} {}", req.subscriber_id, req.run_id),
            address: req.address,
        })
        .await
    }

    /// The subscriber's live reservation in the pool (of the address asked
    /// for, when one is), handed to the allocation in NetBox: its object
    /// takes the allocation's status and key, so the allocation's undo and
    /// release find it. `None` when there is no reservation or NetBox has
    /// no object of it (one made before reservations were mirrored).
    async fn take_reservation(
        &self,
        db: &DomainDb,
        req: &AllocateRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<String>> {
        let pool = req.pool;
        let Some(rec) = reservations::live(db, pool, req.subscriber_id, req.address, now).await?
        else {
            return Ok(None);
        };
        let Some(key) = reservations::key_of(&rec) else {
            return Ok(None);
        };
        let Some(o) = self
            .by_key(pool.family, &pool.tenant_id, key)
            .await?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        let body = json!({
            "status": self.status,
            "description": format!("sagaflow {} {}", req.subscriber_id, req.run_id),
            "custom_fields": { KEY_FIELD: req.key, SUBSCRIBER_FIELD: req.subscriber_id },
        });
        self.patch(pool.family, o.id, &body).await?;
        Ok(Some(rec.address))
    }
}

/// What to create in NetBox: an allocation or a reservation.
struct Hold<'a> {
    pool: &'a Pool,
    /// The allocation's or the reservation's key.
    key: &'a str,
    subscriber: &'a str,
    /// The configured status, or `reserved`.
    status: &'a str,
    description: String,
    /// A specific address; `None`: the first free one.
    address: Option<&'a str>,
}

fn bad(message: &str) -> IpamError {
    IpamError::External(AdapterError::BadResponse {
        system: SYSTEM,
        message: message.into(),
    })
}

#[async_trait]
impl IpamBackend for NetBox {
    fn name(&self) -> &'static str {
        super::BackendKind::Netbox.as_str()
    }

    async fn allocate(
        &self,
        db: &DomainDb,
        req: &AllocateRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<AddressRecord> {
        if let Some(rec) = ipam::by_allocation_key(db, &req.pool.tenant_id, req.key).await?
            && rec.state.holds_address()
        {
            return Ok(rec);
        }
        let address = self.allocate_in_netbox(db, req, now).await?;
        let local = AllocateRequest {
            address: Some(&address),
            ..req.clone()
        };
        match ipam::allocate(db, &local, now).await {
            // NetBox handed out what sagaflow cannot record (held here, e.g.
            // by a reservation made before reservations were mirrored): it
            // is given back, so the failed step leaves nothing in NetBox. A
            // database error is retried instead, and the retry finds
            // NetBox's object by its key.
            Err(e @ (IpamError::Taken { .. } | IpamError::NotInPool { .. })) => {
                self.delete_by_key(req.pool.family, &req.pool.tenant_id, req.key)
                    .await?;
                Err(e)
            }
            other => other,
        }
    }

    async fn undo_allocation(
        &self,
        db: &DomainDb,
        tenant: &str,
        family: Family,
        key: &str,
        run_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<AddressRecord>> {
        self.ensure_fields().await?;
        self.delete_by_key(family, tenant, key).await?;
        // The record, as the built-in backend releases it.
        Builtin
            .undo_allocation(db, tenant, family, key, run_id, now)
            .await
    }

    async fn release(
        &self,
        db: &DomainDb,
        record: &AddressRecord,
        run_id: &str,
        now: DateTime<Utc>,
    ) -> Result<AddressRecord> {
        let family = record.family;
        self.ensure_fields().await?;
        let lookup = format!(
            "{}?{}={}&cf_{SUBSCRIBER_FIELD}={}",
            objects(family),
            address_field(family),
            seg(&record.address),
            seg(&record.subscriber_id)
        );
        for o in self.list(&lookup).await? {
            if o.field(SUBSCRIBER_FIELD) == Some(record.subscriber_id.as_str())
                && o.address(family).as_deref() == Some(record.address.as_str())
            {
                self.delete(family, o.id).await?;
            }
        }
        Builtin.release(db, record, run_id, now).await
    }

    async fn reserve(
        &self,
        pool: &Pool,
        subscriber: &str,
        key: &str,
        address: Option<&str>,
    ) -> Result<Option<String>> {
        self.ensure_fields().await?;
        if let Some(address) = self.found(pool, key).await? {
            return Ok(Some(address));
        }
        self.make(&Hold {
            pool,
            key,
            subscriber,
            status: RESERVED,
            description: format!("sagaflow reservation for {subscriber}"),
            address,
        })
        .await
        .map(Some)
    }

    async fn unreserve(&self, tenant: &str, family: Family, key: &str) -> Result<()> {
        self.ensure_fields().await?;
        Ok(self.delete_by_key(family, tenant, key).await?)
    }
}
