//! An attempt that failed or never reported, forward or compensation alike:
//! the one place that decides whether another attempt follows (under the
//! step's policy for that kind of call) or the step, or its compensation,
//! is given up. Pure.

use super::advance::give_up_forward;
use super::compensation::give_up_compensation;
use super::model::{EventKind, RunRecord};
use super::record::{Recorder, run_to, step_to};
use super::state::{InvalidTransition, RunEvent, StepEvent};
use crate::definition::{StepDefinition, WorkflowDefinition};
use crate::handler::{CallKind, StepError};
use crate::retry::RetryPolicy;

/// The error a step keeps when its last attempt never reported.
const INTERRUPTED: &str = "interrupted: the attempt did not finish";

/// The policy that retries `kind` calls of the step.
fn policy(sd: &StepDefinition, kind: CallKind) -> &RetryPolicy {
    match kind {
        CallKind::Forward => sd.retry(),
        CallKind::Compensate => sd.compensation_retry(),
    }
}

/// The attempt number `kind` calls of the step have reached.
fn attempts(run: &RunRecord, idx: usize, kind: CallKind) -> u32 {
    let step = &run.steps[idx];
    match kind {
        CallKind::Forward => step.attempts,
        CallKind::Compensate => step.compensation_attempts,
    }
}

/// Gives the step (forward) or its compensation up.
fn give_up(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    idx: usize,
    kind: CallKind,
    message: String,
    rec: &mut Recorder<'_>,
) -> Result<(), InvalidTransition> {
    match kind {
        CallKind::Forward => give_up_forward(run, def, idx, message, rec),
        CallKind::Compensate => give_up_compensation(run, idx, &def.steps[idx].name, message, rec),
    }
}

/// Applies a failed attempt: records the failure, then schedules the next
/// attempt after its backoff, or gives the step (or its compensation) up.
pub(super) fn failed_attempt(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    idx: usize,
    kind: CallKind,
    e: StepError,
    rec: &mut Recorder<'_>,
    rand: &mut dyn FnMut() -> f64,
) -> Result<(), InvalidTransition> {
    let sd = &def.steps[idx];
    let name = sd.name.as_str();
    let (failed, schedule, run_event, scheduled) = match kind {
        CallKind::Forward => (
            EventKind::StepFailed,
            StepEvent::ScheduleRetry,
            RunEvent::StepRetryScheduled,
            EventKind::StepRetryScheduled,
        ),
        CallKind::Compensate => (
            EventKind::CompensationStepFailed,
            StepEvent::ScheduleCompensationRetry,
            RunEvent::CompensationRetryScheduled,
            EventKind::CompensationRetryScheduled,
        ),
    };
    let policy = policy(sd, kind);
    let attempt = attempts(run, idx, kind);
    let step = &mut run.steps[idx];
    if kind == CallKind::Forward {
        // Only a forward attempt can leave an effect behind.
        step.effect_uncertain |= e.outcome_unknown();
    }
    let message = e.to_string();
    step.last_error = Some(message.clone());
    rec.push(run, failed, Some(name), attempt, Some(message.clone()));
    if policy.should_retry(attempt, e.is_retryable(), e.kind()) {
        let delay = policy
            .delay(attempt, rand())
            .max(e.retry_after().unwrap_or_default());
        let at = rec.now + chrono::Duration::from_std(delay).unwrap_or_default();
        let step = &mut run.steps[idx];
        step_to(step, schedule)?;
        step.next_attempt_at = Some(at);
        run_to(run, run_event)?;
        rec.push(
            run,
            scheduled,
            Some(name),
            attempt + 1,
            Some(format!("next attempt at {}", at.to_rfc3339())),
        );
        return Ok(());
    }
    give_up(run, def, idx, kind, message, rec)
}

/// Applies an attempt that never reported (the engine crashed or lost the
/// lease): records it, then either another attempt may start at once
/// (`true`) or, its attempts spent, the step (or its compensation) is
/// given up (`false`).
pub(super) fn interrupted_attempt(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    idx: usize,
    kind: CallKind,
    rec: &mut Recorder<'_>,
) -> Result<bool, InvalidTransition> {
    let sd = &def.steps[idx];
    let attempt = attempts(run, idx, kind);
    let message = match kind {
        CallKind::Forward => {
            // It counts as a failed attempt whose effect may exist.
            run.steps[idx].effect_uncertain = true;
            "the attempt did not finish (engine stopped or lease lost)"
        }
        CallKind::Compensate => "the compensation attempt did not finish",
    };
    rec.push(
        run,
        EventKind::StepInterrupted,
        Some(&sd.name),
        attempt,
        Some(message.into()),
    );
    if policy(sd, kind).has_attempt_after(attempt) {
        return Ok(true);
    }
    if kind == CallKind::Forward {
        run.steps[idx].last_error = Some(INTERRUPTED.into());
    }
    give_up(run, def, idx, kind, INTERRUPTED.into(), rec)?;
    Ok(false)
}
