//! The store: the traits of what the engine needs from its database (one
//! concern each, [`Store`] for all of them), what callers hand it and what
//! it answers, and its two backends ([`postgres`], [`sqlite`]) which pass
//! one conformance suite. SQL lives only in the backends and in [`sql`],
//! the cold-path queries written once for both.

use std::sync::Arc;

mod claimed;
mod error;
pub mod postgres;
mod queue_expiry;
pub mod retention;
pub mod schedules;
mod signals;
pub(crate) mod sql;
mod sql_terms;
pub mod sqlite;
mod step_codec;
mod traits;
pub mod webhooks;
mod writes;

pub use claimed::PARK_UNDECODABLE;
pub use error::{Result, StoreError, unreachable_database};
pub use queue_expiry::QueueExpired;
pub use retention::{DroppedDay, EventRows, Pace, Purged, RetentionStore, RunPurge, WorkflowScope};
pub use signals::{Signal, SignalAck, SignalTaken, SignalWrite};
pub use traits::{
    CheckpointStore, DefinitionStore, LeaseStore, RunReads, RunWrites, ScheduleStore, SignalStore,
    Store, StoreAdmin,
};
pub use writes::{
    Checkpoint, CheckpointAck, CreateOutcome, NewRun, OperatorWrite, RunFilter, StartLease,
    StoredDefinition,
};

pub use webhooks::{
    Delivery, DeliveryFilter, DeliveryState, DisabledWebhook, NewDelivery, Reenable, Reenabled,
    TryOutcome, WebhookStore,
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
