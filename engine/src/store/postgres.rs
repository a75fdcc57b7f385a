//! The PostgreSQL backend: the production store. Many engine replicas share
//! one database and claim work with `FOR UPDATE SKIP LOCKED`. Every hot-path
//! write is a single statement (a CTE), so a checkpoint is one round trip.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::*;
use crate::definition::{ConcurrencyPolicy, LoadedDefinition, WorkflowDefinition};
use crate::ids::{LeaseToken, RunId, TenantId};
use crate::run::state::RunState;
use sqlx::AssertSqlSafe;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgStore {
    /// The API, watches, the scheduler and the domain repositories.
    pool: PgPool,
    /// The executor's hot path only (claim, checkpoint, renewal, release),
    /// so no load on the API can take the connections leases depend on.
    hot: PgPool,
}

/// How the store's two pools are sized and bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// Connections of the general pool (API, watches, scheduler, domain).
    pub max_connections: u32,
    /// Connections of the executor's own pool (claim, checkpoint, renewal,
    /// release).
    pub hot_connections: u32,
    /// Longest wait for a free connection, in either pool.
    pub acquire_timeout: Duration,
    /// Longest statement on the general pool (`statement_timeout`).
    pub statement_timeout: Duration,
    /// Longest statement on the executor's pool: short, so a stuck write
    /// fails while the lease can still be renewed.
    pub hot_statement_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            hot_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            hot_statement_timeout: Duration::from_secs(5),
        }
    }
}

const RUN_COLUMNS: &str = "id, tenant_id, workflow_name, workflow_version, definition_id, state, \
    input, context, steps, cursor, error, idempotency_key, concurrency_key, schedule_id, trace_id, \
    traceparent, cancel_request, last_seq, next_run_at, lease_owner, lease_expires_at, created_at, \
    updated_at, finished_at";

impl PgStore {
    /// Gives back the leases of claimed runs that cannot be driven, due
    /// again only after `for_` on the database's clock.
    async fn park(&self, leases: &[(RunId, LeaseToken)], for_: Duration) -> Result<()> {
        let ids: Vec<Uuid> = leases.iter().map(|l| l.0.0).collect();
        let tokens: Vec<Uuid> = leases.iter().map(|l| l.1.0).collect();
        sqlx::query(
            "UPDATE runs SET lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, \
                next_run_at = now() + $3 * interval '1 microsecond' \
             FROM unnest($1::uuid[], $2::uuid[]) AS l(id, token) \
             WHERE runs.id = l.id AND runs.lease_token = l.token",
        )
        .bind(&ids)
        .bind(&tokens)
        .bind(micros(for_))
        .execute(&self.hot)
        .await?;
        Ok(())
    }

    /// Connects with a pool of `max_connections` (default 16).
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, 16).await
    }

    pub async fn connect_with(url: &str, max_connections: u32) -> Result<Self> {
        let opts = PgOptions {
            max_connections,
            ..PgOptions::default()
        };
        Self::connect_opts(url.parse()?, &opts).await
    }

    /// Connects both pools as `o` says.
    pub async fn connect_opts(conn: PgConnectOptions, o: &PgOptions) -> Result<Self> {
        let open = |max: u32, timeout: Duration, name: &str| {
            let ms = timeout.as_millis().to_string();
            PgPoolOptions::new()
                .max_connections(max.max(1))
                .acquire_timeout(o.acquire_timeout)
                .connect_with(
                    conn.clone()
                        .application_name(name)
                        .options([("statement_timeout", ms.as_str())]),
                )
        };
        let pool = open(o.max_connections, o.statement_timeout, "sagaflow").await?;
        let hot = open(
            o.hot_connections,
            o.hot_statement_timeout,
            "sagaflow-executor",
        )
        .await?;
        Ok(Self { pool, hot })
    }

    /// Wraps an existing pool, for both uses (tests use the one
    /// `#[sqlx::test]` gives).
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            hot: pool.clone(),
            pool,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The plan PostgreSQL picks for [`Store::get_run`] (executed, read only).
    pub async fn explain_get(&self, tenant: &TenantId, id: RunId) -> Result<String> {
        let rows: Vec<String> = sqlx::query_scalar(AssertSqlSafe(get_run_sql(EXPLAIN)))
            .bind(id.0)
            .bind(tenant.as_str())
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.join("\n"))
    }

    /// The plan PostgreSQL picks for [`Store::list_runs`] with `f`
    /// (executed, read only).
    pub async fn explain_list(&self, tenant: &TenantId, f: &RunFilter) -> Result<String> {
        let mut q = list_runs_query(EXPLAIN, tenant, f);
        let rows: Vec<String> = q.build_query_scalar().fetch_all(&self.pool).await?;
        Ok(rows.join("\n"))
    }

    /// The plan of the claim statement, executed in a transaction that is
    /// rolled back: nothing is leased.
    pub async fn explain_claim(&self, now: DateTime<Utc>, limit: u32) -> Result<String> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<String> = sqlx::query_scalar(AssertSqlSafe(claim_sql(EXPLAIN)))
            .bind(now)
            .bind(limit as i64)
            .bind("explain")
            .bind(Uuid::nil())
            .bind(0i64)
            .fetch_all(&mut *tx)
            .await?;
        tx.rollback().await?;
        Ok(rows.join("\n"))
    }
}

