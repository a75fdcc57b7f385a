//! The store's error, and how a stored name it does not know (a cancel
//! request, an event kind) is reported: as a corrupt row.

use crate::run::model::{CancelRequest, EventKind};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A failure of the store. The text may contain SQL or database detail: log
/// it, never show it to a client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A row that does not decode (an unknown state, malformed JSON).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database could not be reached (kept as text so one failure can
    /// be reported to every caller that shared it).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("unsupported database url {0:?}: use postgres://… or sqlite://…")]
    UnsupportedUrl(String),
}

impl StoreError {
    /// Whether the database could not be reached at all (as opposed to a
    /// statement failing): the API answers UNAVAILABLE for these.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Unavailable(_) => true,
            StoreError::Database(e) => unreachable_database(e),
            _ => false,
        }
    }
}

impl StoreError {
    /// Whether the database cancelled the statement because it ran past
    /// its pool's `statement_timeout` (SQLSTATE 57014): the API answers
    /// DEADLINE_EXCEEDED for these.
    pub fn is_statement_timeout(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => e.code().as_deref() == Some("57014"),
            _ => false,
        }
    }
}

/// Whether a query failed because the database could not be reached or no
/// pool connection came free in time (not because the statement failed):
/// also when the server ended the connection (SQLSTATE class 08 but
/// 08P01, a protocol violation, which retrying would not mend; and
/// 57P01–57P03: shut down, crashed, not accepting connections yet).
pub fn unreachable_database(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| match &*c {
            "08P01" => false,
            "57P01" | "57P02" | "57P03" => true,
            c => c.starts_with("08"),
        }),
        _ => false,
    }
}

// Decoding a stored name is the store's concern: a name it does not know is
// a corrupt row.
impl CancelRequest {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "compensate" => Ok(Self::Compensate),
            "terminate" => Ok(Self::Terminate),
            other => Err(StoreError::Corrupt(format!("cancel request {other:?}"))),
        }
    }
}

impl EventKind {
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt(format!("event kind {s:?}")))
    }
}
