//! The SQLite backend: the embedded default for `sagaflow dev` and quick
//! starts. One process, one file. Writes go through a single connection
//! (SQLite has one writer anyway), reads through a small pool, in WAL mode.
//! Timestamps are stored as INTEGER microseconds, JSON as TEXT.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, SqlitePool};

use super::*;
use crate::definition::{ConcurrencyPolicy, LoadedDefinition, WorkflowDefinition};
use crate::ids::{LeaseToken, RunId, TenantId};
use crate::run::state::RunState;
use sqlx::AssertSqlSafe;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(super) writer: SqlitePool,
    pub(super) reader: SqlitePool,
}

const RUN_COLUMNS: &str = "id, tenant_id, workflow_name, workflow_version, definition_id, state, \
    input, context, steps, cursor, error, idempotency_key, concurrency_key, schedule_id, trace_id, \
    traceparent, cancel_request, last_seq, next_run_at, lease_owner, lease_expires_at, created_at, \
    updated_at, finished_at";

/// The database's clock, in the microseconds timestamps are stored in.
/// Leases are set and compared with it, never with an engine's clock.
pub(super) const DB_NOW: &str =
    "CAST(ROUND((julianday('now') - 2440587.5) * 86400000000.0) AS INTEGER)";

fn duration_micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

pub(super) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn opt_micros(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(micros)
}

pub(super) fn from_micros(v: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(v).ok_or_else(|| StoreError::Corrupt(format!("timestamp {v}")))
}

pub(super) fn opt_from_micros(v: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    v.map(from_micros).transpose()
}

pub(super) fn json(text: &str, what: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub(super) fn uuid_col(row: &SqliteRow, col: &str) -> Result<uuid::Uuid> {
    let s: String = row.try_get(col)?;
    uuid::Uuid::parse_str(&s).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

fn run_from_row(row: &SqliteRow) -> Result<RunRecord> {
    let state: String = row.try_get("state")?;
    let cancel: Option<String> = row.try_get("cancel_request")?;
    let input: String = row.try_get("input")?;
    let context: String = row.try_get("context")?;
    let steps: String = row.try_get("steps")?;
    Ok(RunRecord {
        id: RunId(uuid_col(row, "id")?),
        tenant_id: TenantId(row.try_get("tenant_id")?),
        workflow_name: row.try_get("workflow_name")?,
        workflow_version: row.try_get::<i64, _>("workflow_version")? as u32,
        definition_id: row.try_get("definition_id")?,
        state: state
            .parse()
            .map_err(|e: crate::run::state::UnknownState| StoreError::Corrupt(e.to_string()))?,
        input: json(&input, "input")?,
        context: json(&context, "context")?,
        steps: steps_decode(&steps)?,
        cursor: row.try_get::<i64, _>("cursor")? as u32,
        error: row.try_get("error")?,
        idempotency_key: row.try_get("idempotency_key")?,
        concurrency_key: row.try_get("concurrency_key")?,
        schedule_id: row.try_get("schedule_id")?,
        trace_id: row.try_get("trace_id")?,
        traceparent: row.try_get("traceparent")?,
        cancel_request: cancel.as_deref().map(CancelRequest::parse).transpose()?,
        last_seq: row.try_get::<i64, _>("last_seq")? as u64,
        next_run_at: opt_from_micros(row.try_get("next_run_at")?)?,
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: opt_from_micros(row.try_get("lease_expires_at")?)?,
        created_at: from_micros(row.try_get("created_at")?)?,
        updated_at: from_micros(row.try_get("updated_at")?)?,
        finished_at: opt_from_micros(row.try_get("finished_at")?)?,
    })
}

fn event_from_row(row: &SqliteRow) -> Result<EventRecord> {
    let state: String = row.try_get("run_state")?;
    let kind: String = row.try_get("kind")?;
    Ok(EventRecord {
        run_id: RunId(uuid_col(row, "run_id")?),
        seq: row.try_get::<i64, _>("seq")? as u64,
        at: from_micros(row.try_get("at")?)?,
        kind: EventKind::parse(&kind)?,
        step: row.try_get("step")?,
        attempt: row.try_get::<i64, _>("attempt")? as u32,
        run_state: state
            .parse()
            .map_err(|e: crate::run::state::UnknownState| StoreError::Corrupt(e.to_string()))?,
        message: row.try_get("message")?,
        actor: row.try_get("actor")?,
    })
}

/// Appends events after `last_seq` (the run's sequence after the update).
async fn insert_events(
    conn: &mut SqliteConnection,
    run_id: RunId,
    last_seq: i64,
    events: &[NewEvent],
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let first = last_seq - events.len() as i64 + 1;
    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT INTO run_events (run_id, seq, at, kind, step, attempt, run_state, message, actor) ",
    );
    q.push_values(events.iter().enumerate(), |mut b, (i, e)| {
        b.push_bind(run_id.to_string())
            .push_bind(first + i as i64)
            .push_bind(micros(e.at))
            .push_bind(e.kind.as_str())
            .push_bind(e.step.clone())
            .push_bind(e.attempt as i64)
            .push_bind(e.run_state.as_str())
            .push_bind(e.message.clone())
            .push_bind(e.actor.clone());
    });
    q.build().execute(&mut *conn).await?;
    Ok(())
}

async fn release_key(conn: &mut SqliteConnection, run_id: RunId, now: DateTime<Utc>) -> Result<()> {
    let freed =
        sqlx::query("DELETE FROM concurrency_locks WHERE run_id = ?1 RETURNING tenant_id, key")
            .bind(run_id.to_string())
            .fetch_optional(&mut *conn)
            .await?;
    let Some(freed) = freed else { return Ok(()) };
    let tenant: String = freed.try_get("tenant_id")?;
    let key: String = freed.try_get("key")?;
    hand_over(conn, &tenant, &key, now).await.map(|_| ())
}

/// Gives a free key to the oldest run queued on it whose queue time is not
/// up; false if there is none.
async fn hand_over(
    conn: &mut SqliteConnection,
    tenant: &str,
    key: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let next: Option<String> = sqlx::query_scalar(
        "SELECT id FROM runs WHERE tenant_id = ?1 AND concurrency_key = ?2 AND state = 'PENDING' \
         AND next_run_at IS NULL AND (queue_expires_at IS NULL OR queue_expires_at > ?3) \
         ORDER BY created_at, id LIMIT 1",
    )
    .bind(tenant)
    .bind(key)
    .bind(micros(now))
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(next) = next {
        sqlx::query("INSERT INTO concurrency_locks (tenant_id, key, run_id) VALUES (?1, ?2, ?3)")
            .bind(tenant)
            .bind(key)
            .bind(&next)
            .execute(&mut *conn)
            .await?;
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE runs SET next_run_at = MIN(?2, {DB_NOW}) WHERE id = ?1"
        )))
        .bind(&next)
        .bind(micros(now))
        .execute(&mut *conn)
        .await?;
        return Ok(true);
    }
    Ok(false)
}

