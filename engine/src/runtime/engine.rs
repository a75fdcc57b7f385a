//! [`Engine`]: the cloneable handle the API, the scheduler and tests use to
//! start runs, read them, act on them as an operator, and run executors.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::definition::{Definitions, LoadedDefinition, WorkflowDefinition};
use crate::error::{Error, Result};
use crate::handler::Registry;
use crate::ids::{RunId, ScheduleId, TenantId};
use crate::run::{self as saga, ActionError, OperatorAction};
use crate::runtime::executor::{self, ExecutorHandle, ExecutorOptions};
use crate::store::{
    CreateOutcome, EventRecord, NewRun, OperatorWrite, RunFilter, RunRecord, Store,
};

pub(crate) use super::shared::Shared;
pub use super::signal::{SignalRequest, Signalled};

/// A request to start a run.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub tenant_id: TenantId,
    pub workflow_name: String,
    /// 0: the latest version.
    pub workflow_version: u32,
    /// A JSON object.
    pub input: Value,
    pub idempotency_key: Option<String>,
    pub schedule_id: Option<ScheduleId>,
    /// W3C `traceparent` of the caller, stored with the run.
    pub traceparent: Option<String>,
    /// Who started it (a principal name, or "scheduler").
    pub actor: String,
}

impl StartRequest {
    pub fn new(tenant: &str, workflow: &str, input: Value) -> Self {
        Self {
            tenant_id: TenantId::new(tenant),
            workflow_name: workflow.to_owned(),
            workflow_version: 0,
            input,
            idempotency_key: None,
            schedule_id: None,
            traceparent: None,
            actor: "engine".into(),
        }
    }
}

/// The answer to a start.
#[derive(Debug, Clone)]
pub struct Started {
    pub run: RunRecord,
    /// False when the idempotency key matched an existing run.
    pub created: bool,
}

/// The engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("definitions", &self.shared.definitions.names())
            .finish()
    }
}

