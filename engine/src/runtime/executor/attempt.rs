//! One handler call, and what the executor knows locally about the lease it
//! is made under.
//!
//! - [`LocalDeadline`]: a monotonic deadline, moved forward whenever the
//!   database confirms the lease (claim, renewal, checkpoint). It is the
//!   moment the lease was last confirmed plus the lease minus a safety
//!   margin, measured from before the confirming statement was sent, so it
//!   always falls before the database's own expiry. Past it the executor
//!   neither calls a handler nor lets one run on (self-fence), whatever any
//!   clock says and even after the process was paused.
//! - [`call`]: runs a handler as a task that is aborted, never detached,
//!   when the attempt times out, the lease is lost or the deadline passes.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span};

use crate::definition::WorkflowDefinition;
use crate::handler::{CallKind, StepError, StepOutput, StepRequest};
use crate::store::RunRecord;
use crate::telemetry;

use super::Exec;

/// How long a stopped attempt's handler has to return after it is told to
/// (timeout, lost lease) before its task is aborted.
const CANCEL_GRACE: Duration = Duration::from_millis(100);

/// The local, monotonic end of a lease (see the module comment).
#[derive(Debug)]
pub(crate) struct LocalDeadline {
    base: Instant,
    /// Nanoseconds after `base`.
    at: AtomicU64,
}

impl LocalDeadline {
    /// A deadline `valid_for` after `confirmed`.
    pub(crate) fn new(confirmed: Instant, valid_for: Duration) -> Arc<Self> {
        let d = Arc::new(Self {
            base: confirmed,
            at: AtomicU64::new(0),
        });
        d.confirm(confirmed, valid_for);
        d
    }

    /// The database confirmed the lease by a statement sent at `sent`.
    pub(crate) fn confirm(&self, sent: Instant, valid_for: Duration) {
        let at = (sent + valid_for).saturating_duration_since(self.base);
        self.at.fetch_max(
            u64::try_from(at.as_nanos()).unwrap_or(u64::MAX),
            Ordering::AcqRel,
        );
    }

    pub(crate) fn instant(&self) -> Instant {
        self.base + Duration::from_nanos(self.at.load(Ordering::Acquire))
    }

    pub(crate) fn passed(&self) -> bool {
        Instant::now() >= self.instant()
    }

    /// Resolves once the deadline has passed (it may move meanwhile).
    pub(crate) async fn expired(&self) {
        loop {
            tokio::time::sleep_until(self.instant()).await;
            if self.passed() {
                return;
            }
        }
    }
}

/// Aborts the task when dropped: a handler never outlives the attempt that
/// started it, however the attempt ends.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Tells the handler to stop (through its cancellation token), gives it a
/// moment, then aborts the task and waits until it is no longer running.
async fn stop<T>(task: &mut AbortOnDrop<T>, cancel: &CancellationToken) {
    cancel.cancel();
    if tokio::time::timeout(CANCEL_GRACE, &mut task.0)
        .await
        .is_err()
    {
        task.0.abort();
        let _ = (&mut task.0).await;
    }
}

/// Calls the step's handler with its timeout. A panic or a timeout is a
/// retryable failure of the attempt. When the lease is lost or its local
/// deadline passes, the handler is stopped and the result says so; the
/// caller must then not record it.
#[allow(clippy::too_many_arguments)]
pub(super) async fn call(
    exec: &Exec,
    run: &RunRecord,
    def: &WorkflowDefinition,
    step: usize,
    kind: CallKind,
    attempt: u32,
    lease_lost: &CancellationToken,
    deadline: &Arc<LocalDeadline>,
) -> Result<StepOutput, StepError> {
    let sd = &def.steps[step];
    let (name, key) = match kind {
        CallKind::Forward => (Some(&sd.handler), format!("{}:{}", run.id, sd.name)),
        CallKind::Compensate => (
            sd.compensation.as_ref(),
            format!("{}:{}:compensate", run.id, sd.name),
        ),
    };
    let Some(handler) = name.and_then(|n| exec.shared.registry.get(n)) else {
        return Err(StepError::fatal(
            "unknown_handler",
            format!(
                "handler {:?} is not registered in this engine",
                name.map(String::as_str).unwrap_or("")
            ),
        ));
    };
    let cancel = lease_lost.child_token();
    let request = StepRequest {
        run_id: run.id,
        tenant_id: run.tenant_id.clone(),
        workflow: def.name.clone(),
        step: sd.name.clone(),
        kind,
        attempt,
        idempotency_key: key,
        context: Arc::new(run.context.clone()),
        cancel: cancel.clone(),
    };
    let span = info_span!("step", run_id = %run.id, workflow = %def.name, tenant = %run.tenant_id,
        step = %sd.name, attempt, compensation = kind == CallKind::Compensate);
    let labels = telemetry::AttemptLabels {
        workflow: def.name.clone(),
        step: sd.name.clone(),
        adapter: name.cloned().unwrap_or_default(),
        kind,
    };
    labels.started();
    let began = std::time::Instant::now();
    let fenced = fenced(
        async move { handler.call(request).await },
        deadline.clone(),
        cancel.clone(),
    );
    let mut task = AbortOnDrop(tokio::spawn(fenced.instrument(span)));
    let timeout = sd.timeout();
    let result = tokio::select! {
        joined = &mut task.0 => match joined {
            Ok(r) => r,
            Err(e) if e.is_panic() => Err(StepError::retryable("panic", "the handler panicked")),
            Err(_) => Err(StepError::retryable("cancelled", "the attempt was cancelled")),
        },
        _ = tokio::time::sleep(timeout) => {
            // The moment is short: the run keeps its slot meanwhile, and a
            // handler that ignores cancellation must not hold it long.
            stop(&mut task, &cancel).await;
            Err(StepError::retryable("timeout", format!("the attempt took longer than {} ms", timeout.as_millis())))
        }
        _ = lease_lost.cancelled() => {
            stop(&mut task, &cancel).await;
            Err(lease_gone())
        }
        _ = deadline.expired() => {
            stop(&mut task, &cancel).await;
            Err(lease_gone())
        }
    };
    labels.finished(&result, began.elapsed());
    result
}

fn lease_gone() -> StepError {
    StepError::retryable("lease_lost", "the lease ended while the attempt ran")
}

/// The handler's future, never polled once the lease's local deadline has
/// passed: a process that was paused does not carry on with an attempt
/// another replica may have taken over meanwhile.
fn fenced(
    inner: impl Future<Output = Result<StepOutput, StepError>> + Send + 'static,
    deadline: Arc<LocalDeadline>,
    cancel: CancellationToken,
) -> impl Future<Output = Result<StepOutput, StepError>> + Send + 'static {
    let mut inner = Box::pin(inner);
    std::future::poll_fn(move |cx| {
        if deadline.passed() {
            cancel.cancel();
            return Poll::Ready(Err(lease_gone()));
        }
        inner.as_mut().poll(cx)
    })
}
