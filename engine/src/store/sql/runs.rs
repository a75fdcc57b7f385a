//! Runs, definitions and the database itself, read (and definitions
//! written) the same way on both backends: the [`StoreAdmin`],
//! [`DefinitionStore`] and [`RunReads`] of every [`SqlBackend`].

use async_trait::async_trait;
use serde_json::Value;
use sqlx::{Database, Encode, QueryBuilder, Type};
use uuid::Uuid;

use super::{
    Backed, Conn, Db, Dialect, ReadRow, SqlBackend, event_from_row, run_from_row, with_db,
};
use crate::definition::{LoadedDefinition, WorkflowDefinition};
use crate::ids::{RunId, TenantId};
use crate::run::state::{RunState, UnknownState};
use crate::store::postgres::partitions::DAYS_AHEAD;
use crate::store::sql_terms::active_states;
use crate::store::{
    Backend, CreateOutcome, DefinitionStore, EventRecord, NewRun, Result, RunFilter, RunReads,
    RunRecord, StoreAdmin, StoreError,
};

/// The columns a [`RunRecord`] is read from.
pub(crate) const RUN_COLUMNS: &str = "id, tenant_id, workflow_name, workflow_version, \
    definition_id, state, input, context, steps, cursor, error, idempotency_key, concurrency_key, \
    schedule_id, trace_id, traceparent, cancel_request, last_seq, next_run_at, lease_owner, \
    lease_expires_at, created_at, updated_at, finished_at";

/// `SELECT` of one run by id within its tenant; `prefix` is empty or an
/// `EXPLAIN …` clause.
pub(crate) fn get_run_sql(prefix: &str) -> String {
    format!("{prefix}SELECT {RUN_COLUMNS} FROM runs WHERE id = $1 AND tenant_id = $2")
}

/// The listing query (keyset pagination, newest first, steps left empty);
/// `prefix` is empty or an `EXPLAIN …` clause.
pub(crate) fn list_runs_query<D: Dialect>(
    prefix: &str,
    tenant: &TenantId,
    f: &RunFilter,
) -> QueryBuilder<D::Db>
where
    <D::Db as Database>::Arguments: Default,
    String: for<'t> Encode<'t, D::Db> + Type<D::Db>,
    i64: for<'t> Encode<'t, D::Db> + Type<D::Db>,
    D::Ts: for<'t> Encode<'t, D::Db> + Type<D::Db>,
{
    let cols = RUN_COLUMNS.replace("steps,", "CAST('[]' AS TEXT) AS steps,");
    let mut q = QueryBuilder::<D::Db>::new(format!(
        "{prefix}SELECT {cols} FROM runs WHERE tenant_id = "
    ));
    q.push_bind(tenant.as_str().to_owned());
    if let Some(w) = &f.workflow_name {
        q.push(" AND workflow_name = ").push_bind(w.clone());
    }
    if !f.states.is_empty() {
        D::push_states(&mut q, &f.states);
    }
    if let Some(k) = &f.concurrency_key {
        q.push(" AND concurrency_key = ").push_bind(k.clone());
    }
    if let Some(t) = f.created_after {
        q.push(" AND created_at > ").push_bind(D::ts(t));
    }
    if let Some(t) = f.created_before {
        q.push(" AND created_at < ").push_bind(D::ts(t));
    }
    if let Some(k) = &f.idempotency_key {
        q.push(" AND idempotency_key = ").push_bind(k.clone());
    }
    if let Some(at) = &f.failed_at {
        // Not indexed on purpose: `cursor` changes at every step, and an
        // index on it would cost every checkpoint its HOT update. FAILED
        // runs are read through runs_tenant_state_created instead.
        q.push(" AND state = 'FAILED' AND (");
        if at.is_empty() {
            q.push("1 = 0");
        }
        for (i, (def, step)) in at.iter().enumerate() {
            q.push(if i == 0 { "(" } else { " OR (" });
            q.push("definition_id = ").push_bind(def.clone());
            q.push(" AND cursor = ").push_bind(i64::from(*step));
            q.push(")");
        }
        q.push(")");
    }
    for (key, value) in &f.search {
        q.push(" AND id IN (SELECT run_id FROM run_search WHERE tenant_id = ")
            .push_bind(tenant.as_str().to_owned());
        q.push(" AND key = ").push_bind(key.clone());
        q.push(" AND value = ").push_bind(value.clone());
        q.push(")");
    }
    if let Some((t, id)) = f.before {
        D::push_before(&mut q, t, id);
    }
    q.push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .push_bind(f.limit.max(1) as i64);
    q
}