/// Writes one checkpoint inside the caller's transaction: fenced by the
/// lease (on the database's clock), applied only on top of the `last_seq`
/// it was computed from, and recognised by its id if it was applied before.
/// A run whose `last_seq` moved under a live lease for another reason (an
/// operator's cancellation appends an event) gets it applied after that.
async fn checkpoint_one(tx: &mut SqliteConnection, cp: &Checkpoint) -> Result<CheckpointAck> {
    let mut expected = cp.expected_seq;
    for _ in 0..2 {
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE runs SET state = ?3, cursor = ?4, context = COALESCE(?5, context), steps = ?6, \
                error = ?7, \
                next_run_at = CASE WHEN ?12 IS NOT NULL THEN next_run_at \
                    WHEN cancel_request IS NOT NULL AND ?3 IN ('PENDING', 'RUNNING', 'FAILED') \
                    THEN MIN(?10, {DB_NOW}) ELSE ?8 END, \
                finished_at = ?9, updated_at = ?10, last_seq = last_seq + ?11, \
                lease_expires_at = {DB_NOW} + ?12, \
                lease_owner = CASE WHEN ?12 IS NULL THEN NULL ELSE lease_owner END, \
                lease_token = CASE WHEN ?12 IS NULL THEN NULL ELSE lease_token END, \
                last_checkpoint = ?13 \
             WHERE id = ?1 AND lease_token = ?2 AND lease_expires_at > {DB_NOW} AND last_seq = ?14 \
             RETURNING last_seq, cancel_request"
        )))
        .bind(cp.run_id.to_string())
        .bind(cp.lease.to_string())
        .bind(cp.state.as_str())
        .bind(cp.cursor as i64)
        .bind(cp.context.as_ref().map(Value::to_string))
        .bind(steps_encode(&cp.steps))
        .bind(&cp.error)
        .bind(opt_micros(cp.next_run_at))
        .bind(opt_micros(cp.finished_at))
        .bind(micros(cp.now))
        .bind(cp.events.len() as i64)
        .bind(cp.keep_lease.map(duration_micros))
        .bind(cp.id.to_string())
        .bind(expected as i64)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = row {
            let last_seq: i64 = row.try_get("last_seq")?;
            let cancel: Option<String> = row.try_get("cancel_request")?;
            insert_events(&mut *tx, cp.run_id, last_seq, &cp.events).await?;
            if cp.release_concurrency_key {
                release_key(&mut *tx, cp.run_id, cp.now).await?;
            }
            return Ok(CheckpointAck::Applied {
                cancel_request: cancel.as_deref().map(CancelRequest::parse).transpose()?,
            });
        }
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT last_seq, cancel_request, last_checkpoint, lease_token, \
                lease_expires_at > {DB_NOW} AS live FROM runs WHERE id = ?1"
        )))
        .bind(cp.run_id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(CheckpointAck::Fenced);
        };
        let last: Option<String> = row.try_get("last_checkpoint")?;
        let token: Option<String> = row.try_get("lease_token")?;
        let live: Option<bool> = row.try_get("live")?;
        let seq = row.try_get::<i64, _>("last_seq")? as u64;
        if last.as_deref() == Some(cp.id.to_string().as_str()) {
            let cancel: Option<String> = row.try_get("cancel_request")?;
            return Ok(CheckpointAck::Applied {
                cancel_request: cancel.as_deref().map(CancelRequest::parse).transpose()?,
            });
        }
        if token.as_deref() != Some(cp.lease.to_string().as_str())
            || live != Some(true)
            || seq == expected
        {
            return Ok(CheckpointAck::Fenced);
        }
        expected = seq;
    }
    Ok(CheckpointAck::Fenced)
}

