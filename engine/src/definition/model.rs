//! A workflow definition as data: the workflow, its steps, their defaults,
//! conditions and concurrency key, the loaded (normalized, hashed) form
//! runs snapshot, and the error a refused definition gets.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::retry::RetryPolicy;
use crate::run::state::OnFailure;

/// A workflow definition, as written in its file and as snapshotted with runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowDefinition {
    pub name: String,
    pub version: u32,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub on_failure: OnFailure,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<ConcurrencySpec>,
    /// How long a run may take from its start; past it the run fails (and
    /// compensates or pauses per `on_failure`). None: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// A JSON Schema the input must satisfy.
    #[serde(default = "empty_object")]
    pub input_schema: Value,
    /// Values every step inherits unless it sets its own.
    #[serde(default)]
    pub defaults: StepDefaults,
    /// Input fields (dotted paths, e.g. `customer.id`) runs can be listed
    /// by; their values are indexed when a run starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search_attributes: Vec<String>,
    pub steps: Vec<StepDefinition>,
}

pub(super) fn empty_object() -> Value {
    Value::Object(Default::default())
}

pub(super) fn yes() -> bool {
    true
}

/// Defaults for the steps of one workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StepDefaults {
    pub retry: RetryPolicy,
    pub compensation_retry: RetryPolicy,
    pub timeout_ms: u64,
}

impl Default for StepDefaults {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            compensation_retry: RetryPolicy {
                max_attempts: 5,
                ..RetryPolicy::default()
            },
            timeout_ms: 30_000,
        }
    }
}

/// At most one active run per (tenant, key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencySpec {
    /// A JSON pointer into the input, e.g. `/subscriber_id`.
    pub key: String,
    #[serde(default)]
    pub policy: ConcurrencyPolicy,
    /// With `queue`: how long a run may wait for the key before it ends
    /// CANCELLED without running; none: it waits as long as it takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_ttl_ms: Option<u64>,
}

/// The longest `concurrency.queue_ttl_ms` accepted: 30 days.
pub const MAX_QUEUE_TTL_MS: u64 = 30 * 24 * 3600 * 1000;

impl ConcurrencySpec {
    /// How long a queued run may wait for the key, if bounded.
    pub fn queue_ttl(&self) -> Option<std::time::Duration> {
        self.queue_ttl_ms.map(std::time::Duration::from_millis)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConcurrencyPolicy {
    /// Later runs wait PENDING until the key is free, in start order.
    #[default]
    Queue,
    /// Later runs are refused (ABORTED).
    Reject,
}

/// One step of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDefinition {
    pub name: String,
    /// What the step does: call a handler (the default), sleep, or wait
    /// for a signal.
    #[serde(default, skip_serializing_if = "StepKind::is_task")]
    pub kind: StepKind,
    /// The handler of a task step; empty for sleep and signal steps.
    #[serde(default)]
    pub handler: String,
    /// The handler that undoes this step; none: nothing to undo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensation: Option<String>,
    /// An optional step that gives up is recorded FAILED_NON_BLOCKING and
    /// the run goes on.
    #[serde(default = "yes")]
    pub required: bool,
    /// The step runs only when this holds on the run's context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensation_retry: Option<RetryPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Sleep: how long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Sleep: a JSON pointer into the context holding the RFC 3339 time to
    /// sleep until.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Signal: the name of the signal the step waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// Signal: where the payload goes in the context (`/key`); default:
    /// under the signal's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_path: Option<String>,
    /// Signal: how long the step waits before it fails; task: how long it
    /// may keep answering "not ready yet". None: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_timeout_ms: Option<u64>,
}

impl StepDefinition {
    /// The step's retry policy (its own, or the workflow's default once
    /// normalized).
    pub fn retry(&self) -> &RetryPolicy {
        static DEFAULT: std::sync::OnceLock<RetryPolicy> = std::sync::OnceLock::new();
        self.retry
            .as_ref()
            .unwrap_or_else(|| DEFAULT.get_or_init(RetryPolicy::default))
    }

    pub fn compensation_retry(&self) -> &RetryPolicy {
        static DEFAULT: std::sync::OnceLock<RetryPolicy> = std::sync::OnceLock::new();
        self.compensation_retry
            .as_ref()
            .unwrap_or_else(|| DEFAULT.get_or_init(|| StepDefaults::default().compensation_retry))
    }

    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms.unwrap_or(30_000))
    }
}

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// Calls its handler (which may answer "not ready yet").
    #[default]
    Task,
    /// A durable timer.
    Sleep,
    /// Waits for a named signal.
    Signal,
}

impl StepKind {
    pub fn is_task(&self) -> bool {
        *self == StepKind::Task
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Task => "task",
            StepKind::Sleep => "sleep",
            StepKind::Signal => "signal",
        }
    }
}

/// The longest wait a definition may declare (a sleep, a wait timeout or a
/// run deadline): 366 days.
pub const MAX_WAIT_MS: u64 = 366 * 24 * 3600 * 1000;

/// A condition on the run's context: `path` is a JSON pointer. With `equals`
/// the value must equal it; with `not_equals` it must not; with `exists` it
/// must (not) be present; with none of them it must be truthy (present and
/// not null, false, 0 or "").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_equals: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
}

impl Condition {
    pub fn holds(&self, context: &Value) -> bool {
        let v = context.pointer(&self.path);
        if let Some(want) = &self.equals {
            return v == Some(want);
        }
        if let Some(unwanted) = &self.not_equals {
            return v != Some(unwanted);
        }
        if let Some(exists) = self.exists {
            return v.is_some_and(|v| !v.is_null()) == exists;
        }
        match v {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
            Some(Value::String(s)) => !s.is_empty(),
            Some(_) => true,
        }
    }
}

/// A definition that passed validation, with its snapshot id.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedDefinition {
    pub definition: WorkflowDefinition,
    /// `name@vN#hash`: identifies this exact content.
    pub id: String,
    /// The canonical JSON stored as the runs' snapshot.
    pub snapshot: Value,
    pub source: String,
}

impl LoadedDefinition {
    /// Builds the snapshot of an already-validated definition.
    pub fn new(mut definition: WorkflowDefinition, source: impl Into<String>) -> Self {
        normalize(&mut definition);
        let snapshot = serde_json::to_value(&definition).unwrap_or(Value::Null);
        let digest = Sha256::digest(snapshot.to_string().as_bytes());
        let hash: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let id = format!("{}@v{}#{hash}", definition.name, definition.version);
        Self {
            definition,
            id,
            snapshot,
            source: source.into(),
        }
    }
}

/// Fills every step's policies and timeout from the workflow defaults, so the
/// snapshot is self-contained.
pub(super) fn normalize(def: &mut WorkflowDefinition) {
    let d = def.defaults.clone();
    for s in &mut def.steps {
        s.retry.get_or_insert_with(|| d.retry.clone());
        if s.compensation.is_some() {
            s.compensation_retry
                .get_or_insert_with(|| d.compensation_retry.clone());
        }
        s.timeout_ms.get_or_insert(d.timeout_ms);
    }
}

/// Why a definition was refused. Displays as `file: step "x": problem`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {}{message}", step.as_ref().map(|s| format!("step {s:?}: ")).unwrap_or_default())]
pub struct DefinitionError {
    pub file: String,
    pub step: Option<String>,
    pub message: String,
}

impl DefinitionError {
    pub(super) fn new(file: &str, step: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            step: step.map(str::to_owned),
            message: message.into(),
        }
    }
}