/// A duration in whole microseconds, for SQL that adds it to the
/// database's clock.
pub(super) fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

const EXPLAIN: &str = "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) ";

fn run_from_row(row: &PgRow) -> Result<RunRecord> {
    let state: String = row.try_get("state")?;
    let cancel: Option<String> = row.try_get("cancel_request")?;
    Ok(RunRecord {
        id: RunId(row.try_get("id")?),
        tenant_id: TenantId(row.try_get("tenant_id")?),
        workflow_name: row.try_get("workflow_name")?,
        workflow_version: row.try_get::<i32, _>("workflow_version")? as u32,
        definition_id: row.try_get("definition_id")?,
        state: state
            .parse()
            .map_err(|e: crate::run::state::UnknownState| StoreError::Corrupt(e.to_string()))?,
        input: row.try_get("input")?,
        context: row.try_get("context")?,
        steps: steps_decode(row.try_get::<&str, _>("steps")?)?,
        cursor: row.try_get::<i32, _>("cursor")? as u32,
        error: row.try_get("error")?,
        idempotency_key: row.try_get("idempotency_key")?,
        concurrency_key: row.try_get("concurrency_key")?,
        schedule_id: row.try_get("schedule_id")?,
        trace_id: row.try_get("trace_id")?,
        traceparent: row.try_get("traceparent")?,
        cancel_request: cancel.as_deref().map(CancelRequest::parse).transpose()?,
        last_seq: row.try_get::<i64, _>("last_seq")? as u64,
        next_run_at: row.try_get("next_run_at")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

fn event_from_row(row: &PgRow) -> Result<EventRecord> {
    let state: String = row.try_get("run_state")?;
    let kind: String = row.try_get("kind")?;
    Ok(EventRecord {
        run_id: RunId(row.try_get("run_id")?),
        seq: row.try_get::<i64, _>("seq")? as u64,
        at: row.try_get("at")?,
        kind: EventKind::parse(&kind)?,
        step: row.try_get("step")?,
        attempt: row.try_get::<i32, _>("attempt")? as u32,
        run_state: state
            .parse()
            .map_err(|e: crate::run::state::UnknownState| StoreError::Corrupt(e.to_string()))?,
        message: row.try_get("message")?,
        actor: row.try_get("actor")?,
    })
}

/// Events as parallel arrays, for `unnest` in one statement.
pub(super) struct EventArrays {
    pub(super) kinds: Vec<&'static str>,
    pub(super) steps: Vec<Option<String>>,
    pub(super) attempts: Vec<i32>,
    pub(super) states: Vec<&'static str>,
    pub(super) messages: Vec<Option<String>>,
    pub(super) actors: Vec<String>,
    pub(super) ats: Vec<DateTime<Utc>>,
}

impl EventArrays {
    pub(super) fn new(events: &[NewEvent]) -> Self {
        Self {
            kinds: events.iter().map(|e| e.kind.as_str()).collect(),
            steps: events.iter().map(|e| e.step.clone()).collect(),
            attempts: events.iter().map(|e| e.attempt as i32).collect(),
            states: events.iter().map(|e| e.run_state.as_str()).collect(),
            messages: events.iter().map(|e| e.message.clone()).collect(),
            actors: events.iter().map(|e| e.actor.clone()).collect(),
            ats: events.iter().map(|e| e.at).collect(),
        }
    }
}

/// `INSERT INTO run_events` from the arrays bound at `$first..$first+6`,
/// numbering them after the run's previous `last_seq` taken from CTE `r`.
fn insert_events_sql(first: usize) -> String {
    let p = |i: usize| format!("${}", first + i);
    format!(
        "INSERT INTO run_events (run_id, seq, at, kind, step, attempt, run_state, message, actor) \
         SELECT r.id, r.last_seq - cardinality({k}::text[]) + ev.ord, ev.at, ev.kind, ev.step, ev.attempt, ev.run_state, ev.message, ev.actor \
         FROM r, unnest({k}::text[], {s}::text[], {a}::int4[], {st}::text[], {m}::text[], {ac}::text[], {at}::timestamptz[]) \
            WITH ORDINALITY AS ev(kind, step, attempt, run_state, message, actor, at, ord)",
        k = p(0),
        s = p(1),
        a = p(2),
        st = p(3),
        m = p(4),
        ac = p(5),
        at = p(6),
    )
}

fn bind_events<'q>(
    q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ev: &'q EventArrays,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    q.bind(&ev.kinds)
        .bind(&ev.steps)
        .bind(&ev.attempts)
        .bind(&ev.states)
        .bind(&ev.messages)
        .bind(&ev.actors)
        .bind(&ev.ats)
}

/// Frees the concurrency keys of `runs` and hands each to the oldest run
/// queued on it.
async fn release_keys(
    tx: &mut sqlx::PgConnection,
    runs: &[Uuid],
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "WITH d AS (DELETE FROM concurrency_locks WHERE run_id = ANY($1) RETURNING tenant_id, key), \
         n AS (SELECT DISTINCT ON (q.tenant_id, q.concurrency_key) q.id, q.tenant_id, q.concurrency_key \
               FROM runs q JOIN d ON q.tenant_id = d.tenant_id AND q.concurrency_key = d.key \
               WHERE q.state = 'PENDING' AND q.next_run_at IS NULL \
                 AND (q.queue_expires_at IS NULL OR q.queue_expires_at > $2) \
               ORDER BY q.tenant_id, q.concurrency_key, q.created_at, q.id), \
         l AS (INSERT INTO concurrency_locks (tenant_id, key, run_id) SELECT tenant_id, concurrency_key, id FROM n \
               ON CONFLICT DO NOTHING RETURNING run_id) \
         UPDATE runs SET next_run_at = LEAST($2, now()) FROM l WHERE runs.id = l.run_id",
    )
    .bind(runs)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// What [`insert_run`] did inside the caller's transaction.
pub(super) enum RunInsert {
    /// The run, its lock (if any) and its first events are written.
    Created,
    /// The concurrency key is held and the policy is `reject`: nothing
    /// was written.
    KeyHeld { key: String },
    /// The idempotency key is taken: the transaction must be rolled back
    /// (the concurrency lock may have been taken).
    Duplicate,
}

/// Inserts a run, its steps and its first events on `tx` (a transaction the
/// caller commits), enforcing the idempotency and concurrency keys.
pub(super) async fn insert_run(tx: &mut sqlx::PgConnection, new: &NewRun) -> Result<RunInsert> {
    let def = &new.definition.definition;
    let mut queued = false;
    if let Some((key, policy)) = &new.concurrency {
        let got: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO concurrency_locks (tenant_id, key, run_id) \
             SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM runs WHERE tenant_id = $1 \
               AND concurrency_key = $2 AND state = 'PENDING' AND next_run_at IS NULL) \
             ON CONFLICT DO NOTHING RETURNING run_id",
        )
        .bind(new.tenant_id.as_str())
        .bind(key)
        .bind(new.id.0)
        .fetch_optional(&mut *tx)
        .await?;
        if got.is_none() {
            match policy {
                ConcurrencyPolicy::Queue => queued = true,
                ConcurrencyPolicy::Reject => return Ok(RunInsert::KeyHeld { key: key.clone() }),
            }
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
    let ev = EventArrays::new(&events);
    let sql = format!(
        "WITH r AS (INSERT INTO runs (id, tenant_id, workflow_name, workflow_version, definition_id, state, \
            input, input_hash, context, steps, idempotency_key, concurrency_key, schedule_id, trace_id, \
            traceparent, last_seq, next_run_at, created_at, updated_at, queue_expires_at) \
          VALUES ($1, $2, $3, $4, $5, 'PENDING', $6, $7, $6, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16, $17) \
          ON CONFLICT (tenant_id, workflow_name, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING \
          RETURNING id, last_seq) {}",
        insert_events_sql(18)
    );
    let steps = steps_encode(&initial_steps(def));
    let q = sqlx::query(AssertSqlSafe(sql))
        .bind(new.id.0)
        .bind(new.tenant_id.as_str())
        .bind(&def.name)
        .bind(def.version as i32)
        .bind(&new.definition.id)
        .bind(&new.input)
        .bind(&new.input_hash)
        .bind(&steps)
        .bind(&new.idempotency_key)
        .bind(new.concurrency.as_ref().map(|c| &c.0))
        .bind(&new.schedule_id)
        .bind(&new.trace_id)
        .bind(&new.traceparent)
        .bind(events.len() as i64)
        .bind(if queued { None } else { Some(new.now) })
        .bind(new.now)
        .bind(if queued { new.queue_expires_at() } else { None });
    let inserted = bind_events(q, &ev).execute(&mut *tx).await?.rows_affected();
    Ok(if inserted == 0 {
        RunInsert::Duplicate
    } else {
        RunInsert::Created
    })
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn ready(&self) -> Result<bool> {
        let applied: i64 =
            sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await?;
        Ok(applied as usize >= MIGRATOR.iter().count())
    }

    async fn put_definition(&self, def: &LoadedDefinition) -> Result<()> {
        sqlx::query(
            "INSERT INTO workflow_definitions (id, name, version, body) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&def.id)
        .bind(&def.definition.name)
        .bind(def.definition.version as i32)
        .bind(&def.snapshot)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_definition(&self, id: &str) -> Result<Option<WorkflowDefinition>> {
        let body: Option<Value> =
            sqlx::query_scalar("SELECT body FROM workflow_definitions WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        body.map(|b| {
            serde_json::from_value(b)
                .map_err(|e| StoreError::Corrupt(format!("definition {id}: {e}")))
        })
        .transpose()
    }

    async fn create_run(&self, new: &NewRun) -> Result<CreateOutcome> {
        if new.concurrency.is_none() {
            // Without a concurrency key the insert is one statement: atomic
            // on its own, one round trip, and the record is known already.
            let inserted = {
                let mut conn = self.pool.acquire().await?;
                insert_run(&mut conn, new).await?
            }; // the connection goes back before any further query
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
                let holder: Option<Uuid> = sqlx::query_scalar(
                    "SELECT run_id FROM concurrency_locks WHERE tenant_id = $1 AND key = $2",
                )
                .bind(new.tenant_id.as_str())
                .bind(&key)
                .fetch_optional(&self.pool)
                .await?;
                return Ok(CreateOutcome::ConcurrencyKeyHeld {
                    holder: RunId(holder.unwrap_or_default()),
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

    async fn get_run(&self, tenant: &TenantId, id: RunId) -> Result<Option<RunRecord>> {
        let row = sqlx::query(AssertSqlSafe(get_run_sql("")))
            .bind(id.0)
            .bind(tenant.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    async fn list_runs(&self, tenant: &TenantId, f: &RunFilter) -> Result<Vec<RunRecord>> {
        let mut q = list_runs_query("", tenant, f);
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(run_from_row).collect()
    }

    async fn events(
        &self,
        tenant: &TenantId,
        id: RunId,
        after: u64,
    ) -> Result<Option<Vec<EventRecord>>> {
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM runs WHERE id = $1 AND tenant_id = $2")
                .bind(id.0)
                .bind(tenant.as_str())
                .fetch_optional(&self.pool)
                .await?;
        if exists.is_none() {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT run_id, seq, at, kind, step, attempt, run_state, message, actor \
             FROM run_events WHERE run_id = $1 AND seq > $2 ORDER BY seq",
        )
        .bind(id.0)
        .bind(after as i64)
        .fetch_all(&self.pool)
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
        let kept: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE runs SET lease_expires_at = now() + $3 * interval '1 microsecond', \
                next_run_at = now() + $3 * interval '1 microsecond' \
             FROM unnest($1::uuid[], $2::uuid[]) AS l(id, token) \
             WHERE runs.id = l.id AND runs.lease_token = l.token AND runs.lease_expires_at > now() \
             RETURNING runs.id",
        )
        .bind(&ids)
        .bind(&tokens)
        .bind(micros(lease))
        .fetch_all(&self.hot)
        .await?;
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
        sqlx::query(
            "UPDATE runs SET lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, \
                next_run_at = LEAST($3, now()) \
             FROM unnest($1::uuid[], $2::uuid[]) AS l(id, token) \
             WHERE runs.id = l.id AND runs.lease_token = l.token",
        )
        .bind(&ids)
        .bind(&tokens)
        .bind(now)
        .execute(&self.hot)
        .await?;
        Ok(())
    }

    async fn checkpoint(&self, cp: &Checkpoint) -> Result<CheckpointAck> {
        self.checkpoint_many(std::slice::from_ref(cp))
            .await?
            .pop()
            .ok_or_else(|| StoreError::Corrupt("checkpoint returned no answer".into()))
    }

    async fn checkpoint_many(&self, cps: &[Checkpoint]) -> Result<Vec<CheckpointAck>> {
        let releasing: Vec<Uuid> = cps
            .iter()
            .filter(|c| c.release_concurrency_key)
            .map(|c| c.run_id.0)
            .collect();
        if releasing.is_empty() {
            // The common case: one statement, one round trip, one commit.
            let mut conn = self.hot.acquire().await?;
            return super::postgres_checkpoint::checkpoint_batch(&mut conn, cps).await;
        }
        let mut tx = self.hot.begin().await?;
        let acks = super::postgres_checkpoint::checkpoint_batch(&mut tx, cps).await?;
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
        tx.commit().await?;
        Ok(acks)
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
        tx.commit().await?;
        Ok(applied)
    }

    async fn count_by_state(&self, tenant: Option<&TenantId>) -> Result<Vec<(RunState, u64)>> {
        // Two statements, so a tenant's count reads its index range only.
        let rows: Vec<(String, i64)> = match tenant {
            Some(t) => {
                sqlx::query_as(
                    "SELECT state, count(*) FROM runs WHERE tenant_id = $1 GROUP BY state",
                )
                .bind(t.as_str())
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query_as("SELECT state, count(*) FROM runs GROUP BY state")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
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
        let n = sqlx::query(
            "WITH q AS (SELECT DISTINCT ON (tenant_id, concurrency_key) id, tenant_id, concurrency_key \
                FROM runs WHERE state = 'PENDING' AND next_run_at IS NULL AND concurrency_key IS NOT NULL \
                  AND (queue_expires_at IS NULL OR queue_expires_at > $1) \
                ORDER BY tenant_id, concurrency_key, created_at, id), \
             ins AS (INSERT INTO concurrency_locks (tenant_id, key, run_id) \
                SELECT tenant_id, concurrency_key, id FROM q ON CONFLICT DO NOTHING RETURNING run_id) \
             UPDATE runs SET next_run_at = $1 FROM ins WHERE runs.id = ins.run_id",
        )
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n)
    }

    async fn expire_queued(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<QueueExpired>> {
        super::queue_expiry::postgres(&self.pool, now, limit).await
    }

    async fn insert_schedule(&self, s: &crate::schedule::Schedule) -> Result<bool> {
        super::postgres_schedules::insert_schedule(&self.pool, s).await
    }

    async fn seed_schedule(&self, s: &crate::schedule::Schedule) -> Result<bool> {
        super::postgres_schedules::seed_schedule(&self.pool, s).await
    }

    async fn get_schedule(
        &self,
        tenant: &TenantId,
        id: crate::schedule::ScheduleId,
    ) -> Result<Option<crate::schedule::Schedule>> {
        super::postgres_schedules::get_schedule(&self.pool, tenant, id).await
    }

    async fn list_schedules(&self, tenant: &TenantId) -> Result<Vec<crate::schedule::Schedule>> {
        super::postgres_schedules::list_schedules(&self.pool, tenant).await
    }

    async fn change_schedule(&self, c: &ScheduleChange) -> Result<bool> {
        super::postgres_schedules::change_schedule(&self.pool, c).await
    }

    async fn delete_schedule(
        &self,
        tenant: &TenantId,
        id: crate::schedule::ScheduleId,
    ) -> Result<bool> {
        super::postgres_schedules::delete_schedule(&self.pool, tenant, id).await
    }

    async fn due_schedules(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<crate::schedule::Schedule>> {
        super::postgres_schedules::due_schedules(&self.pool, now, limit).await
    }

    async fn apply_fires(&self, batch: &FireBatch) -> Result<FireBatchAck> {
        super::postgres_schedules::apply_fires(&self.pool, batch).await
    }

    async fn schedule_fires(
        &self,
        tenant: &TenantId,
        id: crate::schedule::ScheduleId,
        after: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Option<Vec<crate::schedule::FireRecord>>> {
        super::postgres_schedules::schedule_fires(&self.pool, tenant, id, after, limit).await
    }
}

impl PgStore {
    async fn find_idempotent(&self, new: &NewRun) -> Result<Option<CreateOutcome>> {
        let Some(key) = &new.idempotency_key else {
            return Ok(None);
        };
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS}, input_hash FROM runs \
             WHERE tenant_id = $1 AND workflow_name = $2 AND idempotency_key = $3"
        )))
        .bind(new.tenant_id.as_str())
        .bind(&new.definition.definition.name)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let hash: String = row.try_get("input_hash")?;
        if hash == new.input_hash {
            Ok(Some(CreateOutcome::Existing(run_from_row(&row)?)))
        } else {
            Ok(Some(CreateOutcome::IdempotencyConflict))
        }
    }
}

/// `SELECT` of one run by id within its tenant; `prefix` is empty or an
/// `EXPLAIN …` clause.
fn get_run_sql(prefix: &str) -> String {
    format!("{prefix}SELECT {RUN_COLUMNS} FROM runs WHERE id = $1 AND tenant_id = $2")
}

/// The listing query (keyset pagination, newest first); `prefix` is empty
/// or an `EXPLAIN …` clause.
fn list_runs_query(prefix: &str, tenant: &TenantId, f: &RunFilter) -> QueryBuilder<Postgres> {
    let cols = RUN_COLUMNS.replace("steps,", "'[]'::text AS steps,");
    let mut q = QueryBuilder::<Postgres>::new(format!(
        "{prefix}SELECT {cols} FROM runs WHERE tenant_id = "
    ));
    q.push_bind(tenant.as_str());
    if let Some(w) = &f.workflow_name {
        q.push(" AND workflow_name = ").push_bind(w);
    }
    if !f.states.is_empty() {
        let states: Vec<&str> = f.states.iter().map(|s| s.as_str()).collect();
        q.push(" AND state = ANY(").push_bind(states).push(")");
    }
    if let Some(k) = &f.concurrency_key {
        q.push(" AND concurrency_key = ").push_bind(k);
    }
    if let Some(t) = f.created_after {
        q.push(" AND created_at > ").push_bind(t);
    }
    if let Some(t) = f.created_before {
        q.push(" AND created_at < ").push_bind(t);
    }
    if let Some((t, id)) = f.before {
        q.push(" AND (created_at, id) < (")
            .push_bind(t)
            .push(", ")
            .push_bind(id.0)
            .push(")");
    }
    q.push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .push_bind(f.limit.max(1) as i64);
    q
}

/// The claim statement: due runs whose lease is free, oldest first, locked
/// with `SKIP LOCKED` and leased in the same statement.
fn claim_sql(prefix: &str) -> String {
    format!(
        "{prefix}WITH c AS (SELECT id FROM runs WHERE next_run_at <= GREATEST($1, now()) \
             AND CASE WHEN lease_expires_at IS NULL THEN next_run_at <= $1 \
                 ELSE lease_expires_at <= now() END \
           ORDER BY next_run_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
         UPDATE runs SET lease_owner = $3, lease_token = $4, \
            lease_expires_at = now() + $5 * interval '1 microsecond', \
            next_run_at = now() + $5 * interval '1 microsecond' \
         FROM c WHERE runs.id = c.id RETURNING {}",
        RUN_COLUMNS
            .split(", ")
            .map(|c| format!("runs.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Bulk seeding for `sagaflow bench scale`: finished runs written by the
/// database itself, as a year of production would leave them.
pub mod scale {
    use chrono::{DateTime, Utc};
    use sqlx::PgPool;

    use super::Result;

    /// Inserts `n` finished runs of `workflows` (round robin) for `tenant`,
    /// created over the `span_days` before `until`, in one statement per
    /// `chunk` rows; 90 % COMPLETED, the rest COMPENSATED, FAILED and
    /// CANCELLED; every tenth with a concurrency key. Their `steps` are a
    /// realistic ten-step record.
    #[allow(clippy::too_many_arguments)]
    pub async fn seed_finished(
        pool: &PgPool,
        tenant: &str,
        definition_id: &str,
        workflows: &[String],
        n: u64,
        chunk: u64,
        until: DateTime<Utc>,
        span_days: u32,
        mut progress: impl FnMut(u64),
    ) -> Result<()> {
        let steps = crate::store::steps_encode(
            &(1..=10)
                .map(|i| crate::store::StepRecord {
                    state: crate::run::state::StepState::Succeeded,
                    attempts: 1,
                    started_at: Some(until),
                    finished_at: Some(until),
                    ..crate::store::StepRecord::new(&format!("step{i}"))
                })
                .collect::<Vec<_>>(),
        );
        let span_us = i64::from(span_days) * 86_400_000_000;
        let mut done = 0;
        while done < n {
            let k = chunk.min(n - done);
            sqlx::query(
                "INSERT INTO runs (id, tenant_id, workflow_name, workflow_version, definition_id, state, \
                    input, input_hash, context, steps, cursor, concurrency_key, last_seq, created_at, \
                    updated_at, finished_at) \
                 SELECT gen_random_uuid(), $1, ($2::text[])[1 + g % cardinality($2::text[])], 1, $3, \
                    CASE WHEN g % 100 < 90 THEN 'COMPLETED' WHEN g % 100 < 96 THEN 'COMPENSATED' \
                         WHEN g % 100 < 98 THEN 'FAILED' ELSE 'CANCELLED' END, \
                    jsonb_build_object('i', g), md5(g::text), jsonb_build_object('i', g), $4, 10, \
                    CASE WHEN g % 10 = 0 THEN 'subscriber-' || (g % 100000) END, 22, \
                    $5 - make_interval(secs => (g * ($6::float8 / $7::float8)) / 1e6), \
                    $5 - make_interval(secs => (g * ($6::float8 / $7::float8)) / 1e6) + interval '20 ms', \
                    $5 - make_interval(secs => (g * ($6::float8 / $7::float8)) / 1e6) + interval '20 ms' \
                 FROM generate_series($8::int8, $9::int8) AS g",
            )
            .bind(tenant)
            .bind(workflows)
            .bind(definition_id)
            .bind(&steps)
            .bind(until)
            .bind(span_us as f64)
            .bind(n as f64)
            .bind(done as i64)
            .bind((done + k - 1) as i64)
            .execute(pool)
            .await?;
            done += k;
            progress(done);
        }
        sqlx::query("ANALYZE runs").execute(pool).await?;
        Ok(())
    }

    /// Up to `n` random run ids of `tenant`.
    pub async fn sample_ids(pool: &PgPool, tenant: &str, n: i64) -> Result<Vec<uuid::Uuid>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM runs TABLESAMPLE SYSTEM (1) WHERE tenant_id = $1 LIMIT $2",
        )
        .bind(tenant)
        .bind(n)
        .fetch_all(pool)
        .await?)
    }
}

/// Raw checkpoint rates of this PostgreSQL server, for `sagaflow bench
/// ceiling`: the cheapest ways a client can write a step checkpoint.
pub mod ceiling {
    use std::time::{Duration, Instant};

    use sqlx::PgPool;
    use uuid::Uuid;

    use super::Result;

    /// Creates the scratch tables (dropped by [`drop_tables`]).
    pub async fn create_tables(pool: &PgPool, runs: usize) -> Result<Vec<Uuid>> {
        sqlx::query("DROP TABLE IF EXISTS ceiling_events, ceiling_runs")
            .execute(pool)
            .await?;
        sqlx::query("CREATE TABLE ceiling_runs (id UUID PRIMARY KEY, seq BIGINT NOT NULL, state TEXT NOT NULL, steps TEXT NOT NULL)")
            .execute(pool)
            .await?;
        sqlx::query("CREATE TABLE ceiling_events (run_id UUID NOT NULL, seq BIGINT NOT NULL, kind TEXT NOT NULL, PRIMARY KEY (run_id, seq))")
            .execute(pool)
            .await?;
        let ids: Vec<Uuid> = (0..runs).map(|_| Uuid::now_v7()).collect();
        sqlx::query(
            "INSERT INTO ceiling_runs SELECT id, 0, 'RUNNING', '[]' FROM unnest($1::uuid[]) AS id",
        )
        .bind(&ids)
        .execute(pool)
        .await?;
        Ok(ids)
    }

    pub async fn drop_tables(pool: &PgPool) -> Result<()> {
        sqlx::query("DROP TABLE IF EXISTS ceiling_events, ceiling_runs")
            .execute(pool)
            .await?;
        Ok(())
    }

    /// One prepared single statement (update the run, append its event)
    /// per transaction, from `workers` tasks, for `duration`. Returns the
    /// checkpoints written.
    pub async fn single(
        pool: &PgPool,
        ids: &[Uuid],
        workers: usize,
        duration: Duration,
    ) -> Result<u64> {
        let pool = pool.clone();
        run(ids, workers, duration, move |chunk| {
            let pool = pool.clone();
            async move {
                let id = chunk[0];
                sqlx::query(
                    "WITH u AS (UPDATE ceiling_runs SET seq = seq + 1, state = 'RUNNING', steps = $2 WHERE id = $1 RETURNING id, seq) \
                     INSERT INTO ceiling_events SELECT id, seq, 'step_succeeded' FROM u",
                )
                .bind(id)
                .bind(r#"[{"n":"step1","s":"SUCCEEDED","a":1}]"#)
                .execute(&pool)
                .await?;
                Ok(1)
            }
        }, 1)
        .await
    }

    /// Ten checkpoints of ten runs per transaction: one statement with
    /// arrays, as the engine's group commit writes them.
    pub async fn batched(
        pool: &PgPool,
        ids: &[Uuid],
        workers: usize,
        duration: Duration,
    ) -> Result<u64> {
        let pool = pool.clone();
        run(ids, workers, duration, move |chunk| {
            let pool = pool.clone();
            async move {
                let n = chunk.len() as u64 * 10;
                let mut tx = pool.begin().await?;
                for _ in 0..10 {
                    sqlx::query(
                        "WITH u AS (UPDATE ceiling_runs SET seq = seq + 1, steps = $2 \
                                    FROM unnest($1::uuid[]) AS c(id) WHERE ceiling_runs.id = c.id RETURNING ceiling_runs.id, seq) \
                         INSERT INTO ceiling_events SELECT id, seq, 'step_succeeded' FROM u",
                    )
                    .bind(&chunk)
                    .bind(r#"[{"n":"step1","s":"SUCCEEDED","a":1}]"#)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(n)
            }
        }, 10)
        .await
    }

    async fn run<F, Fut>(
        ids: &[Uuid],
        workers: usize,
        duration: Duration,
        op: F,
        per_task: usize,
    ) -> Result<u64>
    where
        F: Fn(Vec<Uuid>) -> Fut + Send + Sync + Clone + 'static,
        Fut: std::future::Future<Output = Result<u64>> + Send,
    {
        let end = Instant::now() + duration;
        let mut tasks = Vec::new();
        let per_worker = (ids.len() / workers.max(1)).max(per_task);
        for w in 0..workers {
            let mine: Vec<Uuid> = ids
                .iter()
                .skip(w * per_worker)
                .take(per_worker)
                .copied()
                .collect();
            let op = op.clone();
            tasks.push(tokio::spawn(async move {
                let mut done = 0u64;
                let mut i = 0;
                while Instant::now() < end && !mine.is_empty() {
                    let chunk: Vec<Uuid> =
                        (0..per_task).map(|k| mine[(i + k) % mine.len()]).collect();
                    i += per_task;
                    done += op(chunk).await?;
                }
                Ok::<u64, super::StoreError>(done)
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t
                .await
                .map_err(|e| super::StoreError::Corrupt(e.to_string()))??;
        }
        Ok(total)
    }
}
