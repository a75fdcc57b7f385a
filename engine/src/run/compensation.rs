//! Compensation: undoing, in strict reverse order, the steps whose effect
//! exists (or may exist), and giving a compensation up. Pure.

use super::attempt;
use super::model::{EventKind, RunRecord};
use super::record::{Recorder, run_to, step_to};
use super::state::{InvalidTransition, Next, RunEvent, StepEvent, StepState};
use crate::definition::WorkflowDefinition;
use crate::handler::CallKind;

/// Gives the compensation of step `idx` up: the run waits for an operator.
pub(super) fn give_up_compensation(
    run: &mut RunRecord,
    idx: usize,
    name: &str,
    message: String,
    rec: &mut Recorder<'_>,
) -> Result<(), InvalidTransition> {
    let step = &mut run.steps[idx];
    let attempt = step.compensation_attempts;
    step_to(step, StepEvent::FailCompensation)?;
    step.next_attempt_at = None;
    let remaining: Vec<&str> = run
        .steps
        .iter()
        .filter(|s| {
            matches!(
                s.state,
                StepState::Succeeded | StepState::CompensationFailed
            )
        })
        .map(|s| s.name.as_str())
        .collect();
    run.error = Some(format!(
        "compensation of {name} failed after {attempt} attempt(s): {message}; compensations left: {}",
        remaining.join(", ")
    ));
    run_to(run, RunEvent::CompensationGaveUp)?;
    rec.push(
        run,
        EventKind::RunCompensationFailed,
        Some(name),
        attempt,
        run.error.clone(),
    );
    Ok(())
}

pub(super) fn drive_compensation(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    rec: &mut Recorder<'_>,
) -> Result<Next, InvalidTransition> {
    let now = rec.now;
    // Strict reverse order: the highest step that succeeded and has a
    // compensation handler goes first.
    // A rewind undoes only the steps from its target on.
    let target = (super::rewind::floor(run)..def.steps.len())
        .rev()
        .find(|&i| {
            let step = &run.steps[i];
            let has_effect = match step.state {
                StepState::Succeeded => true,
                // Gave up, or waits for a retry (a cancellation came first), or
                // was reset by an operator's retry, after an attempt whose
                // effect may exist.
                StepState::Failed | StepState::FailedNonBlocking | StepState::Pending => {
                    step.effect_uncertain
                }
                _ => false,
            };
            step.state == StepState::Compensating
                || (has_effect && def.steps[i].compensation.is_some())
        });
    let Some(idx) = target else {
        if let Some(next) = super::rewind::finish(run, def, rec)? {
            return Ok(next);
        }
        let cancelled = run.cancel_request.is_some();
        run_to(run, RunEvent::AllCompensated { cancelled })?;
        let kind = if cancelled {
            EventKind::RunCancelled
        } else {
            EventKind::RunCompensated
        };
        rec.push(run, kind, None, 0, None);
        return Ok(Next::Stop);
    };
    let sd = &def.steps[idx];
    let step = &run.steps[idx];
    if step.state == StepState::Compensating
        && let Some(at) = step.next_attempt_at
        && at > now
    {
        return Ok(Next::Wait(at));
    }
    if !rec.can_call(sd.compensation.as_deref()) {
        return Ok(Next::Wait(now));
    }
    if step.state == StepState::Compensating
        && step.next_attempt_at.is_none()
        && step.compensation_attempts > 0
    {
        // An attempt that never reported (crash or lost lease).
        if !attempt::interrupted_attempt(run, def, idx, CallKind::Compensate, rec)? {
            return Ok(Next::Stop);
        }
    }
    if !rec.may_start {
        return Ok(Next::Wait(now));
    }
    let step = &mut run.steps[idx];
    step_to(step, StepEvent::StartCompensation)?;
    step.compensation_attempts += 1;
    step.next_attempt_at = None;
    let attempt = step.compensation_attempts;
    rec.push(
        run,
        EventKind::CompensationStepStarted,
        Some(&sd.name),
        attempt,
        None,
    );
    Ok(Next::Execute {
        step: idx,
        kind: CallKind::Compensate,
        attempt,
    })
}
