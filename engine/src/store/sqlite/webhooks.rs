//! SQLite webhook outbox: the delivery rows a checkpoint or operator write
//! adds in its own transaction, the dispatcher's claim (leased on the
//! database's clock; one writer, so no row is claimed twice) and its record
//! of a try, and the delivery log.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Row, SqliteConnection};
use uuid::Uuid;

use super::{DB_NOW, SqliteStore, duration_micros, from_micros, micros, opt_from_micros, uuid_col};
use crate::ids::{RunId, TenantId};
use crate::store::webhooks::{
    Delivery, DeliveryFilter, DeliveryState, DisabledWebhook, NewDelivery, TryOutcome, WebhookStore,
};
use crate::store::{Result, StoreError};
use crate::webhook::WebhookEvent;

const COLUMNS: &str = "id, tenant_id, run_id, url, event, occurred_at, state, attempts, \
    next_attempt_at, first_failed_at, last_error, delivered_at";

/// Adds outbox rows in the caller's transaction; a row already there (a
/// resent checkpoint) is kept.
pub(super) async fn insert_deliveries(
    conn: &mut SqliteConnection,
    deliveries: &[NewDelivery],
) -> Result<()> {
    for d in deliveries {
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, tenant_id, run_id, url, event, occurred_at, \
                next_attempt_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) ON CONFLICT (id) DO NOTHING",
        )
        .bind(d.id.to_string())
        .bind(d.tenant_id.as_str())
        .bind(d.run_id.to_string())
        .bind(&d.url)
        .bind(d.event.as_str())
        .bind(micros(d.occurred_at))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

fn delivery(row: &SqliteRow) -> Result<Delivery> {
    let event: String = row.try_get("event")?;
    let state: String = row.try_get("state")?;
    Ok(Delivery {
        id: uuid_col(row, "id")?,
        tenant_id: TenantId::new(row.try_get::<String, _>("tenant_id")?),
        run_id: RunId(uuid_col(row, "run_id")?),
        url: row.try_get("url")?,
        event: WebhookEvent::parse(&event)
            .ok_or_else(|| StoreError::Corrupt(format!("webhook event {event:?}")))?,
        occurred_at: from_micros(row.try_get("occurred_at")?)?,
        state: DeliveryState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("delivery state {state:?}")))?,
        attempts: row.try_get::<i64, _>("attempts")?.max(0) as u32,
        next_attempt_at: opt_from_micros(row.try_get("next_attempt_at")?)?,
        first_failed_at: opt_from_micros(row.try_get("first_failed_at")?)?,
        last_error: row.try_get("last_error")?,
        delivered_at: opt_from_micros(row.try_get("delivered_at")?)?,
    })
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn claim_deliveries(
        &self,
        token: Uuid,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "UPDATE webhook_deliveries SET lease_token = ?3, lease_expires_at = {DB_NOW} + ?4 \
             WHERE id IN (SELECT d.id FROM webhook_deliveries d \
                WHERE d.state = 'pending' AND d.next_attempt_at <= ?1 \
                  AND (d.lease_expires_at IS NULL OR d.lease_expires_at <= {DB_NOW}) \
                  AND NOT EXISTS (SELECT 1 FROM webhooks_disabled w \
                                  WHERE w.tenant_id = d.tenant_id AND w.url = d.url) \
                ORDER BY d.next_attempt_at LIMIT ?2) \
             RETURNING {COLUMNS}"
        )))
        .bind(micros(now))
        .bind(i64::from(limit))
        .bind(token.to_string())
        .bind(duration_micros(lease))
        .fetch_all(&self.writer)
        .await?;
        rows.iter().map(delivery).collect()
    }

    async fn record_try(&self, id: Uuid, token: Uuid, outcome: &TryOutcome) -> Result<bool> {
        let (state, delivered_at, failed_at, error, retry_at) = match outcome {
            TryOutcome::Delivered { at } => ("delivered", Some(*at), None, None, None),
            TryOutcome::Failed {
                at,
                error,
                retry_at,
            } => ("pending", None, Some(*at), Some(error), Some(*retry_at)),
            TryOutcome::GaveUp { at, error } => ("failed", None, Some(*at), Some(error), None),
        };
        let mut tx = self.writer.begin().await?;
        let row = sqlx::query(
            "UPDATE webhook_deliveries SET state = ?3, attempts = attempts + 1, \
                next_attempt_at = ?4, delivered_at = ?5, \
                first_failed_at = COALESCE(first_failed_at, ?6), \
                last_error = COALESCE(?7, last_error), \
                lease_token = NULL, lease_expires_at = NULL \
             WHERE id = ?1 AND lease_token = ?2 AND state = 'pending' \
             RETURNING tenant_id, url",
        )
        .bind(id.to_string())
        .bind(token.to_string())
        .bind(state)
        .bind(retry_at.map(micros))
        .bind(delivered_at.map(micros))
        .bind(failed_at.map(micros))
        .bind(error)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        if let TryOutcome::GaveUp { at, error } = outcome {
            sqlx::query(
                "INSERT INTO webhooks_disabled (tenant_id, url, disabled_at, reason) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
            )
            .bind(row.try_get::<String, _>("tenant_id")?)
            .bind(row.try_get::<String, _>("url")?)
            .bind(micros(*at))
            .bind(error)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM webhook_deliveries \
             WHERE (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR state = ?2) \
               AND (?3 IS NULL OR run_id = ?3) \
             ORDER BY occurred_at DESC, id DESC LIMIT ?4"
        )))
        .bind(filter.tenant.as_ref().map(|t| t.as_str()))
        .bind(filter.state.map(DeliveryState::as_str))
        .bind(filter.run.map(|r| r.to_string()))
        .bind(i64::from(filter.limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(delivery).collect()
    }

    async fn disabled_webhooks(&self) -> Result<Vec<DisabledWebhook>> {
        let rows = sqlx::query(
            "SELECT tenant_id, url, disabled_at, reason FROM webhooks_disabled \
             ORDER BY disabled_at",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DisabledWebhook {
                    tenant_id: TenantId::new(r.try_get::<String, _>("tenant_id")?),
                    url: r.try_get("url")?,
                    disabled_at: from_micros(r.try_get("disabled_at")?)?,
                    reason: r.try_get("reason")?,
                })
            })
            .collect()
    }
}
