//! CPE configuration through the TR-069 ACS: the ACS pushes the
//! subscriber's parameters to the router at its next inform.

use async_trait::async_trait;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::{AdapterError, EndpointConfig, HttpEndpoint, NO_BODY, seg};

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
}

#[async_trait]
pub trait CpeAdapter: Send + Sync + 'static {
    /// Sets (or replaces) the CPE's configuration.
    async fn configure(
        &self,
        key: &str,
        serial: &str,
        config: &CpeConfig,
    ) -> Result<(), AdapterError>;
    /// Removes it; an unconfigured CPE is left as it is.
    async fn unconfigure(&self, key: &str, serial: &str) -> Result<(), AdapterError>;
}

/// The ACS's HTTP API: `PUT {base}/devices/{}/config`,
/// `DELETE {base}/devices/{}/config`.
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
        key: &str,
        serial: &str,
        config: &CpeConfig,
    ) -> Result<(), AdapterError> {
        self.0
            .call::<serde_json::Value>(
                Method::PUT,
                &format!("/devices/{}/config", seg(serial)),
                key,
                Some(config),
            )
            .await
            .map(|_| ())
    }

    async fn unconfigure(&self, key: &str, serial: &str) -> Result<(), AdapterError> {
        self.0
            .call::<serde_json::Value>(
                Method::DELETE,
                &format!("/devices/{}/config", seg(serial)),
                key,
                NO_BODY,
            )
            .await
            .map(|_| ())
    }
}
