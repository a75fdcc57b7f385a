//! What the store is handed and answers about signals (`SignalWorkflow`):
//! a signal to keep for a run, the answer, and the signal a checkpoint
//! marks as taken. The SQL is in each backend's `signals.rs`.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::RunRecord;
use crate::ids::{RunId, TenantId};

pub use crate::run::wait::{Signal, SignalTaken};

/// A signal to store. In one transaction the store refuses it if the run
/// is terminal, keeps it (once per `(run, name, key)` when a key is given),
/// appends a `signal_received` event, and makes the run due at `now` if it
/// is RUNNING and no executor holds it (its waiting step looks at it).
#[derive(Debug, Clone)]
pub struct SignalWrite {
    pub tenant_id: TenantId,
    pub run_id: RunId,
    pub name: String,
    /// Empty: every call is a new signal.
    pub idempotency_key: String,
    pub payload: Value,
    pub actor: String,
    pub now: DateTime<Utc>,
}

/// The store's answer to a [`SignalWrite`].
#[derive(Debug, Clone, PartialEq)]
pub enum SignalAck {
    /// Kept. `run` is the run with the signal's event counted
    /// (`last_seq`) and, if the signal made it due, its `next_run_at`.
    Stored {
        run: Box<RunRecord>,
    },
    /// The key was seen before: nothing changed. `taken`: a step took
    /// that earlier signal.
    Duplicate {
        taken: bool,
    },
    /// The run is terminal: nothing stored.
    Terminal {
        run: Box<RunRecord>,
    },
    NotFound,
}

/// The event message of a received signal.
pub(super) fn received_message(w: &SignalWrite) -> String {
    if w.idempotency_key.is_empty() {
        format!("signal {}", w.name)
    } else {
        format!("signal {} (key {})", w.name, w.idempotency_key)
    }
}