/// The run holding the concurrency key `key` of `tenant` (nil if it was
/// freed meanwhile).
pub(crate) async fn key_holder(db: Db<'_>, tenant: &TenantId, key: &str) -> Result<RunId> {
    let sql = "SELECT run_id FROM concurrency_locks WHERE tenant_id = $1 AND key = $2";
    let holder = with_db!(db, pool, _D => {
        let row = sqlx::query(sql)
            .bind(tenant.as_str())
            .bind(key)
            .fetch_optional(pool)
            .await?;
        row.map(|r| r.uuid("run_id")).transpose()?
    });
    Ok(RunId(holder.unwrap_or_default()))
}

/// The run a start with the same idempotency key created: `Existing` when
/// the input matches, a conflict when it does not; none without such a run.
pub(crate) async fn find_idempotent(conn: Conn<'_>, new: &NewRun) -> Result<Option<CreateOutcome>> {
    let Some(key) = &new.idempotency_key else {
        return Ok(None);
    };
    let sql = format!(
        "SELECT {RUN_COLUMNS}, input_hash FROM runs \
         WHERE tenant_id = $1 AND workflow_name = $2 AND idempotency_key = $3"
    );
    with_db!(conn, c, _D => {
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(new.tenant_id.as_str())
            .bind(&new.definition.definition.name)
            .bind(key)
            .fetch_optional(&mut *c)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(if row.text("input_hash")? == new.input_hash {
            CreateOutcome::Existing(run_from_row(&row)?)
        } else {
            CreateOutcome::IdempotencyConflict
        }))
    })
}

/// The row `sql` finds by id (`$1`) within a tenant (`$2`), decoded.
pub(crate) async fn tenant_row<R>(
    db: Db<'_>,
    sql: String,
    id: Uuid,
    tenant: &TenantId,
    decode: impl Fn(&dyn ReadRow) -> Result<R> + Send,
) -> Result<Option<R>> {
    with_db!(db, pool, D => {
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(D::id(id))
            .bind(tenant.as_str())
            .fetch_optional(pool)
            .await?;
        row.as_ref().map(|r| decode(r)).transpose()
    })
}

/// Whether `table` has a row of id `id` that is the tenant's.
pub(crate) async fn tenant_owns(
    db: Db<'_>,
    table: &str,
    id: Uuid,
    tenant: &TenantId,
) -> Result<bool> {
    let sql = format!("SELECT 1 FROM {table} WHERE id = $1 AND tenant_id = $2");
    Ok(tenant_row(db, sql, id, tenant, |_| Ok(())).await?.is_some())
}

#[async_trait]
impl<T: SqlBackend> StoreAdmin for T {
    fn backend(&self) -> Backend {
        T::BACKEND
    }

    async fn migrate(&self) -> Result<()> {
        with_db!(self.writes(), pool, _D => T::migrator().run(pool).await?);
        // PostgreSQL: the days of events ahead (migration 0019). Not fatal:
        // an event of a missing day lands in the default partition, and
        // retention adds them again daily.
        if let Backed::Postgres(pool) = self.writes() {
            let today = chrono::Utc::now().date_naive();
            let added = crate::store::postgres::partitions::add_days(pool, today, DAYS_AHEAD).await;
            if let Err(error) = added {
                tracing::warn!(%error, "the days of run_events ahead were not added");
            }
        }
        Ok(())
    }

    async fn ready(&self) -> Result<bool> {
        let sql = "SELECT count(*) FROM _sqlx_migrations WHERE success";
        let applied: i64 = with_db!(self.reads(), pool, _D => {
            sqlx::query_scalar(sql).fetch_one(pool).await?
        });
        Ok(applied as usize >= T::migrator().iter().count())
    }
}

