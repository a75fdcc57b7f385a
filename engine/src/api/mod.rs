//! The gRPC API: `sagaflow.v1.WorkflowService` (and, in their own modules,
//! the other services), authentication, and proto ⇄ domain conversion.

pub mod audit;
pub mod auth;
pub mod convert;
pub mod history;
mod listing;
mod schedules;
mod workflows;

pub use convert::schedule as schedule_to_proto;
pub use schedules::ScheduleApi;
pub use workflows::WorkflowApi;

/// Limits the API enforces.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// Largest input, context patch or output accepted, in bytes (encoded).
    pub max_payload_bytes: usize,
    /// How often a watch looks for events written by other replicas.
    pub watch_poll: std::time::Duration,
    /// How many WatchWorkflow streams may be open at once in this process;
    /// past it a new watch is refused with RESOURCE_EXHAUSTED.
    pub max_watches: usize,
    /// How many runs BulkOperate acts on per second.
    pub bulk_per_second: u32,
}

impl ApiOptions {
    /// The largest request either transport accepts, in bytes: the payload
    /// limit with room for the rest of the message (at least 4 MiB).
    pub fn max_request_bytes(&self) -> usize {
        self.max_payload_bytes.saturating_mul(4).max(4 << 20)
    }
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self {
            max_payload_bytes: 256 * 1024,
            watch_poll: std::time::Duration::from_millis(250),
            max_watches: 1000,
            bulk_per_second: 50,
        }
    }
}

/// Checks a text field of a request: length and no NUL characters.
pub fn check_text(field: &str, value: &str, max: usize) -> Result<(), tonic::Status> {
    if value.chars().count() > max {
        return Err(tonic::Status::invalid_argument(format!(
            "{field} is longer than {max} characters"
        )));
    }
    if value.contains('\0') {
        return Err(tonic::Status::invalid_argument(format!(
            "{field} must not contain NUL (\\u0000) characters"
        )));
    }
    Ok(())
}

/// Parses a run id; the message says what a valid one looks like.
pub(crate) fn run_id(field: &str, s: &str) -> Result<crate::ids::RunId, tonic::Status> {
    if s.len() == 36
        && let Ok(id) = s.parse()
    {
        return Ok(id);
    }
    let shown: String = s.chars().take(40).collect();
    Err(tonic::Status::invalid_argument(format!(
        "{field} must be a workflow id (a UUID such as 0190a5d2-ac96-7d4b-bcce-b302099a8057), not {shown:?}"
    )))
}
