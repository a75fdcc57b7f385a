//! Step handlers: the [`StepHandler`] trait and the [`Registry`] that maps
//! the handler names used in workflow files to implementations.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::ids::{RunId, TenantId};

/// A JSON object: a step's output, merged into the run's context.
pub type StepOutput = Map<String, Value>;

/// Whether a call does a step or undoes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    Forward,
    Compensate,
}

/// What a handler gets for one attempt.
#[derive(Debug, Clone)]
pub struct StepRequest {
    pub run_id: RunId,
    pub tenant_id: TenantId,
    pub workflow: String,
    pub step: String,
    pub kind: CallKind,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// `{run_id}:{step}`, or `{run_id}:{step}:compensate`: the same for every
    /// attempt, so external systems apply the effect once.
    pub idempotency_key: String,
    /// The run's context: its input plus every earlier step's output.
    pub context: Arc<Value>,
    /// Fired when the attempt times out, the run's lease is lost or the
    /// engine shuts down; a handler should stop soon after.
    pub cancel: CancellationToken,
}

impl StepRequest {
    /// A string field of the context, or a non-retryable error naming it.
    pub fn context_str(&self, pointer: &str) -> Result<&str, StepError> {
        self.context
            .pointer(pointer)
            .and_then(Value::as_str)
            .ok_or_else(|| {
                StepError::fatal(
                    "invalid_context",
                    format!("the context has no string at {pointer}"),
                )
            })
    }
}

/// A classified failure: the engine retries `Retryable` errors per the step's
/// policy and never retries `Fatal` ones. `kind` is a short machine-readable
/// word (e.g. `timeout`, `pool_exhausted`) that policies can name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    #[error("{kind}: {message}")]
    Retryable { kind: String, message: String },
    #[error("{kind}: {message}")]
    Fatal { kind: String, message: String },
    /// Not a failure: what the step waits for has not happened yet (the ONU
    /// has not ranged). The step waits durably and the handler is called
    /// again after `retry_after`, within the step's `wait_timeout_ms`; no
    /// attempt is counted.
    #[error("not_ready: {message}")]
    NotReady {
        retry_after: std::time::Duration,
        message: String,
    },
}

impl StepError {
    pub fn retryable(kind: impl Into<String>, message: impl Into<String>) -> Self {
        StepError::Retryable {
            kind: kind.into(),
            message: message.into(),
        }
    }
    pub fn fatal(kind: impl Into<String>, message: impl Into<String>) -> Self {
        StepError::Fatal {
            kind: kind.into(),
            message: message.into(),
        }
    }
    /// "Not ready yet, look again after `retry_after`" (see [`StepError::NotReady`]).
    pub fn not_ready(retry_after: std::time::Duration, message: impl Into<String>) -> Self {
        StepError::NotReady {
            retry_after,
            message: message.into(),
        }
    }
    pub fn kind(&self) -> &str {
        match self {
            StepError::Retryable { kind, .. } | StepError::Fatal { kind, .. } => kind,
            StepError::NotReady { .. } => "not_ready",
        }
    }
    pub fn is_retryable(&self) -> bool {
        matches!(self, StepError::Retryable { .. })
    }

    /// Whether the attempt may have applied its effect even though it
    /// failed: it timed out, panicked, was cancelled, or the handler said so
    /// with the kind `uncertain` (e.g. a request sent whose answer never
    /// came). A step that gives up after such an attempt is compensated
    /// too; compensations must therefore accept "nothing to undo".
    pub fn outcome_unknown(&self) -> bool {
        matches!(self.kind(), "timeout" | "panic" | "cancelled" | "uncertain")
    }
}

/// One step implementation (or compensation). Handlers are executed at least
/// once per attempt key and must be idempotent on `idempotency_key`.
#[async_trait]
pub trait StepHandler: Send + Sync + 'static {
    async fn call(&self, request: StepRequest) -> Result<StepOutput, StepError>;
}

struct FnHandler<F>(F);

#[async_trait]
impl<F, Fut> StepHandler for FnHandler<F>
where
    F: Fn(StepRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<StepOutput, StepError>> + Send + 'static,
{
    async fn call(&self, request: StepRequest) -> Result<StepOutput, StepError> {
        (self.0)(request).await
    }
}

/// Handler names → implementations. Built once at startup, then shared.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: BTreeMap<String, Arc<dyn StepHandler>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.handlers.keys()).finish()
    }
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` under `name`, replacing any earlier one.
    pub fn register(&mut self, name: impl Into<String>, handler: Arc<dyn StepHandler>) {
        self.handlers.insert(name.into(), handler);
    }

    /// Registers an async closure.
    pub fn register_fn<F, Fut>(&mut self, name: impl Into<String>, f: F)
    where
        F: Fn(StepRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<StepOutput, StepError>> + Send + 'static,
    {
        self.register(name, Arc::new(FnHandler(f)));
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn StepHandler>> {
        self.handlers.get(name).cloned()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.handlers.contains_key(name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.handlers.keys().map(String::as_str).collect()
    }

    /// Registers the engine's own handlers:
    /// - `builtin.noop`: returns an empty output (the benchmark's steps);
    /// - `builtin.demo`: for demos and tests. It waits `/demo/sleep_ms`
    ///   milliseconds (default 0), then fails non-retryably when the
    ///   context's `/demo/fail_step` names this step, fails retryably for the
    ///   first `/demo/flaky/<step>` attempts, and otherwise returns
    ///   `{"<step>": "done"}`; its compensation fails non-retryably when
    ///   `/demo/fail_compensation` names the step.
    pub fn with_builtins(mut self) -> Self {
        self.register_fn("builtin.noop", |_| async { Ok(StepOutput::new()) });
        self.register_fn("builtin.demo", |req: StepRequest| async move {
            let ms = req.context.pointer("/demo/sleep_ms").and_then(Value::as_u64).unwrap_or(0);
            if ms > 0 {
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_millis(ms.min(600_000))) => {}
                    _ = req.cancel.cancelled() => return Err(StepError::retryable("cancelled", "cancelled")),
                }
            }
            if req.kind == CallKind::Forward {
                if req.context.pointer("/demo/fail_step").and_then(Value::as_str) == Some(req.step.as_str()) {
                    return Err(StepError::fatal("demo_failure", format!("{} fails because /demo/fail_step names it", req.step)));
                }
                let flaky = req
                    .context
                    .pointer(&format!("/demo/flaky/{}", req.step))
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                if u64::from(req.attempt) <= flaky {
                    return Err(StepError::retryable("demo_flaky", format!("attempt {} of {} fails", req.attempt, req.step)));
                }
            }
            if req.kind == CallKind::Compensate
                && req.context.pointer("/demo/fail_compensation").and_then(Value::as_str) == Some(req.step.as_str())
            {
                return Err(StepError::fatal("demo_failure", format!("the compensation of {} fails because /demo/fail_compensation names it", req.step)));
            }
            let mut out = StepOutput::new();
            if req.kind == CallKind::Forward {
                out.insert(req.step.clone(), Value::String("done".into()));
            }
            Ok(out)
        });
        self
    }
}
