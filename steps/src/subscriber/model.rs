//! The subscriber domain's types: customers, subscribers, network
//! profiles, the subscriber's state and the domain's error.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::lifecycle::UnknownName;

/// The state of a subscriber's service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SubscriberState {
    Active,
    Suspended,
    /// Deprovisioned; kept as history.
    Archived,
}

impl SubscriberState {
    pub const ALL: [SubscriberState; 3] = [
        SubscriberState::Active,
        SubscriberState::Suspended,
        SubscriberState::Archived,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SubscriberState::Active => "ACTIVE",
            SubscriberState::Suspended => "SUSPENDED",
            SubscriberState::Archived => "ARCHIVED",
        }
    }
}

impl fmt::Display for SubscriberState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SubscriberState {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SubscriberState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "subscriber state",
                value: s.to_owned(),
            })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewCustomer {
    pub id: String,
    pub name: String,
    pub email: String,
    #[serde(default)]
    pub phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Customer {
    pub tenant_id: String,
    pub id: String,
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    /// The run that created the record.
    pub created_run: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewSubscriber {
    pub subscriber_id: String,
    pub customer_id: String,
    pub plan: String,
    pub onu_serial: String,
    pub cpe_serial: String,
    /// The NAS the subscriber's sessions terminate on (`{"ip": …}`).
    pub nas: Value,
    pub enable_ipv6: bool,
    /// Anything else of the provisioning input worth keeping.
    pub details: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Subscriber {
    pub tenant_id: String,
    pub subscriber_id: String,
    pub customer_id: String,
    pub plan: String,
    pub state: SubscriberState,
    pub onu_serial: String,
    pub cpe_serial: String,
    pub nas: Value,
    pub enable_ipv6: bool,
    pub details: Value,
    pub created_run: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub archived_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewProfile {
    pub subscriber_id: String,
    pub plan: String,
    pub download_kbps: i64,
    pub upload_kbps: i64,
    pub service_vlan: Option<i32>,
    pub ipv6: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkProfile {
    pub tenant_id: String,
    pub subscriber_id: String,
    pub plan: String,
    pub download_kbps: i64,
    pub upload_kbps: i64,
    pub service_vlan: Option<i32>,
    pub ipv6: bool,
    pub created_run: String,
    pub created_at: DateTime<Utc>,
    pub archived_at: Option<DateTime<Utc>>,
}

/// Why a subscriber-record operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SubscriberError {
    #[error("subscriber {0:?} already exists (created by run {1})")]
    Exists(String, String),
    #[error("subscriber {0:?} has a network profile already (created by run {1})")]
    ProfileExists(String, String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(#[from] UnknownName),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}
