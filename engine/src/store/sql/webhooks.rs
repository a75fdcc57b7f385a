//! The webhook outbox on both backends: the [`WebhookStore`] of every
//! [`SqlBackend`] that can claim deliveries ([`DeliveryClaim`]): recording
//! a try (and disabling a webhook that gave up), the delivery log, the
//! disabled webhooks, and reading a delivery row. The outbox insert
//! (inside a checkpoint) and the claim stay in each backend.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Db, Dialect, ReadRow, SqlBackend, with_db};
use crate::ids::{RunId, TenantId};
use crate::store::webhooks::{
    Delivery, DeliveryFilter, DeliveryState, DisabledWebhook, Reenable, Reenabled, TryOutcome,
    WebhookStore,
};
use crate::store::{Result, StoreError};
use crate::webhook::WebhookEvent;

/// The columns [`delivery_from_row`] reads.
pub(crate) const DELIVERY_COLUMNS: &str = "id, tenant_id, run_id, url, event, occurred_at, \
    state, attempts, next_attempt_at, first_failed_at, last_error, delivered_at";

pub(crate) fn delivery_from_row(row: &impl ReadRow) -> Result<Delivery> {
    let event = row.text("event")?;
    let state = row.text("state")?;
    Ok(Delivery {
        id: row.uuid("id")?,
        tenant_id: TenantId::new(row.text("tenant_id")?),
        run_id: RunId(row.uuid("run_id")?),
        url: row.text("url")?,
        event: WebhookEvent::parse(&event)
            .ok_or_else(|| StoreError::Corrupt(format!("webhook event {event:?}")))?,
        occurred_at: row.time("occurred_at")?,
        state: DeliveryState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("delivery state {state:?}")))?,
        attempts: row.int("attempts")?,
        next_attempt_at: row.opt_time("next_attempt_at")?,
        first_failed_at: row.opt_time("first_failed_at")?,
        last_error: row.opt_text("last_error")?,
        delivered_at: row.opt_time("delivered_at")?,
    })
}

/// Records a try of a delivery leased to `token` and gives the lease back;
/// giving up also disables its webhook, in the same transaction. False
/// when the lease was lost.
async fn record_try(db: Db<'_>, id: Uuid, token: Uuid, outcome: &TryOutcome) -> Result<bool> {
    let (state, delivered_at, failed_at, error, retry_at) = match outcome {
        TryOutcome::Delivered { at } => ("delivered", Some(*at), None, None, None),
        TryOutcome::Failed {
            at,
            error,
            retry_at,
        } => ("pending", None, Some(*at), Some(error), Some(*retry_at)),
        TryOutcome::GaveUp { at, error } => ("failed", None, Some(*at), Some(error), None),
    };
    let update = "UPDATE webhook_deliveries SET state = $3, attempts = attempts + 1, \
            next_attempt_at = $4, delivered_at = $5, \
            first_failed_at = COALESCE(first_failed_at, $6), \
            last_error = COALESCE($7, last_error), \
            lease_token = NULL, lease_expires_at = NULL \
         WHERE id = $1 AND lease_token = $2 AND state = 'pending' \
         RETURNING tenant_id, url";
    let disable = "INSERT INTO webhooks_disabled (tenant_id, url, disabled_at, reason) \
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
    with_db!(db, pool, D => {
        let mut tx = pool.begin().await?;
        let row = sqlx::query(update)
            .bind(D::id(id))
            .bind(D::id(token))
            .bind(state)
            .bind(retry_at.map(D::ts))
            .bind(delivered_at.map(D::ts))
            .bind(failed_at.map(D::ts))
            .bind(error)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        if let TryOutcome::GaveUp { at, error } = outcome {
            sqlx::query(disable)
                .bind(row.text("tenant_id")?)
                .bind(row.text("url")?)
                .bind(D::ts(*at))
                .bind(error)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    })
}

/// The delivery log, newest first.
async fn deliveries(db: Db<'_>, filter: &DeliveryFilter) -> Result<Vec<Delivery>> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
         WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR state = $2) \
           AND ($3 IS NULL OR run_id = $3) \
         ORDER BY occurred_at DESC, id DESC LIMIT $4"
    );
    with_db!(db, pool, D => {
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(filter.tenant.as_ref().map(|t| t.as_str().to_owned()))
            .bind(filter.state.map(DeliveryState::as_str))
            .bind(filter.run.map(|r| D::id(r.0)))
            .bind(i64::from(filter.limit))
            .fetch_all(pool)
            .await?;
        rows.iter().map(delivery_from_row).collect()
    })
}

