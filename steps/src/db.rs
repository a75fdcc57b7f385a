//! Database access for the domain tables, on either backend.
//!
//! The domain repositories write their SQL once, with `$n` placeholders and
//! only features both PostgreSQL and SQLite have (`RETURNING`, `ON
//! CONFLICT`, partial indexes), and run it through [`with_db!`] on whichever
//! pool [`DomainDb`] holds. Timestamps are bound as `DateTime<Utc>`
//! (TIMESTAMPTZ on PostgreSQL, RFC 3339 text on SQLite), JSON as
//! [`sqlx::types::Json`], ids as integers or text.
//!
//! A database error reaches the engine through [`database_error`]: one that
//! may have struck after the statement or the COMMIT reached the server (the
//! connection broke, the protocol stream was cut) is `uncertain`: the change
//! may be committed, so a step that gives up after it is compensated. Errors
//! raised before anything was sent (no connection from the pool) are plain
//! `database` errors.

use sagaflow_engine::handler::StepError;
use sqlx::{PgPool, SqlitePool};

/// The database the domain tables live in: the engine's own.
#[derive(Debug, Clone)]
pub enum DomainDb {
    /// Production: PostgreSQL.
    Postgres(PgPool),
    /// `sagaflow dev`: the SQLite store's single writer connection (SQLite
    /// has one writer, so every domain write goes through it).
    Sqlite(SqlitePool),
}

impl DomainDb {
    pub fn is_postgres(&self) -> bool {
        matches!(self, DomainDb::Postgres(_))
    }

    /// The row-lock clause for a `SELECT` inside a transaction: `FOR UPDATE`
    /// on PostgreSQL; nothing on SQLite, whose single writer already
    /// serializes write transactions.
    pub(crate) fn for_update(&self) -> &'static str {
        match self {
            DomainDb::Postgres(_) => " FOR UPDATE",
            DomainDb::Sqlite(_) => "",
        }
    }
}

/// Runs `$body` with `$pool` bound to the PostgreSQL or the SQLite pool of
/// `$db`. The body is compiled once per backend, so the same query code
/// serves both.
macro_rules! with_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::DomainDb::Postgres($pool) => $body,
            $crate::db::DomainDb::Sqlite($pool) => $body,
        }
    };
}
pub(crate) use with_db;

/// Whether `e` is a unique-constraint violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// The step error of a database error: `uncertain` when the server may
/// have applied the work, `database` otherwise; both are retried.
pub(crate) fn database_error(e: &sqlx::Error, message: String) -> StepError {
    let uncertain = matches!(
        e,
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed
    );
    StepError::retryable(if uncertain { "uncertain" } else { "database" }, message)
}

#[cfg(test)]
mod tests {
    use sagaflow_engine::handler::StepError;

    use crate::ipam::IpamError;
    use crate::lifecycle::repo::LifecycleError;
    use crate::subscriber::SubscriberError;

    #[test]
    fn a_broken_connection_is_uncertain_and_an_unsent_statement_is_not() {
        let io = || sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        for e in [
            StepError::from(IpamError::Database(io())),
            StepError::from(LifecycleError::Database(io())),
            StepError::from(SubscriberError::Database(io())),
            StepError::from(SubscriberError::Database(sqlx::Error::Protocol(
                "unexpected end of stream".into(),
            ))),
        ] {
            assert_eq!(e.kind(), "uncertain", "{e}");
            assert!(e.outcome_unknown() && e.is_retryable(), "{e}");
        }
        let e = StepError::from(IpamError::Database(sqlx::Error::PoolTimedOut));
        assert_eq!(e.kind(), "database");
        assert!(e.is_retryable() && !e.outcome_unknown());
    }
}
