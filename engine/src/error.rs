//! The engine's error type. Callers (the gRPC edge) map each variant to a
//! status code; database text stays in [`Error::Store`] and is never shown
//! to clients.

use crate::ids::RunId;
use crate::run::state::InvalidTransition;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input from a caller: unknown workflow, input failing the schema,
    /// a step name that does not exist.
    #[error("{0}")]
    InvalidArgument(String),
    #[error("workflow run {0} not found")]
    RunNotFound(RunId),
    /// Something else the caller named does not exist in its tenant.
    #[error("{0}")]
    NotFound(String),
    /// The action does not fit the run's current state.
    #[error("{0}")]
    FailedPrecondition(String),
    #[error(
        "idempotency key {key:?} was already used for workflow {workflow:?} with a different input"
    )]
    IdempotencyConflict { workflow: String, key: String },
    #[error("concurrency key {key:?} is held by active run {holder}")]
    ConcurrencyKeyHeld { key: String, holder: RunId },
    /// The run kept changing under an operator action; the caller may retry.
    #[error("run {0} changed while the action was applied; retry the call")]
    Contention(RunId),
    #[error("invalid workflow definition: {0}")]
    Definition(#[from] crate::definition::DefinitionError),
    /// The store failed. The text is for logs only.
    #[error("store error: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("schedule {0} not found")]
    ScheduleNotFound(crate::schedule::model::ScheduleId),
    /// The tenant already has a schedule of that name (ALREADY_EXISTS).
    #[error("a schedule named {0:?} already exists")]
    ScheduleExists(String),
    /// The schedule kept changing under the call; the caller may retry.
    #[error("schedule {0} changed while the call was applied; retry the call")]
    ScheduleContention(crate::schedule::model::ScheduleId),
}

impl From<InvalidTransition> for Error {
    fn from(e: InvalidTransition) -> Self {
        Error::FailedPrecondition(e.to_string())
    }
}

impl From<crate::schedule::model::ScheduleError> for Error {
    fn from(e: crate::schedule::model::ScheduleError) -> Self {
        Error::InvalidArgument(e.to_string())
    }
}
