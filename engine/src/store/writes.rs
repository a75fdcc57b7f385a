//! What callers hand the store to write (a new run, a checkpoint, an
//! operator's write) and what it answers, with the run filter and the
//! stored definition.

use chrono::{DateTime, Utc};
use serde_json::Value;

use std::sync::Arc;

use super::{CancelRequest, NewDelivery, NewEvent, RunRecord, StepRecord, initial_steps};
use crate::definition::{ConcurrencyPolicy, LoadedDefinition, WorkflowDefinition};
use crate::ids::{LeaseToken, RunId, ScheduleId, TenantId};
use crate::run::state::RunState;

/// A run to create.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: RunId,
    pub tenant_id: TenantId,
    pub definition: Arc<LoadedDefinition>,
    pub input: Value,
    /// Hex SHA-256 of the canonical input, compared on idempotent repeats.
    pub input_hash: String,
    pub idempotency_key: Option<String>,
    pub concurrency: Option<(String, ConcurrencyPolicy)>,
    /// The run's search attributes, `(attribute, value)`, indexed with it.
    pub search: Vec<(String, String)>,
    pub schedule_id: Option<ScheduleId>,
    pub traceparent: Option<String>,
    pub trace_id: Option<String>,
    pub actor: String,
    pub now: DateTime<Utc>,
    /// Taken by the insert itself for an executor of this process that has
    /// a free slot (an eager start): the run needs no claim.
    pub lease: Option<StartLease>,
}

/// A lease a start takes on the run it inserts, for the executor the run is
/// handed to. It runs out on the database's clock, `lease` after the
/// insert, like a claimed one.
#[derive(Debug, Clone)]
pub struct StartLease {
    pub owner: String,
    pub token: LeaseToken,
    pub lease: std::time::Duration,
}

impl NewRun {
    /// When the run's time in the queue ends, should it be queued: `now`
    /// plus the workflow's `queue_ttl_ms`; none: no limit.
    pub fn queue_expires_at(&self) -> Option<DateTime<Utc>> {
        let ttl = self
            .definition
            .definition
            .concurrency
            .as_ref()?
            .queue_ttl()?;
        Some(self.now + chrono::Duration::from_std(ttl).ok()?)
    }

    /// The run as `create_run` stores it when it is due at once (no key to
    /// wait for): built in memory, so a start needs no read after its write.
    pub fn record(&self) -> RunRecord {
        let def = &self.definition.definition;
        RunRecord {
            id: self.id,
            tenant_id: self.tenant_id.clone(),
            workflow_name: def.name.clone(),
            workflow_version: def.version,
            definition_id: self.definition.id.clone(),
            state: RunState::Pending,
            input: self.input.clone(),
            context: self.input.clone(),
            steps: initial_steps(def),
            cursor: 0,
            error: None,
            idempotency_key: self.idempotency_key.clone(),
            concurrency_key: self.concurrency.as_ref().map(|c| c.0.clone()),
            schedule_id: self.schedule_id,
            trace_id: self.trace_id.clone(),
            traceparent: self.traceparent.clone(),
            cancel_request: None,
            last_seq: 1,
            next_run_at: Some(self.now),
            lease_owner: self.lease.as_ref().map(|l| l.owner.clone()),
            lease_expires_at: None,
            created_at: self.now,
            updated_at: self.now,
            finished_at: None,
        }
    }
}

/// What `create_run` did.
#[derive(Debug, Clone, PartialEq)]
pub enum CreateOutcome {
    Created(RunRecord),
    /// The idempotency key matched a run with the same input.
    Existing(RunRecord),
    /// The idempotency key matched a run with a different input.
    IdempotencyConflict,
    /// The concurrency key is held and the policy is `reject`.
    ConcurrencyKeyHeld {
        holder: RunId,
    },
}

/// The outcome of a step (or more), written by the lease holder in one
/// transaction fenced by its lease (compared with the database's clock).
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub run_id: RunId,
    pub lease: LeaseToken,
    /// Names this checkpoint; a resend carries the same id, so the store
    /// recognises one it applied already.
    pub id: uuid::Uuid,
    /// The run's `last_seq` this checkpoint was computed from: it applies
    /// only on top of it.
    pub expected_seq: u64,
    pub now: DateTime<Utc>,
    pub state: RunState,
    pub cursor: u32,
    /// The new context; none: unchanged.
    pub context: Option<Value>,
    pub steps: Vec<StepRecord>,
    pub error: Option<String>,
    pub events: Vec<NewEvent>,
    pub next_run_at: Option<DateTime<Utc>>,
    /// Some: keep the lease for this long from the database's clock; none:
    /// release it.
    pub keep_lease: Option<std::time::Duration>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The run is terminal: free its concurrency key and wake the next run
    /// queued on it.
    pub release_concurrency_key: bool,
    /// A step took this signal: marked taken in the same transaction.
    pub take_signal: Option<super::SignalTaken>,
    /// Webhook deliveries its events cause, written in its transaction.
    pub deliveries: Vec<NewDelivery>,
}

/// The store's answer to a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointAck {
    /// Written. Carries an operator's cancellation, if one arrived.
    Applied {
        cancel_request: Option<CancelRequest>,
    },
    /// The lease was lost: nothing was written.
    Fenced,
}

/// A write by an operator action, applied only if the run has not changed
/// since it was read (`expected_seq`) and, when `require_free_lease`, no
/// executor holds a live lease on it.
#[derive(Debug, Clone)]
pub struct OperatorWrite {
    pub tenant_id: TenantId,
    pub run_id: RunId,
    pub expected_seq: u64,
    pub require_free_lease: bool,
    pub now: DateTime<Utc>,
    pub state: RunState,
    pub cursor: u32,
    pub context: Value,
    pub steps: Vec<StepRecord>,
    pub error: Option<String>,
    pub cancel_request: Option<CancelRequest>,
    pub next_run_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub events: Vec<NewEvent>,
    pub release_concurrency_key: bool,
    /// Webhook deliveries its events cause, written in its transaction.
    pub deliveries: Vec<NewDelivery>,
}

/// Filters of `list_runs`; every one optional.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub workflow_name: Option<String>,
    pub states: Vec<RunState>,
    pub concurrency_key: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub idempotency_key: Option<String>,
    /// Runs FAILED at a step: the `(definition id, step index)` pairs that
    /// name it; an empty list matches nothing.
    pub failed_at: Option<Vec<(String, u32)>>,
    /// Search attribute = value, all must match.
    pub search: Vec<(String, String)>,
    /// Keyset cursor: runs strictly older than this (created_at, id).
    pub before: Option<(DateTime<Utc>, RunId)>,
    pub limit: u32,
}

/// A workflow definition snapshot, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDefinition {
    pub id: String,
    pub definition: WorkflowDefinition,
}
