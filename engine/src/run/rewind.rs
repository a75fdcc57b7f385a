//! Rewind: an operator takes a FAILED run, or a run waiting for a signal or
//! a timer, back to an earlier step. The completed steps from that step on
//! (it included) are compensated in strict reverse order, as a rollback
//! does, but only down to it; then the run goes forward again from it.
//! The step gone back to carries the mark ([`StepRecord::rewind_target`])
//! while the compensations run, so that a crash, a lost lease or a
//! compensation that gives up and is retried by an operator picks the
//! rewind up where it was. Pure.

use serde_json::{Map, Value};

use super::model::{EventKind, RunRecord, StepRecord};
use super::operator::ActionError;
use super::record::{Recorder, merge_into, run_to};
use super::state::{InvalidTransition, Next, RunEvent, RunState, StepEvent, StepState};
use crate::definition::WorkflowDefinition;

/// The lowest step a compensation may undo: the rewind's target while a
/// rewind runs, else the first step.
pub(super) fn floor(run: &RunRecord) -> usize {
    run.steps.iter().position(|s| s.rewind_target).unwrap_or(0)
}

fn needs_compensation(s: &StepRecord, has_handler: bool) -> bool {
    has_handler
        && match s.state {
            StepState::Succeeded => true,
            StepState::Failed | StepState::FailedNonBlocking | StepState::Pending => {
                s.effect_uncertain
            }
            _ => false,
        }
}

/// Makes steps `from..` fresh (pending, no attempts, no output), the
/// effect-uncertain mark kept for a step whose compensation is still due.
fn reset_from(run: &mut RunRecord, from: usize) -> Result<(), InvalidTransition> {
    for s in &mut run.steps[from..] {
        if s.state != StepState::Pending {
            s.state = match s.state {
                StepState::Compensated => StepState::Pending,
                other => other.apply(StepEvent::Reset)?,
            };
        }
        s.attempts = 0;
        s.compensation_attempts = 0;
        s.output = None;
        s.last_error = None;
        s.started_at = None;
        s.finished_at = None;
        s.next_attempt_at = None;
        s.wake_at = None;
        s.wait_until = None;
        s.rewind_target = false;
    }
    Ok(())
}

/// Starts a rewind of the run to `to_step`: checks it fits, merges the
/// patch, and either compensates (the run becomes COMPENSATING) or, with
/// nothing to undo, goes forward at once.
pub(super) fn start(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    to_step: &str,
    context_patch: Option<&Map<String, Value>>,
    rec: &mut Recorder<'_>,
    reason: Option<String>,
) -> Result<(), ActionError> {
    let cursor = run.cursor as usize;
    let waiting = run.state == RunState::Running
        && run
            .steps
            .get(cursor)
            .is_some_and(|s| s.state == StepState::Waiting);
    if run.state != RunState::Failed && !waiting {
        return Err(ActionError::Precondition(format!(
            "cannot rewind a {} run{}: rewind takes a FAILED run or one waiting for a signal or a timer",
            run.state,
            if run.state == RunState::Running {
                " whose step is not waiting"
            } else {
                ""
            }
        )));
    }
    if reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
        return Err(ActionError::Invalid(
            "reason is required: say why the run goes back (e.g. the ticket)".into(),
        ));
    }
    let target = def
        .steps
        .iter()
        .position(|s| s.name == to_step)
        .ok_or_else(|| {
            ActionError::Invalid(format!(
                "to_step: workflow {} has no step {to_step:?}",
                def.name
            ))
        })?;
    if target > cursor {
        return Err(ActionError::Precondition(format!(
            "to_step {to_step:?} comes after the step the run is at ({:?}); rewind goes back only",
            def.steps.get(cursor).map_or("", |s| s.name.as_str())
        )));
    }
    if let Some(patch) = context_patch {
        merge_into(&mut run.context, patch);
    }
    let bad = |e: InvalidTransition| ActionError::Precondition(e.to_string());
    // The step the run stopped at is attempted again after the rewind.
    if let Some(s) = run.steps.get_mut(cursor)
        && matches!(s.state, StepState::Failed | StepState::Waiting)
    {
        s.state = s.state.apply(StepEvent::Reset).map_err(bad)?;
        s.wake_at = None;
        s.wait_until = None;
        s.next_attempt_at = None;
    }
    let undo = (target..def.steps.len())
        .any(|i| needs_compensation(&run.steps[i], def.steps[i].compensation.is_some()));
    run.error = None;
    run.next_run_at = Some(rec.now);
    if undo {
        run.steps[target].rewind_target = true;
        run_to(run, RunEvent::OperatorRewind).map_err(bad)?;
    } else {
        reset_from(run, target).map_err(bad)?;
        run.cursor = target as u32;
        if run.state == RunState::Failed {
            run_to(run, RunEvent::OperatorRetry).map_err(bad)?;
        }
    }
    rec.push(run, EventKind::OperatorRewind, Some(to_step), 0, reason);
    Ok(())
}

/// The compensations of a rewind are done: the steps from the target on
/// start afresh and the run goes forward from the target. None when no
/// rewind runs.
pub(super) fn finish(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    rec: &mut Recorder<'_>,
) -> Result<Option<Next>, InvalidTransition> {
    let Some(target) = run.steps.iter().position(|s| s.rewind_target) else {
        return Ok(None);
    };
    reset_from(run, target)?;
    run.cursor = target as u32;
    run_to(run, RunEvent::Rewound)?;
    let name = def.steps.get(target).map(|s| s.name.as_str());
    rec.push(run, EventKind::RunRewound, name, 0, None);
    // Forward again at once, by whichever executor claims the run next.
    Ok(Some(Next::Wait(rec.now)))
}
