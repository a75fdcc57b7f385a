//! Billing: the subscriber's recurring service.

use std::fmt;

use async_trait::async_trait;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::adapters::{AdapterError, EndpointConfig, HttpEndpoint, NO_BODY, seg};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewService {
    pub subscriber_id: String,
    pub customer_id: String,
    pub plan: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServiceState {
    Active,
    Suspended,
}

impl fmt::Display for ServiceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServiceState::Active => "ACTIVE",
            ServiceState::Suspended => "SUSPENDED",
        })
    }
}

/// A billing service, one per subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingService {
    pub service_id: String,
    pub subscriber_id: String,
    pub customer_id: String,
    pub plan: String,
    pub state: ServiceState,
}

#[async_trait]
pub trait BillingAdapter: Send + Sync + 'static {
    /// Creates the subscriber's service (ACTIVE).
    async fn create_service(
        &self,
        tenant: &str,
        key: &str,
        service: &NewService,
    ) -> Result<BillingService, AdapterError>;
    async fn suspend(
        &self,
        tenant: &str,
        key: &str,
        subscriber_id: &str,
    ) -> Result<BillingService, AdapterError>;
    async fn resume(
        &self,
        tenant: &str,
        key: &str,
        subscriber_id: &str,
    ) -> Result<BillingService, AdapterError>;
    /// Deletes the service the create request with idempotency key
    /// `created_by` made; a missing one, or one another request created,
    /// is left as it is.
    async fn delete_service(
        &self,
        tenant: &str,
        key: &str,
        subscriber_id: &str,
        created_by: &str,
    ) -> Result<(), AdapterError>;
}

/// The billing system's HTTP API, per tenant (`{t}`):
/// `POST {base}/tenants/{t}/services`,
/// `POST {base}/tenants/{t}/services/{subscriber}/suspend|resume`,
/// `DELETE {base}/tenants/{t}/services/{subscriber}?created_by={create request's key}`.
#[derive(Debug, Clone)]
pub struct HttpBilling(HttpEndpoint);

impl HttpBilling {
    pub fn new(cfg: &EndpointConfig) -> Result<Self, AdapterError> {
        HttpEndpoint::new("billing", cfg).map(Self)
    }
}

#[async_trait]
impl BillingAdapter for HttpBilling {
    async fn create_service(
        &self,
        tenant: &str,
        key: &str,
        service: &NewService,
    ) -> Result<BillingService, AdapterError> {
        self.0
            .call_for(Method::POST, (tenant, "/services"), key, Some(service))
            .await
    }

    async fn suspend(
        &self,
        tenant: &str,
        key: &str,
        subscriber_id: &str,
    ) -> Result<BillingService, AdapterError> {
        self.0
            .call_for(
                Method::POST,
                (tenant, &format!("/services/{}/suspend", seg(subscriber_id))),
                key,
                NO_BODY,
            )
            .await
    }

    async fn resume(
        &self,
        tenant: &str,
        key: &str,
        subscriber_id: &str,
    ) -> Result<BillingService, AdapterError> {
        self.0
            .call_for(
                Method::POST,
                (tenant, &format!("/services/{}/resume", seg(subscriber_id))),
                key,
                NO_BODY,
            )
            .await
    }

    async fn delete_service(
        &self,
        tenant: &str,
        key: &str,
        subscriber_id: &str,
        created_by: &str,
    ) -> Result<(), AdapterError> {
        self.0
            .call::<serde_json::Value>(
                Method::DELETE,
                (
                    tenant,
                    &format!(
                        "/services/{}?created_by={}",
                        seg(subscriber_id),
                        seg(created_by)
                    ),
                ),
                key,
                NO_BODY,
            )
            .await
            .map(|_| ())
    }
}
