//! The [`Store`] implementation of [`SqliteStore`]: runs, claims, leases,
//! checkpoints, operator writes, queue promotion and the delegations to
//! the schedule and queue-expiry modules.

use super::*;

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.writer).await?;
        Ok(())
    }

    async fn ready(&self) -> Result<bool> {
        let applied: i64 =
            sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.reader)
                .await?;
        Ok(applied as usize >= MIGRATOR.iter().count())
    }

    async fn put_definition(&self, def: &LoadedDefinition) -> Result<()> {
        sqlx::query(
            "INSERT INTO workflow_definitions (id, name, version, body) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&def.id)
        .bind(&def.definition.name)
        .bind(def.definition.version as i64)
        .bind(def.snapshot.to_string())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn get_definition(&self, id: &str) -> Result<Option<WorkflowDefinition>> {
        let body: Option<String> =
            sqlx::query_scalar("SELECT body FROM workflow_definitions WHERE id = ?1")
                .bind(id)
                .fetch_optional(&self.reader)
                .await?;
        body.map(|b| {
            serde_json::from_str(&b)
                .map_err(|e| StoreError::Corrupt(format!("definition {id}: {e}")))
        })
        .transpose()
    }

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

    async fn get_run(&self, tenant: &TenantId, id: RunId) -> Result<Option<RunRecord>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1 AND tenant_id = ?2"
        )))
        .bind(id.to_string())
        .bind(tenant.as_str())
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    async fn list_runs(&self, tenant: &TenantId, f: &RunFilter) -> Result<Vec<RunRecord>> {
        let cols = RUN_COLUMNS.replace("steps,", "'[]' AS steps,");
        let mut q =
            QueryBuilder::<Sqlite>::new(format!("SELECT {cols} FROM runs WHERE tenant_id = "));
        q.push_bind(tenant.as_str());
        if let Some(w) = &f.workflow_name {
            q.push(" AND workflow_name = ").push_bind(w.clone());
        }
        if !f.states.is_empty() {
            q.push(" AND state IN (");
            let mut sep = q.separated(", ");
            for s in &f.states {
                sep.push_bind(s.as_str());
            }
            q.push(")");
        }
        if let Some(k) = &f.concurrency_key {
            q.push(" AND concurrency_key = ").push_bind(k.clone());
        }
        if let Some(t) = f.created_after {
            q.push(" AND created_at > ").push_bind(micros(t));
        }
        if let Some(t) = f.created_before {
            q.push(" AND created_at < ").push_bind(micros(t));
        }
        if let Some((t, id)) = f.before {
            q.push(" AND (created_at < ")
                .push_bind(micros(t))
                .push(" OR (created_at = ")
                .push_bind(micros(t))
                .push(" AND id < ")
                .push_bind(id.to_string())
                .push("))");
        }
        q.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(f.limit.max(1) as i64);
        let rows = q.build().fetch_all(&self.reader).await?;
        rows.iter().map(run_from_row).collect()
    }

    async fn events(
        &self,
        tenant: &TenantId,
        id: RunId,
        after: u64,
    ) -> Result<Option<Vec<EventRecord>>> {
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM runs WHERE id = ?1 AND tenant_id = ?2")
                .bind(id.to_string())
                .bind(tenant.as_str())
                .fetch_optional(&self.reader)
                .await?;
        if exists.is_none() {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT run_id, seq, at, kind, step, attempt, run_state, message, actor \
             FROM run_events WHERE run_id = ?1 AND seq > ?2 ORDER BY seq",
        )
        .bind(id.to_string())
        .bind(after as i64)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(event_from_row)
            .collect::<Result<_>>()
            .map(Some)
    }

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

    async fn checkpoint(&self, cp: &Checkpoint) -> Result<CheckpointAck> {
        self.checkpoint_many(std::slice::from_ref(cp))
            .await?
            .pop()
            .ok_or_else(|| StoreError::Corrupt("checkpoint returned no answer".into()))
    }

    async fn checkpoint_many(&self, cps: &[Checkpoint]) -> Result<Vec<CheckpointAck>> {
        let mut tx = self.writer.begin().await?;
        let mut acks = Vec::with_capacity(cps.len());
        for cp in cps {
            acks.push(checkpoint_one(&mut tx, cp).await?);
        }
        tx.commit().await?;
        Ok(acks)
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

    async fn count_by_state(&self, tenant: Option<&TenantId>) -> Result<Vec<(RunState, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, count(*) FROM runs WHERE (?1 IS NULL OR tenant_id = ?1) GROUP BY state",
        )
        .bind(tenant.map(TenantId::as_str))
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|(s, n)| {
                s.parse()
                    .map(|st| (st, n as u64))
                    .map_err(|e: crate::run::state::UnknownState| {
                        StoreError::Corrupt(e.to_string())
                    })
            })
            .collect()
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

    async fn expire_queued(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<QueueExpired>> {
        crate::store::queue_expiry::sqlite(&self.writer, now, limit).await
    }

    async fn insert_schedule(&self, s: &crate::schedule::model::Schedule) -> Result<bool> {
        super::schedules::insert_schedule(&self.writer, s).await
    }

    async fn seed_schedule(&self, s: &crate::schedule::model::Schedule) -> Result<bool> {
        super::schedules::seed_schedule(&self.writer, s).await
    }

    async fn get_schedule(
        &self,
        tenant: &TenantId,
        id: crate::schedule::model::ScheduleId,
    ) -> Result<Option<crate::schedule::model::Schedule>> {
        super::schedules::get_schedule(&self.reader, tenant, id).await
    }

    async fn list_schedules(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<crate::schedule::model::Schedule>> {
        super::schedules::list_schedules(&self.reader, tenant).await
    }

    async fn change_schedule(&self, c: &ScheduleChange) -> Result<bool> {
        super::schedules::change_schedule(&self.writer, c).await
    }

    async fn delete_schedule(
        &self,
        tenant: &TenantId,
        id: crate::schedule::model::ScheduleId,
    ) -> Result<bool> {
        super::schedules::delete_schedule(&self.writer, tenant, id).await
    }

    async fn due_schedules(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<crate::schedule::model::Schedule>> {
        super::schedules::due_schedules(&self.reader, now, limit).await
    }

    async fn apply_fires(&self, batch: &FireBatch) -> Result<FireBatchAck> {
        super::schedules::apply_fires(&self.writer, batch).await
    }

    async fn schedule_fires(
        &self,
        tenant: &TenantId,
        id: crate::schedule::model::ScheduleId,
        after: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Option<Vec<crate::schedule::model::FireRecord>>> {
        super::schedules::schedule_fires(&self.reader, tenant, id, after, limit).await
    }
}
