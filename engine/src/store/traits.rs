//! The store's traits, one concern each: the database itself
//! ([`StoreAdmin`]), definitions, reading runs, starting and changing runs,
//! leases, checkpoints and schedules. [`Store`] is all of them at once, for
//! callers that need everything; a caller that needs one concern can ask
//! for just that trait.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::retention::RetentionStore;
use super::webhooks::WebhookStore;
use super::{
    Backend, Checkpoint, CheckpointAck, CreateOutcome, EventRecord, FireBatch, FireBatchAck,
    NewRun, OperatorWrite, QueueExpired, Result, RunFilter, RunRecord, ScheduleChange, Signal,
    SignalAck, SignalWrite, StoreError,
};
use crate::definition::{LoadedDefinition, WorkflowDefinition};
use crate::ids::{LeaseToken, RunId, TenantId};
use crate::run::state::RunState;
use crate::schedule::model::{FireRecord, Schedule, ScheduleId};
use crate::webhook::Webhooks;

/// The database itself: which backend it is, its schema, whether it answers.
#[async_trait]
pub trait StoreAdmin: Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// Applies the embedded migrations.
    async fn migrate(&self) -> Result<()>;

    /// Whether the database answers and every migration is applied.
    async fn ready(&self) -> Result<bool>;
}

/// Workflow definition snapshots, stored once under their id.
#[async_trait]
pub trait DefinitionStore: Send + Sync + 'static {
    /// Stores a definition snapshot (no-op when its id exists).
    async fn put_definition(&self, def: &LoadedDefinition) -> Result<()>;

    async fn get_definition(&self, id: &str) -> Result<Option<WorkflowDefinition>>;

    /// Every stored snapshot, `(id, definition)`, of the workflow `name`
    /// (every workflow when `None`): runs may be pinned to ones no longer
    /// loaded.
    async fn stored_definitions(
        &self,
        name: Option<&str>,
    ) -> Result<Vec<(String, WorkflowDefinition)>>;
}

/// Reading runs: one, a tenant's listing, a run's events, counts by state.
#[async_trait]
pub trait RunReads: Send + Sync + 'static {
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
    ) -> Result<Option<Vec<EventRecord>>> {
        self.events_page(tenant, id, after, None).await
    }

    /// [`RunReads::events`], at most `limit` of them (a page of the
    /// history, a range of the `(run_id, seq)` key).
    async fn events_page(
        &self,
        tenant: &TenantId,
        id: RunId,
        after: u64,
        limit: Option<u32>,
    ) -> Result<Option<Vec<EventRecord>>>;

    /// How many runs are in each state (of one tenant, or of all).
    async fn count_by_state(&self, tenant: Option<&TenantId>) -> Result<Vec<(RunState, u64)>>;

    /// How many runs of every tenant are in each active (not terminal)
    /// state, read from the `runs_active` partial index: its cost follows
    /// the active runs, not the finished ones kept.
    async fn count_active(&self) -> Result<Vec<(RunState, u64)>>;
}

/// Starting runs and changing them outside a lease: an operator's write,
/// and the end of runs queued too long.
#[async_trait]
pub trait RunWrites: Send + Sync + 'static {
    /// Inserts the run, its steps and its first events in one transaction,
    /// enforcing the idempotency and concurrency keys.
    async fn create_run(&self, new: &NewRun) -> Result<CreateOutcome>;

    /// Applies an operator's change; false if the run changed meanwhile.
    async fn operator_write(&self, w: &OperatorWrite) -> Result<bool>;

    /// Ends up to `limit` runs still queued (PENDING, not due) whose queue
    /// time is up at `now`: CANCELLED, with a `run_queue_expired` event and
    /// the `run_cancelled` deliveries `webhooks` hear, in one transaction.
    async fn expire_queued(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        webhooks: &Webhooks,
    ) -> Result<Vec<QueueExpired>>;
}

/// Leases: who drives a run (claim, renew, release), the hand-over of
/// concurrency keys to queued runs, and the signal that there is work.
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
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

    /// Hands free concurrency keys to the oldest run queued on each (the
    /// fallback for a start that raced a release). Returns how many ran.
    /// Runs whose queue time is up at `now` are passed over.
    async fn promote_queued(&self, now: DateTime<Utc>) -> Result<u64>;

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
}

