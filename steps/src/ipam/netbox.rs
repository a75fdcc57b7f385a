//! The NetBox backend: allocations held in NetBox (REST API, 4.x), the
//! address lifecycle kept in sagaflow.
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
//! Failures are the adapters' ([`AdapterError`]): no connection is
//! `unavailable`, a timeout or a 5xx `uncertain`, a 429 `throttled`, all
//! retryable; NetBox's 409 to an allocation is the pool's exhaustion.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Mutex, OnceCell};

use super::backend::{Builtin, IpamBackend};
use super::repo::{self as ipam, AllocateRequest};
use super::{IpamError, Pool, Result};
use crate::adapters::{AdapterError, answer_error, parse_retry_after, seg, transport_error};
use crate::db::DomainDb;
use crate::lifecycle::Family;
use crate::lifecycle::repo::AddressRecord;

const SYSTEM: &str = "netbox";
/// The custom field carrying the allocation key.
pub const KEY_FIELD: &str = "sagaflow_key";
/// The custom field carrying the subscriber.
pub const SUBSCRIBER_FIELD: &str = "sagaflow_subscriber";

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

/// One NetBox object as far as sagaflow reads it.
#[derive(Debug, Clone, Deserialize)]
struct Object {
    id: i64,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    custom_fields: HashMap<String, Value>,
}

impl Object {
    /// The address as sagaflow writes it: `10.0.0.5` (IPv4, without the
    /// mask NetBox adds) or `2001:db8::/56` (IPv6).
    fn address(&self, family: Family) -> Option<String> {
        match family {
            Family::Ipv4 => self
                .address
                .as_deref()
                .map(|a| a.split('/').next().unwrap_or(a).to_owned()),
            Family::Ipv6 => self.prefix.clone(),
        }
    }

    fn field(&self, name: &str) -> Option<&str> {
        self.custom_fields.get(name).and_then(Value::as_str)
    }
}

#[derive(Deserialize)]
struct Page {
    results: Vec<Object>,
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

/// The path of a family's objects.
fn objects(family: Family) -> &'static str {
    match family {
        Family::Ipv4 => "/api/ipam/ip-addresses/",
        Family::Ipv6 => "/api/ipam/prefixes/",
    }
}

