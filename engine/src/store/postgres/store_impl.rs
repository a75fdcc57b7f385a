//! The hot path of [`PgStore`]: starting runs, operator writes, claims,
//! leases, checkpoints, queue promotion and expiry, with the SQL it
//! builds. The cold path is `store::sql`.

use super::*;
use crate::webhook::Webhooks;

#[async_trait]
impl RunWrites for PgStore {
    async fn create_run(&self, new: &NewRun) -> Result<CreateOutcome> {
        if new.concurrency.is_none() {
            // Without a concurrency key the insert is one statement: atomic
            // on its own, one round trip, and the record is known already.
            let inserted = {
                let mut conn = self.held_starts.take(&self.pool).await?;
                let inserted = insert_run(&mut conn, new).await?;
                self.held_starts.keep(conn);
                inserted
            }; // the connection is kept or goes back before any further query
            return match inserted {
                RunInsert::Created => Ok(CreateOutcome::Created(new.record())),
                RunInsert::Duplicate | RunInsert::KeyHeld { .. } => Ok(self
                    .find_idempotent(new)
                    .await?
                    .unwrap_or(CreateOutcome::IdempotencyConflict)),
            };
        }
        let mut tx = self.pool.begin().await?;
        match insert_run(&mut tx, new).await? {
            RunInsert::Created => tx.commit().await?,
            RunInsert::KeyHeld { key } => {
                tx.rollback().await?;
                if let Some(existing) = self.find_idempotent(new).await? {
                    return Ok(existing);
                }
                return Ok(CreateOutcome::ConcurrencyKeyHeld {
                    holder: sql::key_holder(self.reads(), &new.tenant_id, &key).await?,
                });
            }
            RunInsert::Duplicate => {
                tx.rollback().await?;
                return Ok(self
                    .find_idempotent(new)
                    .await?
                    .unwrap_or(CreateOutcome::IdempotencyConflict));
            }
        }
        let run = self
            .get_run(&new.tenant_id, new.id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("run {} vanished after insert", new.id)))?;
        Ok(CreateOutcome::Created(run))
    }

    async fn operator_write(&self, w: &OperatorWrite) -> Result<bool> {
        let ev = EventArrays::new(&w.events);
        let sql = format!(
            "WITH r AS (UPDATE runs SET state = $4, cursor = $5, context = $6, steps = $7, error = $8, \
                cancel_request = $9, next_run_at = $10, finished_at = $11, updated_at = $12, \
                last_seq = last_seq + $13, \
                lease_owner = CASE WHEN $14 THEN NULL ELSE lease_owner END, \
                lease_token = CASE WHEN $14 THEN NULL ELSE lease_token END, \
                lease_expires_at = CASE WHEN $14 THEN NULL ELSE lease_expires_at END \
              WHERE id = $1 AND tenant_id = $2 AND last_seq = $3 \
                AND (NOT $14 OR lease_expires_at IS NULL OR lease_expires_at <= now()) \
              RETURNING id, last_seq) {}",
            insert_events_sql(15)
        );
        let mut tx = self.pool.begin().await?;
        let q = sqlx::query(AssertSqlSafe(sql))
            .bind(w.run_id.0)
            .bind(w.tenant_id.as_str())
            .bind(w.expected_seq as i64)
            .bind(w.state.as_str())
            .bind(w.cursor as i32)
            .bind(&w.context)
            .bind(steps_encode(&w.steps))
            .bind(&w.error)
            .bind(w.cancel_request.map(CancelRequest::as_str))
            .bind(w.next_run_at)
            .bind(w.finished_at)
            .bind(w.now)
            .bind(w.events.len() as i64)
            .bind(w.require_free_lease);
        let applied = bind_events(q, &ev).execute(&mut *tx).await?.rows_affected() > 0;
        if applied && w.release_concurrency_key {
            release_keys(&mut tx, &[w.run_id.0], w.now).await?;
        }
        if applied {
            super::webhooks::insert_deliveries(&mut tx, w.deliveries.iter()).await?;
        }
        tx.commit().await?;
        Ok(applied)
    }

    async fn expire_queued(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        webhooks: &Webhooks,
    ) -> Result<Vec<QueueExpired>> {
        crate::store::queue_expiry::postgres(&self.pool, now, limit, webhooks).await
    }
}

