//! The [`Store`] trait: everything the executor and the API need from the
//! database, and its two backends ([`postgres`], [`sqlite`]) which pass one
//! conformance suite. SQL lives only in the backends.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::definition::{LoadedDefinition, WorkflowDefinition};
use crate::ids::{LeaseToken, RunId, TenantId};
use crate::run::state::RunState;

mod claimed;
mod error;
pub mod postgres;
mod queue_expiry;
pub mod schedules;
mod sql_terms;
pub mod sqlite;
mod step_codec;
pub mod webhooks;
mod writes;

pub use claimed::PARK_UNDECODABLE;
pub use error::{Result, StoreError, unreachable_database};
pub use queue_expiry::QueueExpired;
pub use writes::{
    Checkpoint, CheckpointAck, CreateOutcome, NewRun, OperatorWrite, RunFilter, StoredDefinition,
};

pub use webhooks::{
    Delivery, DeliveryFilter, DeliveryState, DisabledWebhook, NewDelivery, TryOutcome, WebhookStore,
};

pub use schedules::{AppliedFire, FireBatch, FireBatchAck, FireWrite, ScheduleChange};

/// What a backend is, for messages and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

pub use crate::run::model::{
    CancelRequest, EventKind, EventRecord, NewEvent, RunRecord, StepRecord,
};

/// Everything the engine needs from its database.
#[async_trait]
pub trait Store: WebhookStore + Send + Sync + 'static {
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
    async fn insert_schedule(&self, s: &crate::schedule::model::Schedule) -> Result<bool>;

    /// Inserts a default schedule unless its name was seeded for the tenant
    /// before (or a schedule of that name exists); true when it was created.
    async fn seed_schedule(&self, s: &crate::schedule::model::Schedule) -> Result<bool>;

    async fn get_schedule(
        &self,
        tenant: &TenantId,
        id: crate::schedule::model::ScheduleId,
    ) -> Result<Option<crate::schedule::model::Schedule>>;

    /// A tenant's schedules, by name.
    async fn list_schedules(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<crate::schedule::model::Schedule>>;

    /// Pauses or resumes; false if the schedule changed since it was read
    /// (or is gone).
    async fn change_schedule(&self, c: &ScheduleChange) -> Result<bool>;

    /// Deletes a schedule and its fire records; false if there was none.
    async fn delete_schedule(
        &self,
        tenant: &TenantId,
        id: crate::schedule::model::ScheduleId,
    ) -> Result<bool>;

    /// Unpaused schedules (of every tenant) with a fire due at `now` or a
    /// buffered fire, soonest first.
    async fn due_schedules(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<crate::schedule::model::Schedule>>;

    /// Writes a scheduling decision in one transaction (see [`FireBatch`]).
    async fn apply_fires(&self, batch: &FireBatch) -> Result<FireBatchAck>;

    /// Recorded fires of a schedule scheduled after `after`, oldest first;
    /// none if the schedule is not the tenant's.
    async fn schedule_fires(
        &self,
        tenant: &TenantId,
        id: crate::schedule::model::ScheduleId,
        after: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Option<Vec<crate::schedule::model::FireRecord>>>;
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

pub(crate) use crate::run::start::initial_steps;
