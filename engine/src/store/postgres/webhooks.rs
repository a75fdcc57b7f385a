//! PostgreSQL webhook outbox: the delivery rows a checkpoint or operator
//! write adds in its own transaction, the dispatcher's claim (`FOR UPDATE
//! SKIP LOCKED`, leased on the database's clock) and its record of a try,
//! and the delivery log.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{PgStore, micros};
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
pub(super) async fn insert_deliveries<'a>(
    conn: &mut PgConnection,
    deliveries: impl Iterator<Item = &'a NewDelivery>,
) -> Result<()> {
    let (mut ids, mut tenants, mut runs, mut urls, mut events, mut ats) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for d in deliveries {
        ids.push(d.id);
        tenants.push(d.tenant_id.as_str().to_owned());
        runs.push(d.run_id.0);
        urls.push(d.url.clone());
        events.push(d.event.as_str());
        ats.push(d.occurred_at);
    }
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, tenant_id, run_id, url, event, occurred_at, \
            next_attempt_at) \
         SELECT d.id, d.tenant_id, d.run_id, d.url, d.event, d.at, d.at \
         FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::text[], \
                     $6::timestamptz[]) AS d(id, tenant_id, run_id, url, event, at) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&ids)
    .bind(&tenants)
    .bind(&runs)
    .bind(&urls)
    .bind(&events)
    .bind(&ats)
    .execute(conn)
    .await?;
    Ok(())
}

fn delivery(row: &PgRow) -> Result<Delivery> {
    let event: String = row.try_get("event")?;
    let state: String = row.try_get("state")?;
    Ok(Delivery {
        id: row.try_get("id")?,
        tenant_id: TenantId::new(row.try_get::<String, _>("tenant_id")?),
        run_id: RunId(row.try_get("run_id")?),
        url: row.try_get("url")?,
        event: WebhookEvent::parse(&event)
            .ok_or_else(|| StoreError::Corrupt(format!("webhook event {event:?}")))?,
        occurred_at: row.try_get("occurred_at")?,
        state: DeliveryState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("delivery state {state:?}")))?,
        attempts: row.try_get::<i32, _>("attempts")?.max(0) as u32,
        next_attempt_at: row.try_get("next_attempt_at")?,
        first_failed_at: row.try_get("first_failed_at")?,
        last_error: row.try_get("last_error")?,
        delivered_at: row.try_get("delivered_at")?,
    })
}

#[async_trait]
impl WebhookStore for PgStore {
    async fn claim_deliveries(
        &self,
        token: Uuid,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH c AS (SELECT d.id AS claimed FROM webhook_deliveries d \
                WHERE d.state = 'pending' AND d.next_attempt_at <= $1 \
                  AND (d.lease_expires_at IS NULL OR d.lease_expires_at <= now()) \
                  AND NOT EXISTS (SELECT 1 FROM webhooks_disabled w \
                                  WHERE w.tenant_id = d.tenant_id AND w.url = d.url) \
                ORDER BY d.next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
             UPDATE webhook_deliveries SET lease_token = $3, \
                lease_expires_at = now() + $4 * interval '1 microsecond' \
             FROM c WHERE webhook_deliveries.id = c.claimed RETURNING {COLUMNS}"
        )))
        .bind(now)
        .bind(i64::from(limit))
        .bind(token)
        .bind(micros(lease))
        .fetch_all(&self.pool)
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
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE webhook_deliveries SET state = $3, attempts = attempts + 1, \
                next_attempt_at = $4, delivered_at = $5, \
                first_failed_at = COALESCE(first_failed_at, $6), \
                last_error = COALESCE($7, last_error), \
                lease_token = NULL, lease_expires_at = NULL \
             WHERE id = $1 AND lease_token = $2 AND state = 'pending' \
             RETURNING tenant_id, url",
        )
        .bind(id)
        .bind(token)
        .bind(state)
        .bind(retry_at)
        .bind(delivered_at)
        .bind(failed_at)
        .bind(error)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        if let TryOutcome::GaveUp { at, error } = outcome {
            sqlx::query(
                "INSERT INTO webhooks_disabled (tenant_id, url, disabled_at, reason) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(row.try_get::<String, _>("tenant_id")?)
            .bind(row.try_get::<String, _>("url")?)
            .bind(at)
            .bind(error)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM webhook_deliveries \
             WHERE ($1::text IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR state = $2) \
               AND ($3::uuid IS NULL OR run_id = $3) \
             ORDER BY occurred_at DESC, id DESC LIMIT $4"
        )))
        .bind(filter.tenant.as_ref().map(|t| t.as_str()))
        .bind(filter.state.map(DeliveryState::as_str))
        .bind(filter.run.map(|r| r.0))
        .bind(i64::from(filter.limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery).collect()
    }

    async fn disabled_webhooks(&self) -> Result<Vec<DisabledWebhook>> {
        let rows = sqlx::query(
            "SELECT tenant_id, url, disabled_at, reason FROM webhooks_disabled \
             ORDER BY disabled_at",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DisabledWebhook {
                    tenant_id: TenantId::new(r.try_get::<String, _>("tenant_id")?),
                    url: r.try_get("url")?,
                    disabled_at: r.try_get("disabled_at")?,
                    reason: r.try_get("reason")?,
                })
            })
            .collect()
    }
}
