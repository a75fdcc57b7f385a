//! [`Shared`]: what the executors, the engine handle and the API share —
//! the store, the handlers, the definitions, the clock and the wake-ups.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

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
    /// A NOTIFY to other replicas is on its way.
    pub(super) notify_pending: std::sync::atomic::AtomicBool,
    /// The id of every run this process changed, for watchers.
    pub(crate) changes: tokio::sync::broadcast::Sender<RunId>,
    /// Compiled input schemas, by definition snapshot id.
    pub(super) validators: HashMap<String, Arc<jsonschema::Validator>>,
    pub(super) snapshots: std::sync::Mutex<HashMap<String, Arc<WorkflowDefinition>>>,
    /// The configured run-outcome webhooks.
    pub(super) webhooks: std::sync::RwLock<Arc<Webhooks>>,
}

impl Shared {
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
