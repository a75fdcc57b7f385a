//! How PostgreSQL stores what the shared queries of `store::sql` bind and
//! read: UUIDs, TIMESTAMPTZ, JSONB, INT4; and the pools they run on.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::{MIGRATOR, PgStore};
use crate::ids::RunId;
use crate::run::state::RunState;
use crate::store::sql::{Backed, Db, Dialect, ReadRow, SqlBackend, common_columns};
use crate::store::{Backend, Result};

/// The PostgreSQL [`Dialect`].
pub(crate) enum Pg {}

impl Dialect for Pg {
    type Db = Postgres;
    type Id = Uuid;
    type Ts = DateTime<Utc>;
    type Json<'a> = &'a Value;
    type Int = i32;

    const UNPAUSED: &'static str = "NOT s.paused";
    const PARTITIONED_EVENTS: bool = true;
    const UNFLUSHED_COMMIT: Option<&'static str> = Some("SET LOCAL synchronous_commit = off");

    fn id(u: Uuid) -> Uuid {
        u
    }

    fn ts(t: DateTime<Utc>) -> DateTime<Utc> {
        t
    }

    fn json(v: &Value) -> &Value {
        v
    }

    fn int(n: u32) -> i32 {
        n as i32
    }

    fn push_states(q: &mut QueryBuilder<Postgres>, states: &[RunState]) {
        let states: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        q.push(" AND state = ANY(").push_bind(states).push(")");
    }

    fn push_in_ids(q: &mut QueryBuilder<Postgres>, col: &str, ids: &[Uuid]) {
        q.push(format!(" {col} = ANY("))
            .push_bind(ids.to_vec())
            .push(")");
    }

    fn push_before(q: &mut QueryBuilder<Postgres>, t: DateTime<Utc>, id: RunId) {
        q.push(" AND (created_at, id) < (")
            .push_bind(t)
            .push(", ")
            .push_bind(id.0)
            .push(")");
    }
}

impl ReadRow for PgRow {
    common_columns!();

    fn int(&self, col: &str) -> Result<u32> {
        Ok(self.try_get::<i32, _>(col)? as u32)
    }

    fn uuid(&self, col: &str) -> Result<Uuid> {
        Ok(self.try_get(col)?)
    }

    fn opt_uuid(&self, col: &str) -> Result<Option<Uuid>> {
        Ok(self.try_get(col)?)
    }

    fn time(&self, col: &str) -> Result<DateTime<Utc>> {
        Ok(self.try_get(col)?)
    }

    fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>> {
        Ok(self.try_get(col)?)
    }

    fn json(&self, col: &str) -> Result<Value> {
        Ok(self.try_get(col)?)
    }
}

impl SqlBackend for PgStore {
    const BACKEND: Backend = Backend::Postgres;

    fn migrator() -> &'static sqlx::migrate::Migrator {
        &MIGRATOR
    }

    /// The reads' pool, with the API's statement timeout; the executor's
    /// own is kept for the hot path.
    fn reads(&self) -> Db<'_> {
        Backed::Postgres(&self.api)
    }

    fn writes(&self) -> Db<'_> {
        Backed::Postgres(&self.pool)
    }
}