#[async_trait]
impl<T: SqlBackend> DefinitionStore for T {
    async fn put_definition(&self, def: &LoadedDefinition) -> Result<()> {
        let sql = "INSERT INTO workflow_definitions (id, name, version, body) \
                   VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING";
        with_db!(self.writes(), pool, D => {
            sqlx::query(sql)
                .bind(&def.id)
                .bind(&def.definition.name)
                .bind(D::int(def.definition.version))
                .bind(D::json(&def.snapshot))
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    async fn get_definition(&self, id: &str) -> Result<Option<WorkflowDefinition>> {
        let sql = "SELECT body FROM workflow_definitions WHERE id = $1";
        let body = with_db!(self.reads(), pool, _D => {
            let row = sqlx::query(sql).bind(id).fetch_optional(pool).await?;
            row.map(|r| r.json("body")).transpose()?
        });
        body.map(|b| {
            serde_json::from_value(b)
                .map_err(|e| StoreError::Corrupt(format!("definition {id}: {e}")))
        })
        .transpose()
    }

    async fn stored_definitions(
        &self,
        name: Option<&str>,
    ) -> Result<Vec<(String, WorkflowDefinition)>> {
        let sql = "SELECT id, body FROM workflow_definitions \
                   WHERE $1 = '' OR name = $1 ORDER BY id";
        let rows: Vec<(String, Value)> = with_db!(self.reads(), pool, _D => {
            let rows = sqlx::query(sql)
                .bind(name.unwrap_or(""))
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| Ok((r.text("id")?, r.json("body")?)))
                .collect::<Result<_>>()?
        });
        rows.into_iter()
            .map(|(id, body)| {
                serde_json::from_value(body)
                    .map(|d| (id.clone(), d))
                    .map_err(|e| StoreError::Corrupt(format!("definition {id}: {e}")))
            })
            .collect()
    }
}

#[async_trait]
impl<T: SqlBackend> RunReads for T {
    async fn get_run(&self, tenant: &TenantId, id: RunId) -> Result<Option<RunRecord>> {
        tenant_row(self.reads(), get_run_sql(""), id.0, tenant, |r| {
            run_from_row(r)
        })
        .await
    }

    async fn list_runs(&self, tenant: &TenantId, f: &RunFilter) -> Result<Vec<RunRecord>> {
        with_db!(self.reads(), pool, D => {
            let mut q = list_runs_query::<D>("", tenant, f);
            let rows = q.build().fetch_all(pool).await?;
            rows.iter().map(run_from_row).collect()
        })
    }

    async fn events_page(
        &self,
        tenant: &TenantId,
        id: RunId,
        after: u64,
        limit: Option<u32>,
    ) -> Result<Option<Vec<EventRecord>>> {
        let sql = "SELECT created_at FROM runs WHERE id = $1 AND tenant_id = $2".to_owned();
        let Some(created) =
            tenant_row(self.reads(), sql, id.0, tenant, |r| r.time("created_at")).await?
        else {
            return Ok(None);
        };
        // Bounded by the run's start (less a day for clocks that disagree),
        // so that PostgreSQL reads only the days of events since then.
        let since = created - chrono::Duration::days(1);
        let sql = "SELECT run_id, seq, at, kind, step, attempt, run_state, message, actor \
                   FROM run_events WHERE run_id = $1 AND seq > $2 AND at >= $3 ORDER BY seq LIMIT $4";
        with_db!(self.reads(), pool, D => {
            let rows = sqlx::query(sql)
                .bind(D::id(id.0))
                .bind(i64::try_from(after).unwrap_or(i64::MAX))
                .bind(D::ts(since))
                .bind(limit.map_or(i64::MAX, i64::from))
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(event_from_row)
                .collect::<Result<_>>()
                .map(Some)
        })
    }

    async fn count_by_state(&self, tenant: Option<&TenantId>) -> Result<Vec<(RunState, u64)>> {
        // Two statements, so a tenant's count reads its index range only.
        let rows: Vec<(String, i64)> = with_db!(self.reads(), pool, _D => match tenant {
            Some(t) => {
                sqlx::query_as(
                    "SELECT state, count(*) FROM runs WHERE tenant_id = $1 GROUP BY state",
                )
                .bind(t.as_str())
                .fetch_all(pool)
                .await?
            }
            None => {
                sqlx::query_as("SELECT state, count(*) FROM runs GROUP BY state")
                    .fetch_all(pool)
                    .await?
            }
        });
        parse_counts(rows)
    }

    async fn count_active(&self) -> Result<Vec<(RunState, u64)>> {
        let sql = format!(
            "SELECT state, count(*) FROM runs WHERE state IN {} GROUP BY state",
            active_states()
        );
        let rows: Vec<(String, i64)> = with_db!(self.reads(), pool, _D => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await?
        });
        parse_counts(rows)
    }
}

fn parse_counts(rows: Vec<(String, i64)>) -> Result<Vec<(RunState, u64)>> {
    rows.into_iter()
        .map(|(s, n)| {
            s.parse()
                .map(|st| (st, n as u64))
                .map_err(|e: UnknownState| StoreError::Corrupt(e.to_string()))
        })
        .collect()
}
