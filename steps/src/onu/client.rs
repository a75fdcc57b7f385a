//! ONU/OLT activation: the subscriber's optical terminal is bound to the
//! subscriber and given its service profile.

use async_trait::async_trait;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::adapters::{AdapterError, EndpointConfig, HttpEndpoint, NO_BODY, Owner, Undone, seg};

/// What an ONU is activated with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnuActivation {
    pub subscriber_id: String,
    pub plan: String,
    pub download_kbps: i64,
    pub upload_kbps: i64,
    #[serde(default)]
    pub service_vlan: Option<i32>,
}

/// An active ONU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnuStatus {
    pub serial: String,
    pub activation: OnuActivation,
    /// The idempotency key of the request that made this activation; a
    /// later activation for the same subscriber updates the parameters
    /// and keeps it.
    #[serde(default)]
    pub activated_by: Option<String>,
}

/// What the OLT reports of an ONU's link: whether it has ranged on the PON
/// and is online.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnuLink {
    pub serial: String,
    #[serde(default)]
    pub online: bool,
}

#[async_trait]
pub trait OnuAdapter: Send + Sync + 'static {
    /// Activates the ONU for the subscriber. Activating it again for the
    /// same subscriber is fine (it stays the first request's activation);
    /// one active for another is a conflict.
    async fn activate(
        &self,
        tenant: &str,
        key: &str,
        serial: &str,
        activation: &OnuActivation,
    ) -> Result<OnuStatus, AdapterError>;
    /// Whether the active ONU has ranged (is online); an ONU that is not
    /// active is [`AdapterError::NotFound`].
    async fn link(&self, tenant: &str, key: &str, serial: &str) -> Result<OnuLink, AdapterError>;
    /// Deactivates the ONU if its activation belongs to `only`; an
    /// inactive one, or one that belongs to someone else, is left as it is.
    /// Returns whether it changed anything.
    async fn deactivate(
        &self,
        tenant: &str,
        key: &str,
        serial: &str,
        only: Owner<'_>,
    ) -> Result<bool, AdapterError>;
}

/// The OLT gateway's HTTP API, per tenant:
/// `GET {base}/tenants/{}/onus/{}` (the ONU and whether it is `online`),
/// `POST {base}/tenants/{}/onus/{}/activate`,
/// `POST {base}/tenants/{}/onus/{}/deactivate?created_by=…|subscriber_id=…`.
#[derive(Debug, Clone)]
pub struct HttpOnu(HttpEndpoint);

impl HttpOnu {
    pub fn new(cfg: &EndpointConfig) -> Result<Self, AdapterError> {
        HttpEndpoint::new("ONU/OLT", cfg).map(Self)
    }
}

#[async_trait]
impl OnuAdapter for HttpOnu {
    async fn activate(
        &self,
        tenant: &str,
        key: &str,
        serial: &str,
        activation: &OnuActivation,
    ) -> Result<OnuStatus, AdapterError> {
        self.0
            .call_for(
                Method::POST,
                (tenant, &format!("/onus/{}/activate", seg(serial))),
                key,
                Some(activation),
            )
            .await
    }

    async fn link(&self, tenant: &str, key: &str, serial: &str) -> Result<OnuLink, AdapterError> {
        self.0
            .call_for(
                Method::GET,
                (tenant, &format!("/onus/{}", seg(serial))),
                key,
                NO_BODY,
            )
            .await
    }

    async fn deactivate(
        &self,
        tenant: &str,
        key: &str,
        serial: &str,
        only: Owner<'_>,
    ) -> Result<bool, AdapterError> {
        self.0
            .call::<Undone>(
                Method::POST,
                (
                    tenant,
                    &format!("/onus/{}/deactivate{}", seg(serial), only.query()),
                ),
                key,
                NO_BODY,
            )
            .await
            .map(Undone::changed)
    }
}
