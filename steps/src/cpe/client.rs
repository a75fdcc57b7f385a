//! CPE configuration through the TR-069 ACS: the ACS pushes the
//! subscriber's parameters to the router at its next inform.

use async_trait::async_trait;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::adapters::{AdapterError, EndpointConfig, HttpEndpoint, NO_BODY, Owner, Undone, seg};

/// The parameters set on a subscriber's CPE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpeConfig {
    pub subscriber_id: String,
    pub pppoe_username: String,
    pub plan: String,
    #[serde(default)]
    pub ipv4_address: Option<String>,
    #[serde(default)]
    pub ipv6_prefix: Option<String>,
    /// Whom the ACS tells when the CPE bootstraps (its inform): the run
    /// waiting for it and the signal's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inform: Option<InformTarget>,
}

/// The workflow run a CPE's bootstrap inform is signalled to
/// (`SignalWorkflow(run_id, signal)`, see docs/domain.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InformTarget {
    pub run_id: String,
    pub signal: String,
}

/// The signal a CPE's bootstrap inform is delivered as.
pub const CPE_INFORM: &str = "cpe_inform";

/// A configured CPE as the ACS holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpeRecord {
    pub config: CpeConfig,
    /// The idempotency key of the request that configured it; a later
    /// configuration for the same subscriber replaces the parameters and
    /// keeps it.
    #[serde(default)]
    pub configured_by: Option<String>,
}

#[async_trait]
pub trait CpeAdapter: Send + Sync + 'static {
    /// Sets the CPE's configuration, or replaces it when it is configured
    /// for the same subscriber; one configured for another subscriber is a
    /// conflict.
    async fn configure(
        &self,
        tenant: &str,
        key: &str,
        serial: &str,
        config: &CpeConfig,
    ) -> Result<(), AdapterError>;
    /// Removes it if its configuration belongs to `only`; an unconfigured
    /// CPE, or one that belongs to someone else, is left as it is. Returns
    /// whether it changed anything.
    async fn unconfigure(
        &self,
        tenant: &str,
        key: &str,
        serial: &str,
        only: Owner<'_>,
    ) -> Result<bool, AdapterError>;
}

/// The ACS's HTTP API, per tenant: `PUT {base}/tenants/{}/devices/{}/config`,
/// `DELETE {base}/tenants/{}/devices/{}/config?created_by=…|subscriber_id=…`.
#[derive(Debug, Clone)]
pub struct HttpCpe(HttpEndpoint);

impl HttpCpe {
    pub fn new(cfg: &EndpointConfig) -> Result<Self, AdapterError> {
        HttpEndpoint::new("ACS", cfg).map(Self)
    }
}

#[async_trait]
impl CpeAdapter for HttpCpe {
    async fn configure(
        &self,
        tenant: &str,
        key: &str,
        serial: &str,
        config: &CpeConfig,
    ) -> Result<(), AdapterError> {
        self.0
            .call::<serde_json::Value>(
                Method::PUT,
                (tenant, &format!("/devices/{}/config", seg(serial))),
                key,
                Some(config),
            )
            .await
            .map(|_| ())
    }

    async fn unconfigure(
        &self,
        tenant: &str,
        key: &str,
        serial: &str,
        only: Owner<'_>,
    ) -> Result<bool, AdapterError> {
        self.0
            .call::<Undone>(
                Method::DELETE,
                (
                    tenant,
                    &format!("/devices/{}/config{}", seg(serial), only.query()),
                ),
                key,
                NO_BODY,
            )
            .await
            .map(Undone::changed)
    }
}