#[async_trait]
impl LeaseStore for PgStore {
    async fn claim(
        &self,
        owner: &str,
        token: LeaseToken,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<RunRecord>> {
        let rows = sqlx::query(AssertSqlSafe(claim_sql("")))
            .bind(now)
            .bind(limit as i64)
            .bind(owner)
            .bind(token.0)
            .bind(micros(lease))
            .fetch_all(&self.hot)
            .await?;
        let (runs, parked) = claimed::decode_each(&rows, token, run_from_row, |r| {
            r.try_get("id").ok().map(RunId)
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
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = leases.iter().map(|l| l.0.0).collect();
        let tokens: Vec<Uuid> = leases.iter().map(|l| l.1.0).collect();
        let kept: Vec<Uuid> = sqlx::query_scalar(AssertSqlSafe(format!(
            "WITH k AS ({}) \
             UPDATE runs SET lease_expires_at = now() + $3 * interval '1 microsecond', \
                next_run_at = now() + $3 * interval '1 microsecond' \
             FROM unnest($1::uuid[], $2::uuid[]) AS l(id, token), k \
             WHERE runs.id = l.id AND k.id = l.id AND runs.lease_token = l.token \
                AND runs.lease_expires_at > now() \
             RETURNING runs.id",
            super::lock_runs_in_id_order("$1")
        )))
        .bind(&ids)
        .bind(&tokens)
        .bind(micros(lease))
        .fetch_all(&self.hot)
        .await?;
        let kept: std::collections::HashSet<Uuid> = kept.into_iter().collect();
        Ok(ids
            .into_iter()
            .filter(|id| !kept.contains(id))
            .map(RunId)
            .collect())
    }

    async fn release_leases(
        &self,
        leases: &[(RunId, LeaseToken)],
        now: DateTime<Utc>,
    ) -> Result<()> {
        if leases.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = leases.iter().map(|l| l.0.0).collect();
        let tokens: Vec<Uuid> = leases.iter().map(|l| l.1.0).collect();
        sqlx::query(AssertSqlSafe(format!(
            "WITH k AS ({}) \
             UPDATE runs SET lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, \
                next_run_at = LEAST($3, now()) \
             FROM unnest($1::uuid[], $2::uuid[]) AS l(id, token), k \
             WHERE runs.id = l.id AND k.id = l.id AND runs.lease_token = l.token",
            super::lock_runs_in_id_order("$1")
        )))
        .bind(&ids)
        .bind(&tokens)
        .bind(now)
        .execute(&self.hot)
        .await?;
        Ok(())
    }

    async fn notify_work(&self) -> Result<()> {
        sqlx::query("SELECT pg_notify('sagaflow_work', '')")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn listen_for_work(
        &self,
        wake: std::sync::Arc<tokio::sync::Notify>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut backoff = Duration::from_millis(100);
        while !stop.is_cancelled() {
            let mut listener = match sqlx::postgres::PgListener::connect_with(&self.pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(error = %e, "LISTEN connection failed; polling meanwhile");
                    tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(backoff) => {} }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            if listener.listen("sagaflow_work").await.is_err() {
                continue;
            }
            backoff = Duration::from_millis(100);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    n = listener.try_recv() => match n {
                        Ok(Some(_)) => wake.notify_one(),
                        // The connection dropped: wake once (we may have
                        // missed something) and reconnect.
                        Ok(None) | Err(_) => { wake.notify_one(); break; }
                    }
                }
            }
        }
    }

    async fn promote_queued(&self, now: DateTime<Utc>) -> Result<u64> {
        let n = sqlx::query(AssertSqlSafe(format!(
            "WITH q AS (SELECT DISTINCT ON (tenant_id, concurrency_key) id, tenant_id, concurrency_key \
                FROM runs WHERE {} AND concurrency_key IS NOT NULL \
                  AND (queue_expires_at IS NULL OR queue_expires_at > $1) \
                ORDER BY tenant_id, concurrency_key, created_at, id), \
             ins AS (INSERT INTO concurrency_locks (tenant_id, key, run_id) \
                SELECT tenant_id, concurrency_key, id FROM q ON CONFLICT DO NOTHING RETURNING run_id) \
             UPDATE runs SET next_run_at = $1 FROM ins WHERE runs.id = ins.run_id",
            sql_terms::queued("")
        )))
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n)
    }
}

#[async_trait]
impl CheckpointStore for PgStore {
    async fn checkpoint_many(&self, cps: &[Checkpoint]) -> Result<Vec<CheckpointAck>> {
        let in_tx = cps
            .iter()
            .any(|c| c.release_concurrency_key || c.take_signal.is_some());
        let delivering = cps.iter().any(|c| !c.deliveries.is_empty());
        if !in_tx && !delivering {
            // The common case: one statement, one round trip, one commit,
            // on a connection kept from the batch before.
            let mut conn = self.held.take(&self.hot).await?;
            let acks = super::checkpoint::checkpoint_batch(&mut conn, cps).await?;
            self.held.keep(conn);
            return Ok(acks);
        }
        let mut tx = self.hot.begin().await?;
        let acks = super::checkpoint::checkpoint_batch(&mut tx, cps).await?;
        let applied: Vec<Uuid> = cps
            .iter()
            .zip(&acks)
            .filter(|(c, a)| {
                c.release_concurrency_key && matches!(a, CheckpointAck::Applied { .. })
            })
            .map(|(c, _)| c.run_id.0)
            .collect();
        if !applied.is_empty() {
            release_keys(&mut tx, &applied, cps[0].now).await?;
        }
        let taken: Vec<&SignalTaken> = cps
            .iter()
            .zip(&acks)
            .filter(|(_, a)| matches!(a, CheckpointAck::Applied { .. }))
            .filter_map(|(c, _)| c.take_signal.as_ref())
            .collect();
        crate::store::sql::take_signals((&mut *tx).into(), &taken, cps[0].now).await?;
        if delivering {
            let written = cps
                .iter()
                .zip(&acks)
                .filter(|(_, a)| matches!(a, CheckpointAck::Applied { .. }))
                .flat_map(|(c, _)| &c.deliveries);
            super::webhooks::insert_deliveries(&mut tx, written).await?;
        }
        tx.commit().await?;
        Ok(acks)
    }
}

/// The claim statement: due runs whose lease is free, oldest first, locked
/// with `SKIP LOCKED` and leased in the same statement. It leaves
/// `next_run_at` as it was, so it changes no indexed column and the update
/// is HOT: a leased run stays in `runs_due`, skipped by the `CASE` while its
/// lease lasts (the renewal moves it past the lease's end, so runs on long
/// steps leave the due part of the index).
pub(super) fn claim_sql(prefix: &str) -> String {
    format!(
        "{prefix}WITH c AS (SELECT id FROM runs WHERE next_run_at <= GREATEST($1, now()) \
             AND CASE WHEN lease_expires_at IS NULL THEN next_run_at <= $1 \
                 ELSE lease_expires_at <= now() END \
           ORDER BY next_run_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
         UPDATE runs SET lease_owner = $3, lease_token = $4, \
            lease_expires_at = now() + $5 * interval '1 microsecond' \
         FROM c WHERE runs.id = c.id RETURNING {}",
        RUN_COLUMNS
            .split(", ")
            .map(|c| format!("runs.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}
