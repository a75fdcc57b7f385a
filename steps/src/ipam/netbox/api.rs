//! NetBox's REST API as the backend uses it: one request
//! ([`NetBox::send`]) with the adapters' error classes, listing, creating,
//! changing and deleting objects, the custom fields, tenants and prefixes
//! (created on first use and cached), and the objects a key made.

use std::collections::HashMap;

use chrono::Utc;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{KEY_FIELD, NetBox, SUBSCRIBER_FIELD, SYSTEM};
use crate::adapters::{AdapterError, answer_error, parse_retry_after, seg, transport_error};
use crate::ipam::Pool;
use crate::lifecycle::Family;

/// One NetBox object as far as sagaflow reads it.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Object {
    pub(super) id: i64,
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
    pub(super) fn address(&self, family: Family) -> Option<String> {
        match family {
            Family::Ipv4 => self
                .address
                .as_deref()
                .map(|a| a.split('/').next().unwrap_or(a).to_owned()),
            Family::Ipv6 => self.prefix.clone(),
        }
    }

    pub(super) fn field(&self, name: &str) -> Option<&str> {
        self.custom_fields.get(name).and_then(Value::as_str)
    }
}

#[derive(Deserialize)]
struct Page {
    results: Vec<Object>,
}

/// The path of a family's objects.
pub(super) fn objects(family: Family) -> &'static str {
    match family {
        Family::Ipv4 => "/api/ipam/ip-addresses/",
        Family::Ipv6 => "/api/ipam/prefixes/",
    }
}

/// The field of a family's objects that holds the address.
pub(super) fn address_field(family: Family) -> &'static str {
    match family {
        Family::Ipv4 => "address",
        Family::Ipv6 => "prefix",
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

    pub(super) async fn list(&self, path: &str) -> Result<Vec<Object>, AdapterError> {
        let v = self.send(Method::GET, path, None).await?;
        serde_json::from_value::<Page>(v)
            .map(|p| p.results)
            .map_err(|e| AdapterError::BadResponse {
                system: SYSTEM,
                message: e.to_string(),
            })
    }

    pub(super) async fn create(&self, path: &str, body: &Value) -> Result<Object, AdapterError> {
        let v = self.send(Method::POST, path, Some(body)).await?;
        serde_json::from_value(v).map_err(|e| AdapterError::BadResponse {
            system: SYSTEM,
            message: e.to_string(),
        })
    }

    /// Changes the fields of `body` of one object.
    pub(super) async fn patch(
        &self,
        family: Family,
        id: i64,
        body: &Value,
    ) -> Result<(), AdapterError> {
        self.send(
            Method::PATCH,
            &format!("{}{id}/", objects(family)),
            Some(body),
        )
        .await
        .map(|_| ())
    }

    /// Deletes the objects carrying `key` (a tenant's), and only those.
    pub(super) async fn delete_by_key(
        &self,
        family: Family,
        tenant: &str,
        key: &str,
    ) -> Result<(), AdapterError> {
        for o in self.by_key(family, tenant, key).await? {
            self.delete(family, o.id).await?;
        }
        Ok(())
    }

    pub(super) async fn delete(&self, family: Family, id: i64) -> Result<(), AdapterError> {
        match self
            .send(Method::DELETE, &format!("{}{id}/", objects(family)), None)
            .await
        {
            Ok(_) | Err(AdapterError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates the custom fields once per process (when absent).
    pub(super) async fn ensure_fields(&self) -> Result<(), AdapterError> {
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
                        "description": "Written by sagaflow: the allocation or reservation that made this.",
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
    pub(super) async fn tenant_id(&self, tenant: &str) -> Result<i64, AdapterError> {
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
    pub(super) async fn prefix_id(&self, pool: &Pool, tenant: i64) -> Result<i64, AdapterError> {
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

    /// The objects a key (an allocation's or a reservation's) made for a tenant (exact match,
    /// checked here too): another tenant's objects are never found.
    pub(super) async fn by_key(
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
}
