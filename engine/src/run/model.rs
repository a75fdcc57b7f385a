//! The run as the pure run logic sees it: the run and step records, the
//! kinds of events a run's history holds, and an operator's pending cancel
//! request. The store persists these; nothing here knows how.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::state::{RunState, StepState};
use crate::ids::{RunId, ScheduleId, TenantId};

/// An operator's cancellation, waiting for the executor to carry it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CancelRequest {
    /// Compensate completed steps, then end CANCELLED.
    Compensate,
    /// End TERMINATED without compensation.
    Terminate,
}

impl CancelRequest {
    pub fn as_str(self) -> &'static str {
        match self {
            CancelRequest::Compensate => "compensate",
            CancelRequest::Terminate => "terminate",
        }
    }
}

/// One step of a run, as stored (the run's `steps` JSON array).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    pub state: StepState,
    pub attempts: u32,
    pub compensation_attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// An attempt ended without a known outcome (timeout, crash, lost
    /// answer): its effect may exist, so the step is compensated even if
    /// it never succeeded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub effect_uncertain: bool,
    /// A WAITING step: when it is looked at again (its timer, its handler's
    /// "ready" time, or its timeout); none: only a signal wakes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_at: Option<DateTime<Utc>>,
    /// When the current wait times out; none: it never does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_until: Option<DateTime<Utc>>,
    /// An operator's rewind goes back to this step: the compensations run
    /// down to it, then the run goes forward from it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rewind_target: bool,
}

impl StepRecord {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            state: StepState::Pending,
            attempts: 0,
            compensation_attempts: 0,
            last_error: None,
            output: None,
            started_at: None,
            finished_at: None,
            next_attempt_at: None,
            effect_uncertain: false,
            wake_at: None,
            wait_until: None,
            rewind_target: false,
        }
    }
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub id: RunId,
    pub tenant_id: TenantId,
    pub workflow_name: String,
    pub workflow_version: u32,
    pub definition_id: String,
    pub state: RunState,
    pub input: Value,
    pub context: Value,
    pub steps: Vec<StepRecord>,
    /// Index of the first forward step not yet done.
    pub cursor: u32,
    pub error: Option<String>,
    pub idempotency_key: Option<String>,
    pub concurrency_key: Option<String>,
    pub schedule_id: Option<ScheduleId>,
    pub trace_id: Option<String>,
    pub traceparent: Option<String>,
    pub cancel_request: Option<CancelRequest>,
    /// Sequence number of the run's last event.
    pub last_seq: u64,
    /// When the executor should next look at the run; none: nothing to do
    /// (finished, waiting for an operator, or queued behind its key).
    pub next_run_at: Option<DateTime<Utc>>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl RunRecord {
    /// Whether some executor holds a live lease on the run at `now`.
    pub fn is_leased(&self, now: DateTime<Utc>) -> bool {
        self.lease_owner.is_some() && self.lease_expires_at.is_some_and(|t| t > now)
    }

    /// The name of the step the run is at, if any.
    pub fn current_step(&self) -> Option<&str> {
        match self.state {
            s if s.is_terminal() => None,
            RunState::Compensating | RunState::CompensationFailed => self
                .steps
                .iter()
                .rev()
                .find(|s| {
                    matches!(
                        s.state,
                        StepState::Compensating | StepState::CompensationFailed
                    )
                })
                .map(|s| s.name.as_str()),
            _ => self
                .steps
                .get(self.cursor as usize)
                .map(|s| s.name.as_str()),
        }
    }
}

/// The kind of an event in a run's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    RunStarted,
    RunQueued,
    StepStarted,
    StepSucceeded,
    StepFailed,
    StepRetryScheduled,
    StepFailedNonBlocking,
    StepSkipped,
    /// An attempt was found unfinished after a crash or a lost lease.
    StepInterrupted,
    RunCompleted,
    RunFailed,
    CompensationStarted,
    CompensationStepStarted,
    StepCompensated,
    CompensationStepFailed,
    CompensationRetryScheduled,
    RunCompensated,
    RunCompensationFailed,
    OperatorRetry,
    OperatorSkip,
    OperatorCompensate,
    OperatorCancel,
    RunCancelled,
    RunTerminated,
    /// Queued behind its concurrency key past the workflow's
    /// `queue_ttl_ms`: ended CANCELLED without running anything.
    RunQueueExpired,
    /// A signal was delivered to the run (kept until a step takes it).
    SignalReceived,
    /// A step began to wait: a timer, a signal, or a handler's "not ready".
    StepWaiting,
    /// A waiting step was woken by its timer or its signal, or is polled again.
    StepWoken,
    /// A waiting step's timeout passed.
    WaitTimedOut,
    /// The run's deadline passed before it finished.
    RunDeadlineExceeded,
    /// An operator took the run back to a step (the step is the event's).
    OperatorRewind,
    /// A rewind's compensations are done: the run goes forward again from
    /// the event's step.
    RunRewound,
}