/// The executor's checkpoints: a leased run's progress, fenced by its lease.
#[async_trait]
pub trait CheckpointStore: Send + Sync + 'static {
    async fn checkpoint(&self, cp: &Checkpoint) -> Result<CheckpointAck> {
        self.checkpoint_many(std::slice::from_ref(cp))
            .await?
            .pop()
            .ok_or_else(|| StoreError::Corrupt("checkpoint returned no answer".into()))
    }

    /// Writes several checkpoints in one transaction (group commit).
    async fn checkpoint_many(&self, cps: &[Checkpoint]) -> Result<Vec<CheckpointAck>>;
}

/// Signals delivered to runs (`SignalWorkflow`), kept until a waiting step
/// takes one; the checkpoint that records the step marks it taken.
#[async_trait]
pub trait SignalStore: Send + Sync + 'static {
    /// Stores a signal for a run (see [`SignalWrite`]).
    async fn signal(&self, w: &SignalWrite) -> Result<SignalAck> {
        self.signal_many(std::slice::from_ref(w))
            .await?
            .pop()
            .ok_or_else(|| StoreError::Corrupt("signal returned no answer".into()))
    }

    /// Stores several signals together (group commit), each answered as
    /// [`signal`](Self::signal) would; several for one run are stored in
    /// the order given.
    async fn signal_many(&self, ws: &[SignalWrite]) -> Result<Vec<SignalAck>>;

    /// The run's signals no step has taken yet, oldest first.
    async fn pending_signals(&self, run: RunId) -> Result<Vec<Signal>>;

    /// The signals no step has taken yet of each of `runs` that has any,
    /// oldest first: one read for a batch of claimed runs.
    async fn pending_signals_of(
        &self,
        runs: &[RunId],
    ) -> Result<std::collections::HashMap<RunId, Vec<Signal>>>;

    /// Makes a RUNNING run that no executor holds due at `now` (a signal
    /// for its waiting step arrived); false if it was not such a run.
    async fn wake_run(&self, run: RunId, now: DateTime<Utc>) -> Result<bool>;
}

/// Schedules (see `crate::schedule`): their definitions and their fires.
#[async_trait]
pub trait ScheduleStore: Send + Sync + 'static {
    /// Inserts a schedule; false when the tenant has one of that name.
    async fn insert_schedule(&self, s: &Schedule) -> Result<bool>;

    /// Inserts a default schedule unless its name was seeded for the tenant
    /// before (or a schedule of that name exists); true when it was created.
    async fn seed_schedule(&self, s: &Schedule) -> Result<bool>;

    async fn get_schedule(&self, tenant: &TenantId, id: ScheduleId) -> Result<Option<Schedule>>;

    /// A tenant's schedules, by name.
    async fn list_schedules(&self, tenant: &TenantId) -> Result<Vec<Schedule>>;

    /// Pauses or resumes; false if the schedule changed since it was read
    /// (or is gone).
    async fn change_schedule(&self, c: &ScheduleChange) -> Result<bool>;

    /// Deletes a schedule and its fire records; false if there was none.
    async fn delete_schedule(&self, tenant: &TenantId, id: ScheduleId) -> Result<bool>;

    /// Unpaused schedules (of every tenant) with a fire due at `now` or a
    /// buffered fire, soonest first.
    async fn due_schedules(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Schedule>>;

    /// Writes a scheduling decision in one transaction (see [`FireBatch`]).
    async fn apply_fires(&self, batch: &FireBatch) -> Result<FireBatchAck>;

    /// Recorded fires of a schedule scheduled after `after`, oldest first;
    /// none if the schedule is not the tenant's.
    async fn schedule_fires(
        &self,
        tenant: &TenantId,
        id: ScheduleId,
        after: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Option<Vec<FireRecord>>>;
}

/// Everything the engine needs from its database: every concern above.
pub trait Store:
    StoreAdmin
    + DefinitionStore
    + RunReads
    + RunWrites
    + LeaseStore
    + CheckpointStore
    + ScheduleStore
    + SignalStore
    + WebhookStore
    + RetentionStore
{
}

impl<T> Store for T where
    T: StoreAdmin
        + DefinitionStore
        + RunReads
        + RunWrites
        + LeaseStore
        + CheckpointStore
        + ScheduleStore
        + SignalStore
        + WebhookStore
        + RetentionStore
        + ?Sized
{
}