/// Webhooks disabled after failing for 24 h, oldest first.
async fn disabled_webhooks(db: Db<'_>) -> Result<Vec<DisabledWebhook>> {
    let sql = "SELECT tenant_id, url, disabled_at, reason FROM webhooks_disabled \
               ORDER BY disabled_at";
    with_db!(db, pool, _D => {
        let rows = sqlx::query(sql).fetch_all(pool).await?;
        rows.iter()
            .map(|r| {
                Ok(DisabledWebhook {
                    tenant_id: TenantId::new(r.text("tenant_id")?),
                    url: r.text("url")?,
                    disabled_at: r.time("disabled_at")?,
                    reason: r.text("reason")?,
                })
            })
            .collect()
    })
}

/// Enables the disabled webhooks `r` names, queues their failed
/// deliveries again and records who did it, in one transaction.
async fn enable_webhooks(db: Db<'_>, r: &Reenable) -> Result<Vec<Reenabled>> {
    let delete = "DELETE FROM webhooks_disabled WHERE url = $1 AND ($2 IS NULL OR tenant_id = $2) \
                  RETURNING tenant_id, url, disabled_at, reason";
    let requeue = "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = $3, \
                      first_failed_at = NULL, lease_token = NULL, lease_expires_at = NULL \
                   WHERE tenant_id = $1 AND url = $2 AND state = 'failed'";
    let record = "INSERT INTO webhook_reenables (tenant_id, url, disabled_at, disabled_reason, \
                      enabled_at, enabled_by, reason, requeued) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
    with_db!(db, pool, D => {
        let mut tx = pool.begin().await?;
        let rows = sqlx::query(delete)
            .bind(&r.url)
            .bind(r.tenant.as_ref().map(|t| t.as_str().to_owned()))
            .fetch_all(&mut *tx)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let webhook = DisabledWebhook {
                tenant_id: TenantId::new(row.text("tenant_id")?),
                url: row.text("url")?,
                disabled_at: row.time("disabled_at")?,
                reason: row.text("reason")?,
            };
            let requeued = sqlx::query(requeue)
                .bind(webhook.tenant_id.as_str())
                .bind(&webhook.url)
                .bind(D::ts(r.at))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query(record)
                .bind(webhook.tenant_id.as_str())
                .bind(&webhook.url)
                .bind(D::ts(webhook.disabled_at))
                .bind(&webhook.reason)
                .bind(D::ts(r.at))
                .bind(&r.actor)
                .bind(&r.reason)
                .bind(i64::try_from(requeued).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await?;
            out.push(Reenabled { webhook, requeued });
        }
        tx.commit().await?;
        Ok(out)
    })
}

/// The backend's own claim of due deliveries (its locking and its clock),
/// see [`WebhookStore::claim_deliveries`].
#[async_trait]
pub(crate) trait DeliveryClaim: Send + Sync + 'static {
    async fn claim(
        &self,
        token: Uuid,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<Delivery>>;
}

#[async_trait]
impl<T: SqlBackend + DeliveryClaim> WebhookStore for T {
    async fn claim_deliveries(
        &self,
        token: Uuid,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        self.claim(token, now, lease, limit).await
    }

    async fn record_try(&self, id: Uuid, token: Uuid, outcome: &TryOutcome) -> Result<bool> {
        record_try(self.writes(), id, token, outcome).await
    }

    async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>> {
        deliveries(self.reads(), filter).await
    }

    async fn disabled_webhooks(&self) -> Result<Vec<DisabledWebhook>> {
        disabled_webhooks(self.reads()).await
    }

    async fn enable_webhooks(&self, r: &Reenable) -> Result<Vec<Reenabled>> {
        enable_webhooks(self.writes(), r).await
    }
}