/// Hex SHA-256 of the canonical JSON text (object keys sorted).
pub fn input_hash(input: &Value) -> String {
    Sha256::digest(input.to_string().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Engine {
    /// Builds an engine and records every definition's snapshot in the store.
    pub async fn new(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        definitions: Definitions,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        let mut snapshots = HashMap::new();
        let mut validators = HashMap::new();
        for d in definitions.all() {
            store.put_definition(d).await?;
            snapshots.insert(d.id.clone(), Arc::new(d.definition.clone()));
            let v = jsonschema::validator_for(&d.definition.input_schema).map_err(|e| {
                crate::definition::DefinitionError {
                    file: d.source.clone(),
                    step: None,
                    message: format!("input_schema is not a valid JSON Schema: {e}"),
                }
            })?;
            validators.insert(d.id.clone(), Arc::new(v));
        }
        Ok(Self {
            shared: Arc::new(Shared {
                store,
                registry,
                definitions,
                clock,
                wake: Arc::new(Notify::new()),
                changes: tokio::sync::broadcast::channel(1024).0,
                notify_pending: std::sync::atomic::AtomicBool::new(false),
                notify_again: std::sync::atomic::AtomicBool::new(false),
                validators,
                snapshots: std::sync::Mutex::new(snapshots),
                webhooks: Default::default(),
                signals: Default::default(),
                intakes: Default::default(),
            }),
        })
    }

    /// Sets the run-outcome webhooks: from the next write on, the events
    /// they hear are recorded as deliveries beside the write.
    pub fn set_webhooks(&self, webhooks: crate::webhook::Webhooks) {
        *self
            .shared
            .webhooks
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(webhooks);
    }

    /// Starts the webhook dispatcher in this process.
    pub fn start_webhook_dispatcher(
        &self,
        opts: crate::webhook::DispatcherOptions,
    ) -> crate::webhook::DispatcherHandle {
        crate::webhook::dispatcher::spawn(self.clone(), self.shared.webhooks(), opts)
    }

    /// The definition snapshot a run is pinned to.
    pub async fn definition_of(&self, run: &RunRecord) -> Result<Arc<WorkflowDefinition>> {
        self.shared.definition(&run.definition_id).await
    }

    /// Ids of runs this process changes from now on (for watchers).
    pub fn subscribe_changes(&self) -> tokio::sync::broadcast::Receiver<RunId> {
        self.shared.changes.subscribe()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }

    pub fn definitions(&self) -> &Definitions {
        &self.shared.definitions
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.shared.clock
    }

    /// Starts an executor in this process.
    pub fn start_executor(&self, opts: ExecutorOptions) -> ExecutorHandle {
        executor::spawn(self.shared.clone(), opts)
    }

    /// Tells executors (here and, through the store, in other replicas)
    /// that there is new work.
    pub fn wake(&self) {
        self.shared.wake.notify_one();
        self.shared.notify_others();
    }

    /// The definition a start with `name` and `version` (0: latest) uses.
    pub fn resolve(&self, name: &str, version: u32) -> Result<Arc<LoadedDefinition>> {
        self.shared
            .definitions
            .resolve(name, version)
            .ok_or_else(|| {
                let known = self.shared.definitions.names().join(", ");
                if version == 0 || self.shared.definitions.resolve(name, 0).is_none() {
                    Error::InvalidArgument(format!(
                        "unknown workflow {name:?}; registered workflows: {known}"
                    ))
                } else {
                    Error::InvalidArgument(format!("workflow {name:?} has no version {version}"))
                }
            })
    }

    /// Starts a run (or returns the one its idempotency key names). A run
    /// due at once goes straight to an executor of this process with room,
    /// leased by its insert (an eager start); otherwise executors are woken
    /// to claim it.
    pub async fn start(&self, req: StartRequest) -> Result<Started> {
        let mut new = self.prepare_run(req)?;
        // A run with a concurrency key may have to queue: left to claims.
        let slot = new
            .concurrency
            .is_none()
            .then(|| self.shared.reserve_slot())
            .flatten();
        new.lease = slot.as_ref().map(|s| s.lease().clone());
        match self.shared.store.create_run(&new).await? {
            CreateOutcome::Created(run) => {
                crate::telemetry::run_started(&run.workflow_name);
                match slot.map(|s| s.hand(run.clone())) {
                    Some(Ok(())) => {}
                    Some(Err(token)) => {
                        // The executor stopped meanwhile: give the run back.
                        // The run is created whatever happens here; should
                        // the release fail, its lease runs out and a claim
                        // takes it then.
                        if let Err(e) = self
                            .shared
                            .store
                            .release_leases(&[(run.id, token)], self.shared.clock.now())
                            .await
                        {
                            tracing::warn!(run_id = %run.id, error = %e,
                                "giving back a run the stopping executor did not take failed; it waits for its lease to run out");
                        }
                        self.wake();
                    }
                    None if run.next_run_at.is_some() => self.wake(),
                    None => {}
                }
                Ok(Started { run, created: true })
            }
            CreateOutcome::Existing(run) => Ok(Started {
                run,
                created: false,
            }),
            CreateOutcome::IdempotencyConflict => Err(Error::IdempotencyConflict {
                workflow: new.definition.definition.name.clone(),
                key: new.idempotency_key.unwrap_or_default(),
            }),
            CreateOutcome::ConcurrencyKeyHeld { holder } => Err(Error::ConcurrencyKeyHeld {
                key: new.concurrency.map(|c| c.0).unwrap_or_default(),
                holder,
            }),
        }
    }

    /// Checks a start request (workflow, input, concurrency key) and builds
    /// the run to insert. Every way of starting a run goes through here.
    pub(crate) fn prepare_run(&self, req: StartRequest) -> Result<NewRun> {
        let def = self.resolve(&req.workflow_name, req.workflow_version)?;
        if !req.input.is_object() {
            return Err(Error::InvalidArgument("input must be a JSON object".into()));
        }
        if let Some(v) = self.shared.validators.get(&def.id) {
            let problems: Vec<String> = v
                .iter_errors(&req.input)
                .take(5)
                .map(|e| {
                    let path = e.instance_path().to_string();
                    let msg: String = e.to_string().chars().take(200).collect();
                    format!("{}: {msg}", if path.is_empty() { "/" } else { &path })
                })
                .collect();
            if !problems.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "input does not match the input schema of {} v{}: {}",
                    def.definition.name,
                    def.definition.version,
                    problems.join("; ")
                )));
            }
        }
        let concurrency = match &def.definition.concurrency {
            None => None,
            Some(spec) => {
                let key = match req.input.pointer(&spec.key) {
                    Some(Value::String(s)) if !s.is_empty() => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => {
                        return Err(Error::InvalidArgument(format!(
                            "input needs a non-empty string at {} (the workflow's concurrency key)",
                            spec.key
                        )));
                    }
                };
                Some((key, spec.policy))
            }
        };
        let trace_id = req
            .traceparent
            .as_deref()
            .and_then(|tp| tp.split('-').nth(1))
            .filter(|t| t.len() == 32)
            .map(str::to_owned);
        let search = def.definition.search_values(&req.input);
        Ok(NewRun {
            id: RunId::new(),
            tenant_id: req.tenant_id,
            input_hash: input_hash(&req.input),
            input: req.input,
            definition: def,
            idempotency_key: req.idempotency_key.filter(|k| !k.is_empty()),
            concurrency,
            search,
            schedule_id: req.schedule_id,
            traceparent: req.traceparent,
            trace_id,
            actor: req.actor,
            now: self.shared.clock.now(),
            lease: None,
        })
    }

    pub async fn get(&self, tenant: &TenantId, id: RunId) -> Result<RunRecord> {
        self.shared
            .store
            .get_run(tenant, id)
            .await?
            .ok_or(Error::RunNotFound(id))
    }

    pub async fn list(&self, tenant: &TenantId, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        Ok(self.shared.store.list_runs(tenant, filter).await?)
    }

    /// The `(definition id, step index)` pairs at which a run of `workflow`
    /// (any workflow when `None`) stands when `step` failed, from every
    /// stored snapshot (runs may be pinned to ones no longer loaded).
    pub async fn failed_at(
        &self,
        workflow: Option<&str>,
        step: &str,
    ) -> Result<Vec<(String, u32)>> {
        Ok(self
            .shared
            .store
            .stored_definitions(workflow)
            .await?
            .into_iter()
            .filter_map(|(id, d)| {
                let i = d.steps.iter().position(|s| s.name == step)?;
                Some((id, i as u32))
            })
            .collect())
    }

    /// Events after `after` (0: the whole history).
    pub async fn events(
        &self,
        tenant: &TenantId,
        id: RunId,
        after: u64,
    ) -> Result<Vec<EventRecord>> {
        self.shared
            .store
            .events(tenant, id, after)
            .await?
            .ok_or(Error::RunNotFound(id))
    }

    /// At most `limit` events after `after`: a page of the history.
    pub async fn events_page(
        &self,
        tenant: &TenantId,
        id: RunId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<EventRecord>> {
        self.shared
            .store
            .events_page(tenant, id, after, Some(limit))
            .await?
            .ok_or(Error::RunNotFound(id))
    }

    /// Applies an operator's action. The write is conditional on the run not
    /// having changed since it was read; on a race the action is decided
    /// again on the new state (and refused if it no longer fits).
    pub async fn act(
        &self,
        tenant: &TenantId,
        id: RunId,
        action: OperatorAction,
        actor: &str,
        reason: &str,
    ) -> Result<RunRecord> {
        for _ in 0..8 {
            let mut run = self.get(tenant, id).await?;
            let def = self.shared.definition(&run.definition_id).await?;
            let seen = run.last_seq;
            let now = self.shared.clock.now();
            let change = saga::operate(&mut run, &def, action.clone(), actor, reason, now)
                .map_err(|e| match e {
                    ActionError::Precondition(m) => Error::FailedPrecondition(m),
                    ActionError::Invalid(m) => Error::InvalidArgument(m),
                })?;
            let w = OperatorWrite {
                tenant_id: tenant.clone(),
                run_id: id,
                expected_seq: seen,
                require_free_lease: change.require_free_lease,
                now,
                state: run.state,
                cursor: run.cursor,
                context: run.context.clone(),
                steps: run.steps.clone(),
                error: run.error.clone(),
                cancel_request: run.cancel_request,
                next_run_at: run.next_run_at,
                finished_at: run.finished_at,
                deliveries: self.shared.webhooks().deliveries(
                    tenant,
                    id,
                    &run.workflow_name,
                    &change.events,
                ),
                events: change.events,
                release_concurrency_key: change.finished,
            };
            if self.shared.store.operator_write(&w).await? {
                crate::telemetry::record_events(&run.workflow_name, &w.events);
                let _ = self.shared.changes.send(id);
                if run.next_run_at.is_some() {
                    self.wake();
                }
                return self.get(tenant, id).await;
            }
        }
        Err(Error::Contention(id))
    }
}
