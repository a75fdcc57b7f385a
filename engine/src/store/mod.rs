//! The [`Store`] trait: everything the executor and the API need from the
//! database, and its two backends ([`postgres`], [`sqlite`]) which pass one
//! conformance suite. SQL lives only in the backends.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::definition::{ConcurrencyPolicy, LoadedDefinition, WorkflowDefinition};
use crate::ids::{LeaseToken, RunId, TenantId};
use crate::run::state::RunState;

mod claimed;
pub mod postgres;
mod postgres_checkpoint;
mod postgres_schedules;
mod queue_expiry;
pub mod schedules;
pub mod sqlite;
mod sqlite_schedules;
mod step_codec;

pub use claimed::PARK_UNDECODABLE;
pub use queue_expiry::QueueExpired;

pub use schedules::{AppliedFire, FireBatch, FireBatchAck, FireWrite, ScheduleChange};

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

/// Whether a query failed because the database could not be reached or no
/// pool connection came free in time (not because the statement failed).
pub fn unreachable_database(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
    )
}

/// What a backend is, for messages and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

pub use crate::run::model::{
    CancelRequest, EventKind, EventRecord, NewEvent, RunRecord, StepRecord,
};

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
    pub schedule_id: Option<String>,
    pub traceparent: Option<String>,
    pub trace_id: Option<String>,
    pub actor: String,
    pub now: DateTime<Utc>,
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
            schedule_id: self.schedule_id.clone(),
            trace_id: self.trace_id.clone(),
            traceparent: self.traceparent.clone(),
            cancel_request: None,
            last_seq: 1,
            next_run_at: Some(self.now),
            lease_owner: None,
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
}

/// Filters of `list_runs`; every one optional.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub workflow_name: Option<String>,
    pub states: Vec<RunState>,
    pub concurrency_key: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
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

