//! The PostgreSQL backend: the production store. Many engine replicas share
//! one database and claim work with `FOR UPDATE SKIP LOCKED`. Every hot-path
//! write is a single statement (a CTE), so a checkpoint is one round trip.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Row};
use uuid::Uuid;

use super::*;
use crate::definition::ConcurrencyPolicy;
use crate::ids::{LeaseToken, RunId, TenantId};
use sqlx::AssertSqlSafe;

use crate::store::sql::{self, Conn, FireTx, RUN_COLUMNS, RunInserted, SqlBackend, run_from_row};
use crate::store::sql_terms;

pub mod ceiling;
mod checkpoint;
mod dialect;
mod held;
pub mod partitions;
mod runs;
pub mod scale;
mod store_impl;
pub(in crate::store) mod webhooks;

pub(crate) use dialect::Pg;
use held::HeldConnections;
use runs::*;
use store_impl::*;

/// The engine's migrations (`migrations/engine/postgres`). They share
/// `_sqlx_migrations` with the domain's, whose versions this set does not
/// list: those are ignored, not refused.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate::Migrator {
    ignore_missing: true,
    ..sqlx::migrate!("../migrations/engine/postgres")
};

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgStore {
    /// Writes, watches, the scheduler and the domain repositories.
    pool: PgPool,
    /// The reads of runs, events and definitions ([`SqlBackend::reads`]):
    /// the API's, with a short `statement_timeout` of their own.
    api: PgPool,
    /// The executor's hot path only (claim, checkpoint, renewal, release),
    /// so no load on the API can take the connections leases depend on.
    hot: PgPool,
    /// Connections of `hot` the checkpoint writers keep between batches.
    held: HeldConnections,
    /// Connections of `pool` starts keep between inserts.
    held_starts: HeldConnections,
}

/// How the store's three pools are sized and bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// Connections of the general pool (writes, watches, scheduler,
    /// domain).
    pub max_connections: u32,
    /// Connections of the pool the reads of runs and histories use.
    pub api_connections: u32,
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
    /// Longest statement on the reads' pool: a read that would run longer
    /// is cancelled and the API answers DEADLINE_EXCEEDED.
    pub api_statement_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            api_connections: 8,
            hot_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            hot_statement_timeout: Duration::from_secs(5),
            api_statement_timeout: Duration::from_secs(5),
        }
    }
}

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

    /// Applies the embedded migrations.
    pub async fn migrate(&self) -> Result<()> {
        StoreAdmin::migrate(self).await
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

    /// Connects the three pools as `o` says. Every connection has the pages
    /// it writes out flushed every 256 kB (`backend_flush_after`), as
    /// PostgreSQL's own background writer and checkpointer do: a backend
    /// evicting pages another dirtied (retention's deletes) otherwise
    /// leaves them to the kernel, which writes hundreds of MB back in one
    /// burst that every commit's WAL flush then waits behind. Retention
    /// and the domain use these connections too (`pool()`).
    pub async fn connect_opts(conn: PgConnectOptions, o: &PgOptions) -> Result<Self> {
        let open = |max: u32, timeout: Duration, name: &str| {
            let ms = timeout.as_millis().to_string();
            PgPoolOptions::new()
                .max_connections(max.max(1))
                .acquire_timeout(o.acquire_timeout)
                .connect_with(conn.clone().application_name(name).options([
                    ("statement_timeout", ms.as_str()),
                    ("backend_flush_after", "256kB"),
                ]))
        };
        let pool = open(o.max_connections, o.statement_timeout, "sagaflow").await?;
        let api = open(o.api_connections, o.api_statement_timeout, "sagaflow-api").await?;
        let hot = open(
            o.hot_connections,
            o.hot_statement_timeout,
            "sagaflow-executor",
        )
        .await?;
        Ok(Self {
            pool,
            api,
            hot,
            held: HeldConnections::of_pool(o.hot_connections, 2),
            held_starts: HeldConnections::of_pool(o.max_connections, 4),
        })
    }

    /// Wraps an existing pool, for every use (tests use the one
    /// `#[sqlx::test]` gives).
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            hot: pool.clone(),
            held: HeldConnections::default(),
            held_starts: HeldConnections::default(),
            api: pool.clone(),
            pool,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The plan PostgreSQL picks for [`RunReads::get_run`] (executed, read
    /// only).
    pub async fn explain_get(&self, tenant: &TenantId, id: RunId) -> Result<String> {
        let rows: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql::get_run_sql(EXPLAIN)))
            .bind(id.0)
            .bind(tenant.as_str())
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.join("\n"))
    }

    /// The plan PostgreSQL picks for [`RunReads::list_runs`] with `f`
    /// (executed, read only).
    pub async fn explain_list(&self, tenant: &TenantId, f: &RunFilter) -> Result<String> {
        let mut q = sql::list_runs_query::<Pg>(EXPLAIN, tenant, f);
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

/// The runs whose ids are in the array parameter `ids` (e.g. `$1`), locked
/// in id order: a CTE body for the statements that update many runs at
/// once off the hot path (lease renewals and releases; signal batches lock
/// the same way, checkpoint batches update in id order). Left to the
/// join's plan, a renewal of many runs would lock them in the table's
/// order, and with a checkpoint batch sharing two of its runs each could
/// wait for the other until the deadlock detector broke one (a second's
/// stall for every run in it).
pub(super) fn lock_runs_in_id_order(ids: &str) -> String {
    format!("SELECT id FROM runs WHERE id = ANY({ids}::uuid[]) ORDER BY id FOR NO KEY UPDATE")
}

/// A duration in whole microseconds, for SQL that adds it to the
/// database's clock.
pub(super) fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

const EXPLAIN: &str = "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) ";