impl SqliteStore {
    /// Gives back the leases of claimed runs that cannot be driven, due
    /// again only after `for_` on the database's clock.
    async fn park(&self, leases: &[(RunId, LeaseToken)], for_: Duration) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        for (id, token) in leases {
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE runs SET lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, \
                 next_run_at = {DB_NOW} + ?3 WHERE id = ?1 AND lease_token = ?2"
            )))
            .bind(id.to_string())
            .bind(token.to_string())
            .bind(duration_micros(for_))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Opens (creating if needed) the database file of `url`, e.g.
    /// `sqlite://.sagaflow/dev.db`.
    pub async fn connect(url: &str) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        if let Some(dir) = opts.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.read_only(true))
            .await?;
        Ok(Self { writer, reader })
    }

    /// The single writer connection's pool: code that writes its own tables
    /// to this database (the domain repositories) goes through it.
    pub fn pool(&self) -> &SqlitePool {
        &self.writer
    }
}

async fn find_idempotent(
    conn: &mut SqliteConnection,
    new: &NewRun,
) -> Result<Option<CreateOutcome>> {
    let Some(key) = &new.idempotency_key else {
        return Ok(None);
    };
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {RUN_COLUMNS}, input_hash FROM runs \
         WHERE tenant_id = ?1 AND workflow_name = ?2 AND idempotency_key = ?3"
    )))
    .bind(new.tenant_id.as_str())
    .bind(&new.definition.definition.name)
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let hash: String = row.try_get("input_hash")?;
    Ok(Some(if hash == new.input_hash {
        CreateOutcome::Existing(run_from_row(&row)?)
    } else {
        CreateOutcome::IdempotencyConflict
    }))
}

/// What [`insert_run`] did inside the caller's transaction.
pub(super) enum RunInsert {
    /// The run, its lock (if any) and its first events are written.
    Created,
    /// The concurrency key is held and the policy is `reject`: nothing
    /// was written.
    KeyHeld { holder: RunId },
    /// The idempotency key is taken: the existing run, or a conflict.
    /// Nothing was written.
    Found(Box<CreateOutcome>),
}

