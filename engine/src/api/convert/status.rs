//! Engine errors to gRPC status codes. Database text never reaches a
//! client: it is logged with a reference the client gets instead.

use tonic::Status;

use crate::error::Error;

/// Maps an engine error to the status the contract documents. Store errors
/// are logged with a reference; the client sees only the reference.
pub fn status(e: Error) -> Status {
    match e {
        Error::InvalidArgument(m) => Status::invalid_argument(m),
        Error::RunNotFound(_) | Error::ScheduleNotFound(_) => Status::not_found(e.to_string()),
        Error::ScheduleExists(_) => Status::already_exists(e.to_string()),
        Error::ScheduleContention(_) => Status::aborted(e.to_string()),
        Error::NotFound(m) => Status::not_found(m),
        Error::FailedPrecondition(m) => Status::failed_precondition(m),
        Error::IdempotencyConflict { .. } => Status::already_exists(e.to_string()),
        Error::ConcurrencyKeyHeld { .. } | Error::Contention(_) => Status::aborted(e.to_string()),
        Error::Definition(d) => Status::failed_precondition(d.to_string()),
        Error::Store(s) => {
            let reference = uuid::Uuid::now_v7();
            if s.is_statement_timeout() {
                tracing::warn!(%reference, error = %s, "read cancelled by the API statement timeout");
                Status::deadline_exceeded(format!(
                    "the query ran longer than the API's statement timeout \
                     (database.api_statement_timeout_ms) and was cancelled: narrow the \
                     request (a filter, a smaller page_size) or retry later (ref {reference})"
                ))
            } else if s.is_unavailable() {
                tracing::warn!(%reference, error = %s, "store unavailable");
                Status::unavailable(format!(
                    "the store is unavailable; retry later (ref {reference})"
                ))
            } else {
                tracing::error!(%reference, error = %s, "store error");
                Status::internal(format!("internal error (ref {reference})"))
            }
        }
    }
}

/// An RPC of the published contract that this server does not carry out
/// yet: UNIMPLEMENTED (callers check the token and role first).
pub fn not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "{rpc} is part of the sagaflow.v1 API but not available on this server version yet"
    ))
}
