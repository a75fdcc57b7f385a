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
use crate::definition::ConcurrencyPolicy;
use crate::ids::{LeaseToken, RunId};
use sqlx::AssertSqlSafe;

use crate::store::sql::{self, Conn, FireTx, RUN_COLUMNS, RunInserted, run_from_row};
use crate::store::sql_terms;

mod checkpoint;
mod dialect;
mod runs;
mod store_impl;
pub(in crate::store) mod webhooks;

use checkpoint::*;
pub(crate) use dialect::Lite;
use runs::*;

/// The engine's migrations (`migrations/engine/sqlite`). They share
/// `_sqlx_migrations` with the domain's, whose versions this set does not
/// list: those are ignored, not refused.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate::Migrator {
    ignore_missing: true,
    ..sqlx::migrate!("../migrations/engine/sqlite")
};

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(super) writer: SqlitePool,
    pub(super) reader: SqlitePool,
}

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

    /// Applies the embedded migrations.
    pub async fn migrate(&self) -> Result<()> {
        StoreAdmin::migrate(self).await
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
            .test_before_acquire(false)
            .connect_with(opts.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
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
