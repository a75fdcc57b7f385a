//! The cold-path queries, written once for both backends: definitions,
//! reading runs, schedules and their fires, readiness. Each query is
//! written with `$n` placeholders and only SQL both PostgreSQL and SQLite
//! speak, and runs through [`with_db!`] on whichever backend's pool or
//! connection it is given: the body is compiled once per backend, with
//! that backend's [`Dialect`] (how ids, timestamps and JSON are bound) and
//! its rows read through [`ReadRow`]. The hot path (claim, checkpoint
//! batch, renew and release, key hand-over) stays in each backend.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, QueryBuilder, SqliteConnection, SqlitePool};
use uuid::Uuid;

use super::{Backend, Result};
use crate::ids::RunId;
use crate::run::state::RunState;

mod fires;
mod retention;
mod rows;
mod runs;
mod schedules;
mod signals;
pub(crate) mod webhooks;

pub(crate) use fires::{FireTx, RunInserted};
pub(crate) use rows::{event_from_row, run_from_row};
pub(crate) use runs::{RUN_COLUMNS, find_idempotent, get_run_sql, key_holder, list_runs_query};
pub(crate) use signals::take_signals;

/// One value per backend: a pool, a connection.
#[derive(Clone, Copy)]
pub(crate) enum Backed<P, L> {
    Postgres(P),
    Sqlite(L),
}

/// The pool a cold-path query runs on.
pub(crate) type Db<'a> = Backed<&'a PgPool, &'a SqlitePool>;

/// The connection (or open transaction) a query runs on.
pub(crate) type Conn<'a> = Backed<&'a mut PgConnection, &'a mut SqliteConnection>;

impl<'a> From<&'a mut PgConnection> for Conn<'a> {
    fn from(c: &'a mut PgConnection) -> Self {
        Backed::Postgres(c)
    }
}

impl<'a> From<&'a mut SqliteConnection> for Conn<'a> {
    fn from(c: &'a mut SqliteConnection) -> Self {
        Backed::Sqlite(c)
    }
}

/// Runs `$body` with `$handle` bound to the PostgreSQL or the SQLite side
/// of `$on` (a [`Backed`]) and the type `$d` naming that backend's
/// [`Dialect`]. The body is compiled once per backend, so the same query
/// code serves both.
macro_rules! with_db {
    ($on:expr, $handle:ident, $d:ident => $body:expr) => {
        match $on {
            $crate::store::sql::Backed::Postgres($handle) => {
                #[allow(dead_code)]
                type $d = $crate::store::postgres::Pg;
                $body
            }
            $crate::store::sql::Backed::Sqlite($handle) => {
                #[allow(dead_code)]
                type $d = $crate::store::sqlite::Lite;
                $body
            }
        }
    };
}
pub(crate) use with_db;

/// How a backend stores what the shared queries bind: ids, timestamps,
/// JSON, 32-bit integers; and the few fragments spelled differently.
pub(crate) trait Dialect {
    type Db: sqlx::Database;
    type Id;
    type Ts;
    type Json<'a>;
    type Int;

    /// The condition "the schedule `s` is not paused", as its partial
    /// index is written.
    const UNPAUSED: &'static str;

    /// Whether `run_events` is partitioned by day (PostgreSQL).
    const PARTITIONED_EVENTS: bool;

    fn id(u: Uuid) -> Self::Id;
    fn ts(t: DateTime<Utc>) -> Self::Ts;
    fn json(v: &Value) -> Self::Json<'_>;
    fn int(n: u32) -> Self::Int;

    /// Appends ` AND state` in `states`.
    fn push_states(q: &mut QueryBuilder<Self::Db>, states: &[RunState]);

    /// Appends the keyset condition: runs strictly older than `(t, id)`.
    fn push_before(q: &mut QueryBuilder<Self::Db>, t: DateTime<Utc>, id: RunId);

    /// Appends ` {col}` in `ids` (one array parameter where the backend
    /// has arrays, so a statement of a thousand ids is planned as one).
    fn push_in_ids(q: &mut QueryBuilder<Self::Db>, col: &str, ids: &[Uuid]);

    /// The statement that lets the current transaction commit without
    /// waiting for its flush, where the backend has one: for writes that
    /// are safe to lose in a crash (they are made again).
    const UNFLUSHED_COMMIT: Option<&'static str>;
}

/// Reading a column of a row, as the backend stores it.
pub(crate) trait ReadRow {
    fn text(&self, col: &str) -> Result<String>;
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    fn int64(&self, col: &str) -> Result<i64>;
    fn flag(&self, col: &str) -> Result<bool>;
    /// A 32-bit column (a version, a cursor, an attempt).
    fn int(&self, col: &str) -> Result<u32>;
    fn uuid(&self, col: &str) -> Result<Uuid>;
    fn opt_uuid(&self, col: &str) -> Result<Option<Uuid>>;
    fn time(&self, col: &str) -> Result<DateTime<Utc>>;
    fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>>;
    fn json(&self, col: &str) -> Result<Value>;
}

/// The [`ReadRow`] methods of the columns both backends store alike (text,
/// 64-bit integers, booleans), for a backend's `impl ReadRow`.
macro_rules! common_columns {
    () => {
        fn text(&self, col: &str) -> $crate::store::Result<String> {
            Ok(sqlx::Row::try_get(self, col)?)
        }

        fn opt_text(&self, col: &str) -> $crate::store::Result<Option<String>> {
            Ok(sqlx::Row::try_get(self, col)?)
        }

        fn int64(&self, col: &str) -> $crate::store::Result<i64> {
            Ok(sqlx::Row::try_get(self, col)?)
        }

        fn flag(&self, col: &str) -> $crate::store::Result<bool> {
            Ok(sqlx::Row::try_get(self, col)?)
        }
    };
}
pub(crate) use common_columns;

/// A backend whose cold-path queries are the ones of this module: it names
/// the pools they run on, and the store traits of those concerns are
/// implemented for it here, once.
pub(crate) trait SqlBackend: Send + Sync + 'static {
    const BACKEND: Backend;

    /// The backend's embedded migrations.
    fn migrator() -> &'static sqlx::migrate::Migrator;

    /// The pool reads run on.
    fn reads(&self) -> Db<'_>;

    /// The pool writes run on.
    fn writes(&self) -> Db<'_>;
}