/// Inserts a run, its steps and its first events on `tx` (a transaction the
/// caller commits), enforcing the idempotency and concurrency keys.
pub(super) async fn insert_run(tx: &mut SqliteConnection, new: &NewRun) -> Result<RunInsert> {
    let def = &new.definition.definition;
    if let Some(found) = find_idempotent(&mut *tx, new).await? {
        return Ok(RunInsert::Found(Box::new(found)));
    }
    let mut queued = false;
    if let Some((key, policy)) = &new.concurrency {
        let holder: Option<String> = sqlx::query_scalar(
            "SELECT run_id FROM concurrency_locks WHERE tenant_id = ?1 AND key = ?2",
        )
        .bind(new.tenant_id.as_str())
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        let waiting: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM runs WHERE tenant_id = ?1 AND concurrency_key = ?2 AND state = 'PENDING' \
             AND next_run_at IS NULL LIMIT 1",
        )
        .bind(new.tenant_id.as_str())
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        match (holder, waiting, policy) {
            (None, None, _) => {
                sqlx::query(
                    "INSERT INTO concurrency_locks (tenant_id, key, run_id) VALUES (?1, ?2, ?3)",
                )
                .bind(new.tenant_id.as_str())
                .bind(key)
                .bind(new.id.to_string())
                .execute(&mut *tx)
                .await?;
            }
            (holder, _, ConcurrencyPolicy::Reject) => {
                let holder = holder
                    .and_then(|h| uuid::Uuid::parse_str(&h).ok())
                    .unwrap_or_default();
                return Ok(RunInsert::KeyHeld {
                    holder: RunId(holder),
                });
            }
            (_, _, ConcurrencyPolicy::Queue) => queued = true,
        }
    }
    let mut events = vec![NewEvent {
        kind: EventKind::RunStarted,
        step: None,
        attempt: 0,
        run_state: RunState::Pending,
        message: None,
        actor: new.actor.clone(),
        at: new.now,
    }];
    if queued {
        events.push(NewEvent {
            kind: EventKind::RunQueued,
            message: Some("waiting for the concurrency key to be free".into()),
            ..events[0].clone()
        });
    }
    let input = new.input.to_string();
    sqlx::query(
        "INSERT INTO runs (id, tenant_id, workflow_name, workflow_version, definition_id, state, \
            input, input_hash, context, steps, idempotency_key, concurrency_key, schedule_id, trace_id, \
            traceparent, last_seq, next_run_at, created_at, updated_at, queue_expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, 'PENDING', ?6, ?7, ?6, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?16, ?17)",
    )
    .bind(new.id.to_string())
    .bind(new.tenant_id.as_str())
    .bind(&def.name)
    .bind(def.version as i64)
    .bind(&new.definition.id)
    .bind(&input)
    .bind(&new.input_hash)
    .bind(steps_encode(&initial_steps(def)))
    .bind(&new.idempotency_key)
    .bind(new.concurrency.as_ref().map(|c| &c.0))
    .bind(&new.schedule_id)
    .bind(&new.trace_id)
    .bind(&new.traceparent)
    .bind(events.len() as i64)
    .bind(if queued { None } else { Some(micros(new.now)) })
    .bind(micros(new.now))
    .bind(if queued { opt_micros(new.queue_expires_at()) } else { None })
    .execute(&mut *tx)
    .await?;
    insert_events(&mut *tx, new.id, events.len() as i64, &events).await?;
    Ok(RunInsert::Created)
}

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
        let free: Vec<(String, String)> = sqlx::query_as(
            "SELECT DISTINCT r.tenant_id, r.concurrency_key FROM runs r \
             WHERE r.state = 'PENDING' AND r.next_run_at IS NULL AND r.concurrency_key IS NOT NULL \
               AND NOT EXISTS (SELECT 1 FROM concurrency_locks l \
                               WHERE l.tenant_id = r.tenant_id AND l.key = r.concurrency_key)",
        )
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
        super::queue_expiry::sqlite(&self.writer, now, limit).await
    }

    async fn insert_schedule(&self, s: &crate::schedule::Schedule) -> Result<bool> {
        super::sqlite_schedules::insert_schedule(&self.writer, s).await
    }

    async fn seed_schedule(&self, s: &crate::schedule::Schedule) -> Result<bool> {
        super::sqlite_schedules::seed_schedule(&self.writer, s).await
    }

    async fn get_schedule(
        &self,
        tenant: &TenantId,
        id: crate::schedule::ScheduleId,
    ) -> Result<Option<crate::schedule::Schedule>> {
        super::sqlite_schedules::get_schedule(&self.reader, tenant, id).await
    }

    async fn list_schedules(&self, tenant: &TenantId) -> Result<Vec<crate::schedule::Schedule>> {
        super::sqlite_schedules::list_schedules(&self.reader, tenant).await
    }

    async fn change_schedule(&self, c: &ScheduleChange) -> Result<bool> {
        super::sqlite_schedules::change_schedule(&self.writer, c).await
    }

    async fn delete_schedule(
        &self,
        tenant: &TenantId,
        id: crate::schedule::ScheduleId,
    ) -> Result<bool> {
        super::sqlite_schedules::delete_schedule(&self.writer, tenant, id).await
    }

    async fn due_schedules(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<crate::schedule::Schedule>> {
        super::sqlite_schedules::due_schedules(&self.reader, now, limit).await
    }

    async fn apply_fires(&self, batch: &FireBatch) -> Result<FireBatchAck> {
        super::sqlite_schedules::apply_fires(&self.writer, batch).await
    }

    async fn schedule_fires(
        &self,
        tenant: &TenantId,
        id: crate::schedule::ScheduleId,
        after: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Option<Vec<crate::schedule::FireRecord>>> {
        super::sqlite_schedules::schedule_fires(&self.reader, tenant, id, after, limit).await
    }
}
