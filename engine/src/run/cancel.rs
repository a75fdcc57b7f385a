//! Cancellation carried out by the executor: a pending operator's cancel
//! request ends or compensates the run at its next move, and an attempt
//! recorded as started but never called is withdrawn. Pure.

use chrono::{DateTime, Utc};

use super::model::{CancelRequest, EventKind, NewEvent, RunRecord};
use super::record::{Recorder, any_handler, run_to, step_to};
use super::state::{InvalidTransition, Next, RunEvent, StepEvent, StepState};
use crate::definition::WorkflowDefinition;

/// Withdraws the attempt of `step` that was recorded as started but whose
/// handler was never called: the run was cancelled in between.
pub fn withdraw_attempt(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    step: usize,
    now: DateTime<Utc>,
) -> Result<NewEvent, InvalidTransition> {
    let s = &mut run.steps[step];
    step_to(s, StepEvent::Withdraw)?;
    let attempt = s.attempts;
    s.attempts = s.attempts.saturating_sub(1);
    let mut rec = Recorder {
        now,
        actor: "engine",
        events: Vec::new(),
        may_start: false,
        known: &any_handler,
        unknown: None,
        wait: Default::default(),
    };
    rec.push(
        run,
        EventKind::StepInterrupted,
        Some(&def.steps[step].name),
        attempt,
        Some("withdrawn before the handler was called: the run is being cancelled".into()),
    );
    Ok(rec.events.remove(0))
}

/// Carries out a cancellation recorded while the run was moving, including
/// when the run has just paused as FAILED. `Some(next)` when the run stops
/// here (ended without compensation).
pub(super) fn carry_out_request(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    rec: &mut Recorder<'_>,
) -> Result<Option<Next>, InvalidTransition> {
    let now = rec.now;
    // A cancellation recorded while the run was moving is carried out here,
    // including when the run has just paused as FAILED.
    if let Some(req) = run
        .cancel_request
        .filter(|_| run.state.carries_out_cancel())
    {
        super::wait::withdraw_waits(run, def, "the run is being cancelled", rec)?;
        // An attempt left unfinished by a crash is over. It did not
        // succeed, but it may have had its effect: it is compensated too.
        for i in 0..run.steps.len() {
            let s = &mut run.steps[i];
            if s.state == StepState::Running {
                step_to(s, StepEvent::Fail)?;
                s.effect_uncertain = true;
                s.last_error = Some("cancelled by an operator".into());
                s.finished_at = Some(now);
                let attempt = s.attempts;
                rec.push(
                    run,
                    EventKind::StepInterrupted,
                    Some(&def.steps[i].name),
                    attempt,
                    Some("cancelled".into()),
                );
            }
        }
        let compensate = req == CancelRequest::Compensate;
        run_to(run, RunEvent::Cancel { compensate })?;
        if compensate {
            rec.push(
                run,
                EventKind::CompensationStarted,
                None,
                0,
                Some("cancelled by an operator".into()),
            );
        } else {
            rec.push(
                run,
                EventKind::RunTerminated,
                None,
                0,
                Some("cancelled by an operator without compensation".into()),
            );
            return Ok(Some(Next::Stop));
        }
    }
    Ok(None)
}