/// Everything the engine needs from its database.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// Applies the embedded migrations.
    async fn migrate(&self) -> Result<()>;

    /// Whether the database answers and every migration is applied.
    async fn ready(&self) -> Result<bool>;

    /// Stores a definition snapshot (no-op when its id exists).
    async fn put_definition(&self, def: &LoadedDefinition) -> Result<()>;

    async fn get_definition(&self, id: &str) -> Result<Option<WorkflowDefinition>>;

    /// Inserts the run, its steps and its first events in one transaction,
    /// enforcing the idempotency and concurrency keys.
    async fn create_run(&self, new: &NewRun) -> Result<CreateOutcome>;

    async fn get_run(&self, tenant: &TenantId, id: RunId) -> Result<Option<RunRecord>>;

    /// Runs of a tenant, newest first (steps left empty).
    async fn list_runs(&self, tenant: &TenantId, filter: &RunFilter) -> Result<Vec<RunRecord>>;

    /// Events of a run with `seq > after`, in order; none if the run is not
    /// the tenant's.
    async fn events(
        &self,
        tenant: &TenantId,
        id: RunId,
        after: u64,
    ) -> Result<Option<Vec<EventRecord>>>;

    /// Leases up to `limit` runnable runs to `owner` with `token`, for
    /// `lease` from the database's own clock. A run is runnable when it is
    /// not leased and due at `now` (the engine's clock, which schedules
    /// runs), or when its lease has expired by the database's clock.
    async fn claim(
        &self,
        owner: &str,
        token: LeaseToken,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<RunRecord>>;

    /// Extends the leases still held (and not expired, by the database's
    /// clock) to `lease` from the database's clock; returns the runs whose
    /// lease was lost.
    async fn renew_leases(
        &self,
        leases: &[(RunId, LeaseToken)],
        lease: std::time::Duration,
    ) -> Result<Vec<RunId>>;

    /// Gives leases back, making the runs claimable at once (shutdown).
    async fn release_leases(
        &self,
        leases: &[(RunId, LeaseToken)],
        now: DateTime<Utc>,
    ) -> Result<()>;

    async fn checkpoint(&self, cp: &Checkpoint) -> Result<CheckpointAck>;

    /// Writes several checkpoints in one transaction (group commit).
    async fn checkpoint_many(&self, cps: &[Checkpoint]) -> Result<Vec<CheckpointAck>> {
        let mut out = Vec::with_capacity(cps.len());
        for cp in cps {
            out.push(self.checkpoint(cp).await?);
        }
        Ok(out)
    }

    /// Applies an operator's change; false if the run changed meanwhile.
    async fn operator_write(&self, w: &OperatorWrite) -> Result<bool>;

    /// Tells other replicas there is new work (Postgres `NOTIFY`, sent on
    /// its own, never inside a hot write transaction).
    async fn notify_work(&self) -> Result<()> {
        Ok(())
    }

    /// Wakes `wake` whenever another replica reports new work, until `stop`.
    async fn listen_for_work(
        &self,
        wake: Arc<tokio::sync::Notify>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let _ = wake;
        stop.cancelled().await;
    }

    /// How many runs are in each state (of one tenant, or of all).
    async fn count_by_state(&self, tenant: Option<&TenantId>) -> Result<Vec<(RunState, u64)>>;

    /// Hands free concurrency keys to the oldest run queued on each (the
    /// fallback for a start that raced a release). Returns how many ran.
    /// Runs whose queue time is up at `now` are passed over.
    async fn promote_queued(&self, now: DateTime<Utc>) -> Result<u64>;

    /// Ends up to `limit` runs still queued (PENDING, not due) whose queue
    /// time is up at `now`: CANCELLED, with a `run_queue_expired` event.
    async fn expire_queued(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<QueueExpired>>;

    // ----- Schedules (see `crate::schedule`) -----

    /// Inserts a schedule; false when the tenant has one of that name.
    async fn insert_schedule(&self, s: &crate::schedule::Schedule) -> Result<bool>;

    /// Inserts a default schedule unless its name was seeded for the tenant
    /// before (or a schedule of that name exists); true when it was created.
    async fn seed_schedule(&self, s: &crate::schedule::Schedule) -> Result<bool>;

    async fn get_schedule(
        &self,
        tenant: &TenantId,
        id: crate::schedule::ScheduleId,
    ) -> Result<Option<crate::schedule::Schedule>>;

    /// A tenant's schedules, by name.
    async fn list_schedules(&self, tenant: &TenantId) -> Result<Vec<crate::schedule::Schedule>>;

    /// Pauses or resumes; false if the schedule changed since it was read
    /// (or is gone).
    async fn change_schedule(&self, c: &ScheduleChange) -> Result<bool>;

    /// Deletes a schedule and its fire records; false if there was none.
    async fn delete_schedule(
        &self,
        tenant: &TenantId,
        id: crate::schedule::ScheduleId,
    ) -> Result<bool>;

    /// Unpaused schedules (of every tenant) with a fire due at `now` or a
    /// buffered fire, soonest first.
    async fn due_schedules(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<crate::schedule::Schedule>>;

    /// Writes a scheduling decision in one transaction (see [`FireBatch`]).
    async fn apply_fires(&self, batch: &FireBatch) -> Result<FireBatchAck>;

    /// Recorded fires of a schedule scheduled after `after`, oldest first;
    /// none if the schedule is not the tenant's.
    async fn schedule_fires(
        &self,
        tenant: &TenantId,
        id: crate::schedule::ScheduleId,
        after: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Option<Vec<crate::schedule::FireRecord>>>;
}

/// Connects to `url` (`postgres://…` or `sqlite://…`) and applies migrations.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> =
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Arc::new(postgres::PgStore::connect(url).await?)
        } else if url.starts_with("sqlite:") {
            Arc::new(sqlite::SqliteStore::connect(url).await?)
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
    store.migrate().await?;
    Ok(store)
}

/// Reads a run's stored `steps` column (tools that inspect the database).
pub use step_codec::decode as decode_steps;
pub(crate) use step_codec::{decode as steps_decode, encode as steps_encode};

pub(crate) fn initial_steps(def: &WorkflowDefinition) -> Vec<StepRecord> {
    def.steps.iter().map(|s| StepRecord::new(&s.name)).collect()
}
