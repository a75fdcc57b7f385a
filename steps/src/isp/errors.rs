//! How domain errors reach the engine: which are worth a retry, and which
//! leave the outcome unknown. A database error that may have struck after
//! the statement or the COMMIT reached the server (the connection broke, the
//! protocol stream was cut) is `uncertain`: the change may be committed, so a
//! step that gives up after it is compensated. Errors raised before anything
//! was sent (no connection from the pool) are plain `database` errors.

use sagaflow_engine::handler::StepError;

use crate::ipam::IpamError;
use crate::lifecycle::repo::LifecycleError;
use crate::subscriber::SubscriberError;

/// The step error of a database error: `uncertain` when the server may
/// have applied the work, `database` otherwise; both are retried.
pub(crate) fn database_error(e: &sqlx::Error, message: String) -> StepError {
    let uncertain = matches!(
        e,
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed
    );
    StepError::retryable(if uncertain { "uncertain" } else { "database" }, message)
}

impl From<LifecycleError> for StepError {
    fn from(e: LifecycleError) -> Self {
        let kind = match &e {
            LifecycleError::Invalid(_) => "invalid_transition",
            LifecycleError::NotFound(_) => "not_found",
            LifecycleError::AddressTaken { .. } => "address_taken",
            LifecycleError::Corrupt(_) => "corrupt",
            LifecycleError::Database(d) => return database_error(d, e.to_string()),
            LifecycleError::Contention => {
                return StepError::retryable("database", e.to_string());
            }
        };
        StepError::fatal(kind, e.to_string())
    }
}

impl From<IpamError> for StepError {
    fn from(e: IpamError) -> Self {
        let kind = match e {
            IpamError::Lifecycle(l) => return l.into(),
            IpamError::Database(ref d) => return database_error(d, e.to_string()),
            IpamError::UnknownPool { .. } | IpamError::NoPool { .. } => "no_pool",
            IpamError::Exhausted { .. } => "pool_exhausted",
            IpamError::InvalidPool { .. } | IpamError::PoolChanged { .. } => "invalid_pool",
            IpamError::Corrupt(_) => "corrupt",
        };
        StepError::fatal(kind, e.to_string())
    }
}

impl From<SubscriberError> for StepError {
    fn from(e: SubscriberError) -> Self {
        let kind = match &e {
            SubscriberError::Exists(..) => "subscriber_exists",
            SubscriberError::ProfileExists(..) => "profile_exists",
            SubscriberError::Corrupt(_) => "corrupt",
            SubscriberError::Database(d) => return database_error(d, e.to_string()),
        };
        StepError::fatal(kind, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
