//! The webhook outbox as the store sees it: a delivery to write beside the
//! checkpoint (or operator write) that caused it, a stored delivery, the
//! outcome of a try, the delivery log's filter, and [`WebhookStore`], the
//! dispatcher's and the delivery log's view of the database.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Result;
use crate::ids::{RunId, TenantId};
use crate::webhook::WebhookEvent;

/// A delivery to record (the outbox row), written in the same transaction
/// as the events that caused it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    /// The delivery id receivers deduplicate on; the same on every try.
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub run_id: RunId,
    /// The webhook's URL (with the tenant, what names the webhook).
    pub url: String,
    pub event: WebhookEvent,
    pub occurred_at: DateTime<Utc>,
}

impl NewDelivery {
    pub fn new(
        tenant: &TenantId,
        run: RunId,
        url: &str,
        event: WebhookEvent,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            tenant_id: tenant.clone(),
            run_id: run,
            url: url.to_owned(),
            event,
            occurred_at: at,
        }
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Not acknowledged yet: due at `next_attempt_at`.
    Pending,
    /// A receiver answered 2xx.
    Delivered,
    /// Failed for 24 h: given up, its webhook disabled.
    Failed,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 3] = [
        DeliveryState::Pending,
        DeliveryState::Delivered,
        DeliveryState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// A stored delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub run_id: RunId,
    pub url: String,
    pub event: WebhookEvent,
    pub occurred_at: DateTime<Utc>,
    pub state: DeliveryState,
    /// Tries made so far.
    pub attempts: u32,
    /// When it is tried (again); none once it is no longer pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub first_failed_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// How a try ended, written by the dispatcher holding the delivery's lease.
#[derive(Debug, Clone, PartialEq)]
pub enum TryOutcome {
    Delivered {
        at: DateTime<Utc>,
    },
    /// Failed; tried again at `retry_at`.
    Failed {
        at: DateTime<Utc>,
        error: String,
        retry_at: DateTime<Utc>,
    },
    /// Failed for 24 h: the delivery fails and its webhook is disabled.
    GaveUp {
        at: DateTime<Utc>,
        error: String,
    },
}

/// A webhook disabled after failing for 24 h.
#[derive(Debug, Clone, PartialEq)]
pub struct DisabledWebhook {
    pub tenant_id: TenantId,
    pub url: String,
    pub disabled_at: DateTime<Utc>,
    pub reason: String,
}

/// An operator enabling disabled webhooks again.
#[derive(Debug, Clone, PartialEq)]
pub struct Reenable {
    /// The webhook's tenant; none: every tenant's webhook at `url`.
    pub tenant: Option<TenantId>,
    pub url: String,
    pub at: DateTime<Utc>,
    /// Who enabled it (kept with the reason).
    pub actor: String,
    pub reason: String,
}

/// A webhook enabled again, and how many of its failed deliveries were
/// queued again.
#[derive(Debug, Clone, PartialEq)]
pub struct Reenabled {
    pub webhook: DisabledWebhook,
    pub requeued: u64,
}

/// Filters of the delivery log; every one optional.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub tenant: Option<TenantId>,
    pub state: Option<DeliveryState>,
    pub run: Option<RunId>,
    pub limit: u32,
}

/// The outbox: claiming due deliveries under a lease, recording tries, the
/// delivery log and the disabled webhooks.
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Leases up to `limit` pending deliveries due at `now` (the engine's
    /// clock) whose webhook is not disabled and whose lease is free or
    /// expired (by the database's clock), to `token` for `lease`.
    async fn claim_deliveries(
        &self,
        token: Uuid,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<Delivery>>;

    /// Records a try of a delivery still leased to `token` (and gives the
    /// lease back); false when the lease was lost. Giving up also disables
    /// the webhook, in the same transaction.
    async fn record_try(&self, id: Uuid, token: Uuid, outcome: &TryOutcome) -> Result<bool>;

    /// The delivery log, newest first.
    async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>>;

    /// Webhooks disabled after failing for 24 h.
    async fn disabled_webhooks(&self) -> Result<Vec<DisabledWebhook>>;

    /// Enables the disabled webhooks `r` names: their deliveries that gave
    /// up are pending again (due at once, with a new 24 h of tries, the
    /// same delivery ids), and the operator's action is recorded, all in
    /// one transaction. Empty when none of them was disabled.
    async fn enable_webhooks(&self, r: &Reenable) -> Result<Vec<Reenabled>>;
}
