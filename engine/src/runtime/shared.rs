//! [`Shared`]: what the executors, the engine handle and the API share —
//! the store, the handlers, the definitions, the clock and the wake-ups.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::batcher::{Batcher, Signals};
use super::executor::{Intake, Slot};
use crate::clock::Clock;
use crate::definition::{Definitions, WorkflowDefinition};
use crate::error::{Error, Result};
use crate::handler::Registry;
use crate::ids::RunId;
use crate::store::Store;
use crate::webhook::Webhooks;

/// What the executors and the API share.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) definitions: Definitions,
    pub(crate) clock: Arc<dyn Clock>,
    /// Wakes this process's executors.
    pub(crate) wake: Arc<Notify>,
    /// A task sends NOTIFYs to other replicas (see [`Shared::notify_others`]).
    pub(super) notify_pending: std::sync::atomic::AtomicBool,
    /// New work arrived since that task's last NOTIFY.
    pub(super) notify_again: std::sync::atomic::AtomicBool,
    /// The id of every run this process changed, for watchers.
    pub(crate) changes: tokio::sync::broadcast::Sender<RunId>,
    /// Compiled input schemas, by definition snapshot id.
    pub(super) validators: HashMap<String, Arc<jsonschema::Validator>>,
    pub(super) snapshots: std::sync::Mutex<HashMap<String, Arc<WorkflowDefinition>>>,
    /// The configured run-outcome webhooks.
    pub(super) webhooks: std::sync::RwLock<Arc<Webhooks>>,
    /// Group commit of signals from every caller (started by the first).
    pub(super) signals: std::sync::OnceLock<Batcher<Signals>>,
    /// Where this process's executors take eager starts.
    pub(super) intakes: std::sync::Mutex<Vec<Arc<Intake>>>,
}

/// Most signals written in one statement, and statements at once.
const SIGNAL_BATCH: usize = 256;
const SIGNAL_WRITERS: usize = 2;

/// Shortest time between two NOTIFYs of new work from this process. A
/// NOTIFY is a transaction of its own (a commit and a WAL flush); a burst
/// of starts shares one, and other replicas hear of a start at most this
/// late (their polling is the fallback).
const NOTIFY_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

impl Shared {
    /// Tells the executors of other replicas that there is new work: at
    /// once when no NOTIFY went out in the last [`NOTIFY_EVERY`], otherwise
    /// once that time is over.
    pub(super) fn notify_others(self: &Arc<Self>) {
        use std::sync::atomic::Ordering::SeqCst;
        self.notify_again.store(true, SeqCst);
        if self.notify_pending.swap(true, SeqCst) {
            return; // the sending task will see `notify_again`
        }
        let shared = self.clone();
        tokio::spawn(async move {
            loop {
                shared.notify_again.store(false, SeqCst);
                if let Err(e) = shared.store.notify_work().await {
                    tracing::debug!(error = %e, "could not notify other replicas");
                }
                tokio::time::sleep(NOTIFY_EVERY).await;
                if shared.notify_again.load(SeqCst) {
                    continue;
                }
                shared.notify_pending.store(false, SeqCst);
                // A wake between the load and the store found this task
                // still running and left its NOTIFY to it.
                if !shared.notify_again.load(SeqCst) || shared.notify_pending.swap(true, SeqCst) {
                    return;
                }
            }
        });
    }

    /// Lets starts hand runs to an executor of this process.
    pub(super) fn add_intake(&self, intake: Arc<Intake>) {
        self.intakes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(intake);
    }

    /// A slot in an executor of this process with room for a run about to
    /// be started (see `executor::intake`), if one has it.
    pub(super) fn reserve_slot(&self) -> Option<Slot> {
        let mut intakes = self.intakes.lock().unwrap_or_else(|e| e.into_inner());
        intakes.retain(|i| i.is_open());
        intakes.iter().find_map(|i| i.reserve())
    }

    /// Stores a signal with the next batch of signals (group commit).
    pub(super) async fn store_signal(
        &self,
        w: crate::store::SignalWrite,
    ) -> std::result::Result<crate::store::SignalAck, crate::store::StoreError> {
        self.signals
            .get_or_init(|| {
                Batcher::spawn(Signals(self.store.clone()), SIGNAL_BATCH, SIGNAL_WRITERS)
            })
            .write(w)
            .await
    }

    /// The configured webhooks (their deliveries are decided per write).
    pub(crate) fn webhooks(&self) -> Arc<Webhooks> {
        self.webhooks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The definition snapshot a run is pinned to.
    pub(crate) async fn definition(&self, id: &str) -> Result<Arc<WorkflowDefinition>> {
        if let Some(d) = self
            .snapshots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
        {
            return Ok(d.clone());
        }
        let def = self.store.get_definition(id).await?.ok_or_else(|| {
            Error::FailedPrecondition(format!("definition snapshot {id} is missing"))
        })?;
        let def = Arc::new(def);
        self.snapshots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned(), def.clone());
        Ok(def)
    }

    /// Wakes local executors at `at` (in this engine's clock).
    pub(crate) fn wake_at(&self, at: DateTime<Utc>) {
        let delay = delay_until(at, self.clock.now());
        let wake = self.wake.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            wake.notify_one();
        });
    }
}

/// When a waiting run becomes due, in real time from `now` on `clock`.
pub(crate) fn delay_until(at: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (at - now).to_std().unwrap_or(Duration::ZERO)
}
