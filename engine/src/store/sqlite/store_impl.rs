//! The hot path of [`SqliteStore`]: starting runs, operator writes,
//! claims, leases, checkpoints, queue promotion and expiry. The cold path
//! is `store::sql`.

use super::*;
use crate::webhook::Webhooks;

#[async_trait]
impl RunWrites for SqliteStore {
    async fn create_run(&self, new: &NewRun) -> Result<CreateOutcome> {
        let mut tx = self.writer.begin().await?;
        match insert_run(&mut tx, new).await? {
            RunInsert::Created => tx.commit().await?,
            RunInsert::KeyHeld { holder } => {
                tx.rollback().await?;
                return Ok(CreateOutcome::ConcurrencyKeyHeld { holder });
            }
            RunInsert::Found(found) => {
                tx.rollback().await?;
                return Ok(*found);
            }
        }
        let run = self
            .get_run(&new.tenant_id, new.id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("run {} vanished after insert", new.id)))?;
        Ok(CreateOutcome::Created(run))
    }

    async fn operator_write(&self, w: &OperatorWrite) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE runs SET state = ?4, cursor = ?5, context = ?6, steps = ?7, error = ?8, \
                cancel_request = ?9, next_run_at = ?10, finished_at = ?11, updated_at = ?12, \
                last_seq = last_seq + ?13, \
                lease_owner = CASE WHEN ?14 THEN NULL ELSE lease_owner END, \
                lease_token = CASE WHEN ?14 THEN NULL ELSE lease_token END, \
                lease_expires_at = CASE WHEN ?14 THEN NULL ELSE lease_expires_at END \
             WHERE id = ?1 AND tenant_id = ?2 AND last_seq = ?3 \
                AND (NOT ?14 OR lease_expires_at IS NULL OR lease_expires_at <= {DB_NOW}) \
             RETURNING last_seq"
        )))
        .bind(w.run_id.to_string())
        .bind(w.tenant_id.as_str())
        .bind(w.expected_seq as i64)
        .bind(w.state.as_str())
        .bind(w.cursor as i64)
        .bind(w.context.to_string())
        .bind(steps_encode(&w.steps))
        .bind(&w.error)
        .bind(w.cancel_request.map(CancelRequest::as_str))
        .bind(opt_micros(w.next_run_at))
        .bind(opt_micros(w.finished_at))
        .bind(micros(w.now))
        .bind(w.events.len() as i64)
        .bind(w.require_free_lease)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(false);
        };
        let last_seq: i64 = row.try_get("last_seq")?;
        insert_events(&mut tx, w.run_id, last_seq, &w.events).await?;
        super::webhooks::insert_deliveries(&mut tx, &w.deliveries).await?;
        if w.release_concurrency_key {
            release_key(&mut tx, w.run_id, w.now).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn expire_queued(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        webhooks: &Webhooks,
    ) -> Result<Vec<QueueExpired>> {
        crate::store::queue_expiry::sqlite(&self.writer, now, limit, webhooks).await
    }
}

#[async_trait]
impl LeaseStore for SqliteStore {
    async fn claim(
        &self,
        owner: &str,
        token: LeaseToken,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<RunRecord>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "UPDATE runs SET lease_owner = ?3, lease_token = ?4, lease_expires_at = {DB_NOW} + ?5, \
                next_run_at = {DB_NOW} + ?5 \
             WHERE id IN (SELECT id FROM runs WHERE next_run_at <= MAX(?1, {DB_NOW}) \
                 AND CASE WHEN lease_expires_at IS NULL THEN next_run_at <= ?1 \
                     ELSE lease_expires_at <= {DB_NOW} END \
                 ORDER BY next_run_at LIMIT ?2) \
             RETURNING {RUN_COLUMNS}"
        )))
        .bind(micros(now))
        .bind(limit as i64)
        .bind(owner)
        .bind(token.to_string())
        .bind(duration_micros(lease))
        .fetch_all(&self.writer)
        .await?;
        let (runs, parked) = claimed::decode_each(&rows, token, run_from_row, |r| {
            uuid_col(r, "id").ok().map(RunId)
        });
        if !parked.is_empty()
            && let Err(e) = self.park(&parked, claimed::PARK_UNDECODABLE).await
        {
            tracing::warn!(error = %e, "parking undecodable runs failed; their leases will expire");
        }
        Ok(runs)
    }

    async fn renew_leases(
        &self,
        leases: &[(RunId, LeaseToken)],
        lease: Duration,
    ) -> Result<Vec<RunId>> {
        let mut lost = Vec::new();
        let mut tx = self.writer.begin().await?;
        for (id, token) in leases {
            let n = sqlx::query(AssertSqlSafe(format!(
                "UPDATE runs SET lease_expires_at = {DB_NOW} + ?3, next_run_at = {DB_NOW} + ?3 \
                 WHERE id = ?1 AND lease_token = ?2 AND lease_expires_at > {DB_NOW}"
            )))
            .bind(id.to_string())
            .bind(token.to_string())
            .bind(duration_micros(lease))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 0 {
                lost.push(*id);
            }
        }
        tx.commit().await?;
        Ok(lost)
    }

    async fn release_leases(
        &self,
        leases: &[(RunId, LeaseToken)],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        for (id, token) in leases {
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE runs SET lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, \
                 next_run_at = MIN(?3, {DB_NOW}) WHERE id = ?1 AND lease_token = ?2"
            )))
            .bind(id.to_string())
            .bind(token.to_string())
            .bind(micros(now))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn promote_queued(&self, now: DateTime<Utc>) -> Result<u64> {
        let mut tx = self.writer.begin().await?;
        let free: Vec<(String, String)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT DISTINCT r.tenant_id, r.concurrency_key FROM runs r \
             WHERE {} AND r.concurrency_key IS NOT NULL \
               AND NOT EXISTS (SELECT 1 FROM concurrency_locks l \
                               WHERE l.tenant_id = r.tenant_id AND l.key = r.concurrency_key)",
            sql_terms::queued("r")
        )))
        .fetch_all(&mut *tx)
        .await?;
        let mut promoted = 0;
        for (tenant, key) in &free {
            promoted += u64::from(hand_over(&mut tx, tenant, key, now).await?);
        }
        tx.commit().await?;
        Ok(promoted)
    }
}

#[async_trait]
impl CheckpointStore for SqliteStore {
    async fn checkpoint_many(&self, cps: &[Checkpoint]) -> Result<Vec<CheckpointAck>> {
        let mut tx = self.writer.begin().await?;
        let mut acks = Vec::with_capacity(cps.len());
        for cp in cps {
            acks.push(checkpoint_one(&mut tx, cp).await?);
        }
        tx.commit().await?;
        Ok(acks)
    }
}
