//! PostgreSQL webhook outbox: the delivery rows a checkpoint or operator
//! write adds in its own transaction, the dispatcher's claim (`FOR UPDATE
//! SKIP LOCKED`, leased on the database's clock) and its record of a try,
//! and the delivery log.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{PgStore, micros};
use crate::store::Result;
use crate::store::sql::webhooks::{self as sql, DeliveryClaim};
use crate::store::webhooks::{Delivery, NewDelivery};

/// Adds outbox rows in the caller's transaction; a row already there (a
/// resent checkpoint) is kept.
pub(in crate::store) async fn insert_deliveries<'a>(
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

#[async_trait]
impl DeliveryClaim for PgStore {
    async fn claim(
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
             FROM c WHERE webhook_deliveries.id = c.claimed RETURNING {}",
            sql::DELIVERY_COLUMNS
        )))
        .bind(now)
        .bind(i64::from(limit))
        .bind(token)
        .bind(micros(lease))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(sql::delivery_from_row).collect()
    }
}