impl EventKind {
    pub const ALL: [EventKind; 32] = [
        EventKind::RunStarted,
        EventKind::RunQueued,
        EventKind::StepStarted,
        EventKind::StepSucceeded,
        EventKind::StepFailed,
        EventKind::StepRetryScheduled,
        EventKind::StepFailedNonBlocking,
        EventKind::StepSkipped,
        EventKind::StepInterrupted,
        EventKind::RunCompleted,
        EventKind::RunFailed,
        EventKind::CompensationStarted,
        EventKind::CompensationStepStarted,
        EventKind::StepCompensated,
        EventKind::CompensationStepFailed,
        EventKind::CompensationRetryScheduled,
        EventKind::RunCompensated,
        EventKind::RunCompensationFailed,
        EventKind::OperatorRetry,
        EventKind::OperatorSkip,
        EventKind::OperatorCompensate,
        EventKind::OperatorCancel,
        EventKind::RunCancelled,
        EventKind::RunTerminated,
        EventKind::RunQueueExpired,
        EventKind::SignalReceived,
        EventKind::StepWaiting,
        EventKind::StepWoken,
        EventKind::WaitTimedOut,
        EventKind::RunDeadlineExceeded,
        EventKind::OperatorRewind,
        EventKind::RunRewound,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RunStarted => "run_started",
            EventKind::RunQueued => "run_queued",
            EventKind::StepStarted => "step_started",
            EventKind::StepSucceeded => "step_succeeded",
            EventKind::StepFailed => "step_failed",
            EventKind::StepRetryScheduled => "step_retry_scheduled",
            EventKind::StepFailedNonBlocking => "step_failed_non_blocking",
            EventKind::StepSkipped => "step_skipped",
            EventKind::StepInterrupted => "step_interrupted",
            EventKind::RunCompleted => "run_completed",
            EventKind::RunFailed => "run_failed",
            EventKind::CompensationStarted => "compensation_started",
            EventKind::CompensationStepStarted => "compensation_step_started",
            EventKind::StepCompensated => "step_compensated",
            EventKind::CompensationStepFailed => "compensation_step_failed",
            EventKind::CompensationRetryScheduled => "compensation_retry_scheduled",
            EventKind::RunCompensated => "run_compensated",
            EventKind::RunCompensationFailed => "run_compensation_failed",
            EventKind::OperatorRetry => "operator_retry",
            EventKind::OperatorSkip => "operator_skip",
            EventKind::OperatorCompensate => "operator_compensate",
            EventKind::OperatorCancel => "operator_cancel",
            EventKind::RunCancelled => "run_cancelled",
            EventKind::RunTerminated => "run_terminated",
            EventKind::RunQueueExpired => "run_queue_expired",
            EventKind::SignalReceived => "signal_received",
            EventKind::StepWaiting => "step_waiting",
            EventKind::StepWoken => "step_woken",
            EventKind::WaitTimedOut => "wait_timed_out",
            EventKind::RunDeadlineExceeded => "run_deadline_exceeded",
            EventKind::OperatorRewind => "operator_rewind",
            EventKind::RunRewound => "run_rewound",
        }
    }
}

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub kind: EventKind,
    pub step: Option<String>,
    pub attempt: u32,
    /// The run's state after this event.
    pub run_state: RunState,
    pub message: Option<String>,
    /// "engine", or the operator's principal.
    pub actor: String,
    pub at: DateTime<Utc>,
}

/// An event of a run's history.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub run_id: RunId,
    /// 1, 2, 3 … per run, without gaps.
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub kind: EventKind,
    pub step: Option<String>,
    pub attempt: u32,
    pub run_state: RunState,
    pub message: Option<String>,
    pub actor: String,
}
