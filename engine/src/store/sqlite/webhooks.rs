//! SQLite webhook outbox: the delivery rows a checkpoint or operator write
//! adds in its own transaction, the dispatcher's claim (leased on the
//! database's clock; one writer, so no row is claimed twice) and its record
//! of a try, and the delivery log.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, SqliteConnection};
use uuid::Uuid;

use super::{DB_NOW, SqliteStore, duration_micros, micros};
use crate::store::Result;
use crate::store::sql::webhooks::{self as sql, DeliveryClaim};
use crate::store::webhooks::{Delivery, NewDelivery};

/// Adds outbox rows in the caller's transaction; a row already there (a
/// resent checkpoint) is kept.
pub(in crate::store) async fn insert_deliveries(
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

#[async_trait]
impl DeliveryClaim for SqliteStore {
    async fn claim(
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
             RETURNING {columns}",
            columns = sql::DELIVERY_COLUMNS
        )))
        .bind(micros(now))
        .bind(i64::from(limit))
        .bind(token.to_string())
        .bind(duration_micros(lease))
        .fetch_all(&self.writer)
        .await?;
        rows.iter().map(sql::delivery_from_row).collect()
    }
}