/// A NetBox tenant slug for a sagaflow tenant: letters, digits, `-`, `_`.
fn slug(tenant: &str) -> String {
    tenant
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
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

    /// One request; the decoded body of a 2xx answer (`Null` when empty).
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, AdapterError> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header(reqwest::header::AUTHORIZATION, &self.auth)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| transport_error(SYSTEM, &e))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, Utc::now()));
        let text = resp.text().await.map_err(|e| AdapterError::Uncertain {
            system: SYSTEM,
            message: format!("reading the answer: {e}"),
        })?;
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).map_err(|e| AdapterError::BadResponse {
                system: SYSTEM,
                message: e.to_string(),
            });
        }
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| text.chars().take(300).collect());
        Err(answer_error(SYSTEM, status, message, retry_after))
    }

    async fn list(&self, path: &str) -> Result<Vec<Object>, AdapterError> {
        let v = self.send(Method::GET, path, None).await?;
        serde_json::from_value::<Page>(v)
            .map(|p| p.results)
            .map_err(|e| AdapterError::BadResponse {
                system: SYSTEM,
                message: e.to_string(),
            })
    }

    async fn create(&self, path: &str, body: &Value) -> Result<Object, AdapterError> {
        let v = self.send(Method::POST, path, Some(body)).await?;
        serde_json::from_value(v).map_err(|e| AdapterError::BadResponse {
            system: SYSTEM,
            message: e.to_string(),
        })
    }

    async fn delete(&self, family: Family, id: i64) -> Result<(), AdapterError> {
        match self
            .send(Method::DELETE, &format!("{}{id}/", objects(family)), None)
            .await
        {
            Ok(_) | Err(AdapterError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates the custom fields once per process (when absent).
    async fn ensure_fields(&self) -> Result<(), AdapterError> {
        self.fields
            .get_or_try_init(|| async {
                for (name, label) in [
                    (KEY_FIELD, "sagaflow allocation key"),
                    (SUBSCRIBER_FIELD, "sagaflow subscriber"),
                ] {
                    let path = format!("/api/extras/custom-fields/?name={name}");
                    if !self.list(&path).await?.is_empty() {
                        continue;
                    }
                    let body = json!({
                        "name": name,
                        "label": label,
                        "type": "text",
                        "object_types": ["ipam.ipaddress", "ipam.prefix"],
                        "filter_logic": "exact",
                        "description": "Written by sagaflow: which run allocated this.",
                    });
                    if let Err(e) = self.create("/api/extras/custom-fields/", &body).await {
                        // Another process may have created it meanwhile.
                        if self.list(&path).await?.is_empty() {
                            return Err(e);
                        }
                    }
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// The NetBox tenant of a sagaflow tenant (slug = tenant), created when
    /// absent.
    async fn tenant_id(&self, tenant: &str) -> Result<i64, AdapterError> {
        let slug = slug(tenant);
        if let Some(id) = self.tenants.lock().await.get(&slug) {
            return Ok(*id);
        }
        let path = format!("/api/tenancy/tenants/?slug={}", seg(&slug));
        let id = match self.list(&path).await?.first() {
            Some(t) => t.id,
            None => match self
                .create(
                    "/api/tenancy/tenants/",
                    &json!({ "name": tenant, "slug": slug }),
                )
                .await
            {
                Ok(t) => t.id,
                Err(e) => self.list(&path).await?.first().map(|t| t.id).ok_or(e)?,
            },
        };
        self.tenants.lock().await.insert(slug, id);
        Ok(id)
    }

    /// The NetBox prefix of `pool` (its range), created when absent.
    async fn prefix_id(&self, pool: &Pool, tenant: i64) -> Result<i64, AdapterError> {
        let cache_key = (pool.tenant_id.clone(), pool.cidr.to_string());
        if let Some(id) = self.prefixes.lock().await.get(&cache_key) {
            return Ok(*id);
        }
        let path = format!(
            "/api/ipam/prefixes/?prefix={}&tenant_id={tenant}",
            seg(&pool.cidr.to_string())
        );
        let id = match self.list(&path).await?.first() {
            Some(p) => p.id,
            None => {
                let body = json!({
                    "prefix": pool.cidr.to_string(),
                    "status": "active",
                    "tenant": tenant,
                    "description": format!("sagaflow pool {}", pool.name),
                });
                match self.create("/api/ipam/prefixes/", &body).await {
                    Ok(p) => p.id,
                    Err(e) => self.list(&path).await?.first().map(|p| p.id).ok_or(e)?,
                }
            }
        };
        self.prefixes.lock().await.insert(cache_key, id);
        Ok(id)
    }

    /// The objects an allocation key made for a tenant (exact match,
    /// checked here too): another tenant's objects are never found.
    async fn by_key(
        &self,
        family: Family,
        tenant: &str,
        key: &str,
    ) -> Result<Vec<Object>, AdapterError> {
        let tenant = self.tenant_id(tenant).await?;
        let path = format!(
            "{}?cf_{KEY_FIELD}={}&tenant_id={tenant}&limit=100",
            objects(family),
            seg(key)
        );
        Ok(self
            .list(&path)
            .await?
            .into_iter()
            .filter(|o| o.field(KEY_FIELD) == Some(key))
            .collect())
    }

    /// Allocates in NetBox (or finds what an earlier attempt with the same
    /// key allocated); returns the address as sagaflow writes it.
    async fn allocate_in_netbox(&self, req: &AllocateRequest<'_>) -> Result<String> {
        let pool = req.pool;
        let family = pool.family;
        self.ensure_fields().await?;
        if let Some(found) = self.by_key(family, &pool.tenant_id, req.key).await?.first() {
            return found
                .address(family)
                .ok_or_else(|| bad("an object without address"));
        }
        let tenant = self.tenant_id(&pool.tenant_id).await?;
        let fields = json!({ KEY_FIELD: req.key, SUBSCRIBER_FIELD: req.subscriber_id });
        let description = format!("sagaflow {} {}", req.subscriber_id, req.run_id);
        let mut body = json!({
            "status": self.status,
            "tenant": tenant,
            "description": description,
            "custom_fields": fields,
        });
        let made = if let Some(address) = req.address {
            // A requested address: refused when NetBox has it already.
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
            let field = if family == Family::Ipv4 {
                "address"
            } else {
                "prefix"
            };
            body[field] = json!(wanted);
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
        let address = self.allocate_in_netbox(req).await?;
        let local = AllocateRequest {
            address: Some(&address),
            ..req.clone()
        };
        match ipam::allocate(db, &local, now).await {
            // NetBox handed out what sagaflow cannot record (held here, e.g.
            // by a reservation): it is given back, so the failed step leaves
            // nothing in NetBox. A database error is retried instead, and
            // the retry finds NetBox's object by its key.
            Err(e @ (IpamError::Taken { .. } | IpamError::NotInPool { .. })) => {
                for o in self
                    .by_key(req.pool.family, &req.pool.tenant_id, req.key)
                    .await?
                {
                    self.delete(req.pool.family, o.id).await?;
                }
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
        for o in self.by_key(family, tenant, key).await? {
            self.delete(family, o.id).await?;
        }
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
        let lookup = match family {
            Family::Ipv4 => format!(
                "{}?address={}&cf_{SUBSCRIBER_FIELD}={}",
                objects(family),
                seg(&record.address),
                seg(&record.subscriber_id)
            ),
            Family::Ipv6 => format!(
                "{}?prefix={}&cf_{SUBSCRIBER_FIELD}={}",
                objects(family),
                seg(&record.address),
                seg(&record.subscriber_id)
            ),
        };
        for o in self.list(&lookup).await? {
            if o.field(SUBSCRIBER_FIELD) == Some(record.subscriber_id.as_str())
                && o.address(family).as_deref() == Some(record.address.as_str())
            {
                self.delete(family, o.id).await?;
            }
        }
        Builtin.release(db, record, run_id, now).await
    }
}
