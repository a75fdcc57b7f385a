//! How SQLite stores what the shared queries of `store::sql` bind and
//! read: ids as TEXT, timestamps as INTEGER microseconds, JSON as TEXT;
//! and the pools they run on (the reader pool, the single writer).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};
use uuid::Uuid;

use super::{MIGRATOR, SqliteStore, from_micros, json, micros, opt_from_micros, uuid_col};
use crate::ids::RunId;
use crate::run::state::RunState;
use crate::store::sql::{Backed, Db, Dialect, ReadRow, SqlBackend, common_columns};
use crate::store::{Backend, Result, StoreError};

/// The SQLite [`Dialect`].
pub(crate) enum Lite {}

impl Dialect for Lite {
    type Db = Sqlite;
    type Id = String;
    type Ts = i64;
    type Json<'a> = String;
    type Int = i64;

    const UNPAUSED: &'static str = "s.paused = 0";
    const PARTITIONED_EVENTS: bool = false;
    const UNFLUSHED_COMMIT: Option<&'static str> = None;

    fn push_in_ids(q: &mut QueryBuilder<Sqlite>, col: &str, ids: &[Uuid]) {
        q.push(format!(" {col} IN ("));
        let mut sep = q.separated(", ");
        for id in ids {
            sep.push_bind(id.to_string());
        }
        q.push(")");
    }

    fn id(u: Uuid) -> String {
        u.to_string()
    }

    fn ts(t: DateTime<Utc>) -> i64 {
        micros(t)
    }

    fn json(v: &Value) -> String {
        v.to_string()
    }

    fn int(n: u32) -> i64 {
        i64::from(n)
    }

    fn push_states(q: &mut QueryBuilder<Sqlite>, states: &[RunState]) {
        q.push(" AND state IN (");
        let mut sep = q.separated(", ");
        for s in states {
            sep.push_bind(s.as_str());
        }
        q.push(")");
    }

    fn push_before(q: &mut QueryBuilder<Sqlite>, t: DateTime<Utc>, id: RunId) {
        q.push(" AND (created_at < ")
            .push_bind(micros(t))
            .push(" OR (created_at = ")
            .push_bind(micros(t))
            .push(" AND id < ")
            .push_bind(id.to_string())
            .push("))");
    }
}

impl ReadRow for SqliteRow {
    common_columns!();

    fn int(&self, col: &str) -> Result<u32> {
        Ok(self.try_get::<i64, _>(col)? as u32)
    }

    fn uuid(&self, col: &str) -> Result<Uuid> {
        uuid_col(self, col)
    }

    fn opt_uuid(&self, col: &str) -> Result<Option<Uuid>> {
        let v: Option<String> = self.try_get(col)?;
        v.map(|s| Uuid::parse_str(&s).map_err(|e| StoreError::Corrupt(format!("{col}: {e}"))))
            .transpose()
    }

    fn time(&self, col: &str) -> Result<DateTime<Utc>> {
        from_micros(self.try_get(col)?)
    }

    fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>> {
        opt_from_micros(self.try_get(col)?)
    }

    fn json(&self, col: &str) -> Result<Value> {
        json(&self.try_get::<String, _>(col)?, col)
    }
}

impl SqlBackend for SqliteStore {
    const BACKEND: Backend = Backend::Sqlite;

    fn migrator() -> &'static sqlx::migrate::Migrator {
        &MIGRATOR
    }

    fn reads(&self) -> Db<'_> {
        Backed::Sqlite(&self.reader)
    }

    fn writes(&self) -> Db<'_> {
        Backed::Sqlite(&self.writer)
    }
}
