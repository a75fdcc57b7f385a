//! Moving a run forward: applying the outcome of an attempt (a failed or
//! interrupted one goes to [`attempt`](super::attempt), forward and
//! compensation alike), giving a forward step up, skipping steps whose
//! condition is false and starting the next attempt. Pure: the caller
//! persists the result.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::model::{EventKind, NewEvent, RunRecord};
use super::record::{Recorder, any_handler, merge_into, run_to, step_to};
use super::state::{Action, InvalidTransition, Next, RunEvent, RunState, StepEvent, StepState};
use super::wait::{self, Signal, SignalTaken, WaitState};
use super::{attempt, cancel, compensation};
use crate::definition::{StepKind, WorkflowDefinition};
use crate::handler::{CallKind, StepError, StepOutput};

/// The outcome of one attempt.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub step: usize,
    pub kind: CallKind,
    pub result: Result<StepOutput, StepError>,
}

/// The changes of one [`advance`]: the run was mutated in place; these are
/// the events to append and what to do next.
#[derive(Debug, Clone)]
pub struct Advance {
    pub next: Next,
    pub events: Vec<NewEvent>,
    /// The context changed.
    pub context_changed: bool,
    /// The run became terminal: free its concurrency key.
    pub finished: bool,
    /// The next attempt needs this handler, which this engine does not have:
    /// nothing was started (`next` is a wait until now) and the run is left
    /// for an engine that has it.
    pub unknown_handler: Option<String>,
    /// A step took this signal: the checkpoint marks it consumed.
    pub consumed_signal: Option<SignalTaken>,
    /// The run stopped on a WAITING step (it holds nothing until it wakes).
    pub waiting: bool,
    /// The signal the run's waiting step waits for, if any.
    pub waiting_for: Option<String>,
}

/// Applies `outcome` (if any) to the run, then moves it forward as far as it
/// can go without calling a handler: skipping steps whose condition is false,
/// carrying out a pending cancellation, finishing, or starting the next
/// attempt. `rand` gives uniform numbers in [0, 1) for jitter.
///
/// With `may_start` false (the engine is draining), no new attempt starts:
/// the run is left due at once for whichever executor claims it next.
pub fn advance(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    outcome: Option<Outcome>,
    now: DateTime<Utc>,
    may_start: bool,
    rand: &mut dyn FnMut() -> f64,
) -> Result<Advance, InvalidTransition> {
    advance_with_handlers(run, def, outcome, now, may_start, &any_handler, rand)
}

/// [`advance`] in an engine that has only the handlers `known` accepts. An
/// attempt whose handler is unknown is not started (no attempt counted, no
/// event): the run waits, due now, and [`Advance::unknown_handler`] names
/// the handler.
pub fn advance_with_handlers(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    outcome: Option<Outcome>,
    now: DateTime<Utc>,
    may_start: bool,
    known: &dyn Fn(&str) -> bool,
    rand: &mut dyn FnMut() -> f64,
) -> Result<Advance, InvalidTransition> {
    advance_with_signals(run, def, outcome, now, may_start, known, &[], rand)
}

/// [`advance_with_handlers`] knowing the run's signals not yet taken
/// (oldest first): a signal step reached or woken takes the first of its
/// name, named in [`Advance::consumed_signal`].
#[allow(clippy::too_many_arguments)]
pub fn advance_with_signals(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    outcome: Option<Outcome>,
    now: DateTime<Utc>,
    may_start: bool,
    known: &dyn Fn(&str) -> bool,
    signals: &[Signal],
    rand: &mut dyn FnMut() -> f64,
) -> Result<Advance, InvalidTransition> {
    let mut rec = Recorder {
        now,
        actor: "engine",
        events: Vec::new(),
        may_start,
        known,
        unknown: None,
        wait: WaitState {
            signals,
            ..WaitState::default()
        },
    };
    let mut context_changed = false;
    if let Some(o) = outcome {
        context_changed = apply_outcome(run, def, o, &mut rec, rand)?;
    }
    let mut next = drive(run, def, &mut rec, rand)?;
    let finished = run.state.is_terminal();
    if finished && run.finished_at.is_none() {
        run.finished_at = Some(now);
    }
    let waiting_step = (run.state == RunState::Running)
        .then(|| run.steps.get(run.cursor as usize))
        .flatten()
        .filter(|s| s.state == StepState::Waiting);
    let waiting = waiting_step.is_some();
    let waiting_for = waiting_step
        .and_then(|_| def.steps.get(run.cursor as usize))
        .and_then(|sd| sd.signal.clone());
    // A run going forward is looked at again by its deadline at the latest.
    if run.state == RunState::Running
        && let Some(d) = wait::deadline(run, def)
    {
        next = match next {
            Next::Wait(at) => Next::Wait(at.min(d)),
            Next::Stop if waiting => Next::Wait(d),
            other => other,
        };
    }
    Ok(Advance {
        next,
        events: rec.events,
        context_changed: context_changed || rec.wait.context_changed,
        finished,
        unknown_handler: rec.unknown,
        consumed_signal: rec.wait.consumed,
        waiting,
        waiting_for,
    })
}

fn apply_outcome(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    o: Outcome,
    rec: &mut Recorder<'_>,
    rand: &mut dyn FnMut() -> f64,
) -> Result<bool, InvalidTransition> {
    let now = rec.now;
    let Some(sd) = def.steps.get(o.step) else {
        return Ok(false);
    };
    let name = sd.name.as_str();
    match (o.kind, o.result) {
        (
            CallKind::Forward,
            Err(StepError::NotReady {
                retry_after,
                message,
            }),
        ) => {
            wait::not_ready(run, def, o.step, retry_after, message, rec, rand)?;
            Ok(false)
        }
        (CallKind::Compensate, Err(StepError::NotReady { message, .. })) => {
            // A compensation does not wait: "not ready" is a failed attempt.
            let e = StepError::retryable("not_ready", message);
            attempt::failed_attempt(run, def, o.step, CallKind::Compensate, e, rec, rand)?;
            Ok(false)
        }
        (CallKind::Forward, Ok(output)) => {
            let step = &mut run.steps[o.step];
            step_to(step, StepEvent::Succeed)?;
            step.finished_at = Some(now);
            step.last_error = None;
            let attempt = step.attempts;
            step.output = Some(Value::Object(output.clone()));
            merge_into(&mut run.context, &output);
            run.cursor = run.cursor.max(o.step as u32 + 1);
            run_to(run, RunEvent::StepSucceeded)?;
            rec.push(run, EventKind::StepSucceeded, Some(name), attempt, None);
            Ok(true)
        }
        (CallKind::Compensate, Ok(_)) => {
            let step = &mut run.steps[o.step];
            step_to(step, StepEvent::Compensated)?;
            step.finished_at = Some(now);
            step.last_error = None;
            let attempt = step.compensation_attempts;
            run_to(run, RunEvent::StepCompensated)?;
            rec.push(run, EventKind::StepCompensated, Some(name), attempt, None);
            Ok(false)
        }
        (kind, Err(e)) => {
            attempt::failed_attempt(run, def, o.step, kind, e, rec, rand)?;
            Ok(false)
        }
    }
}

/// Gives a forward step up: a required one fails the run (compensating it
/// or pausing it for an operator), an optional one is passed over.
pub(super) fn give_up_forward(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    idx: usize,
    message: String,
    rec: &mut Recorder<'_>,
) -> Result<(), InvalidTransition> {
    let sd = &def.steps[idx];
    let step = &mut run.steps[idx];
    let attempt = step.attempts;
    step.finished_at = Some(rec.now);
    step.next_attempt_at = None;
    if sd.required {
        step_to(step, StepEvent::Fail)?;
        let error = format!(
            "step {} failed after {attempt} attempt(s): {message}",
            sd.name
        );
        fail_run(run, def, Some(&sd.name), attempt, error, rec)?;
    } else {
        step_to(step, StepEvent::FailNonBlocking)?;
        run.cursor = run.cursor.max(idx as u32 + 1);
        run_to(run, RunEvent::OptionalStepGaveUp)?;
        rec.push(
            run,
            EventKind::StepFailedNonBlocking,
            Some(&sd.name),
            attempt,
            Some(message),
        );
    }
    Ok(())
}

/// The run fails as a required step giving up does: `error` recorded,
/// then compensation or a pause for an operator, per `on_failure`.
pub(super) fn fail_run(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    step: Option<&str>,
    attempt: u32,
    error: String,
    rec: &mut Recorder<'_>,
) -> Result<(), InvalidTransition> {
    run.error = Some(error);
    match run_to(run, RunEvent::RequiredStepGaveUp(def.on_failure))? {
        Action::AwaitOperator => {
            rec.push(run, EventKind::RunFailed, step, attempt, run.error.clone())
        }
        _ => rec.push(
            run,
            EventKind::CompensationStarted,
            None,
            0,
            run.error.clone(),
        ),
    }
    Ok(())
}

/// Moves the run forward until a handler must be called, a wait begins or
/// the run stops.
fn drive(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    rec: &mut Recorder<'_>,
    rand: &mut dyn FnMut() -> f64,
) -> Result<Next, InvalidTransition> {
    if let Some(next) = cancel::carry_out_request(run, def, rec)? {
        return Ok(next);
    }
    match run.state {
        RunState::Pending => {
            run_to(run, RunEvent::Begin)?;
            drive_forward(run, def, rec, rand)
        }
        RunState::Running => drive_forward(run, def, rec, rand),
        RunState::Compensating => compensation::drive_compensation(run, def, rec),
        _ => Ok(Next::Stop),
    }
}

fn drive_forward(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    rec: &mut Recorder<'_>,
    rand: &mut dyn FnMut() -> f64,
) -> Result<Next, InvalidTransition> {
    let now = rec.now;
    if wait::deadline_passed(run, def, rec)? {
        return drive(run, def, rec, rand);
    }
    while (run.cursor as usize) < def.steps.len() {
        let idx = run.cursor as usize;
        let sd = &def.steps[idx];
        let state = run.steps[idx].state;
        match state {
            s if s.is_done() => {
                run.cursor += 1;
            }
            StepState::Pending => {
                let step = &run.steps[idx];
                if step.attempts == 0
                    && let Some(cond) = &sd.when
                    && !cond.holds(&run.context)
                {
                    let step = &mut run.steps[idx];
                    step_to(step, StepEvent::Skip)?;
                    step.finished_at = Some(now);
                    run.cursor += 1;
                    rec.push(
                        run,
                        EventKind::StepSkipped,
                        Some(&sd.name),
                        0,
                        Some(format!("condition on {} is false", cond.path)),
                    );
                    continue;
                }
                if let Some(at) = step.next_attempt_at
                    && at > now
                {
                    return Ok(Next::Wait(at));
                }
                if sd.kind != StepKind::Task {
                    match wait::begin(run, def, idx, rec, rand)? {
                        Some(next) => return Ok(next),
                        None if run.state == RunState::Running => continue,
                        None => return drive(run, def, rec, rand),
                    }
                }
                if !rec.can_call(Some(&sd.handler)) {
                    return Ok(Next::Wait(now));
                }
                return start_forward(run, def, idx, rec);
            }
            StepState::Running => {
                if !rec.can_call(Some(&sd.handler)) {
                    return Ok(Next::Wait(now));
                }
                // The previous attempt never reported: the engine crashed or
                // lost the lease.
                if !attempt::interrupted_attempt(run, def, idx, CallKind::Forward, rec)? {
                    return drive(run, def, rec, rand);
                }
                return start_forward(run, def, idx, rec);
            }
            StepState::Waiting => match wait::look(run, def, idx, rec, rand)? {
                Some(next) => return Ok(next),
                None if run.state == RunState::Running => continue,
                None => return drive(run, def, rec, rand),
            },
            // FAILED steps only exist in FAILED runs, which are not driven.
            _ => return Ok(Next::Stop),
        }
    }
    run_to(run, RunEvent::AllStepsDone)?;
    run.error = None;
    rec.push(run, EventKind::RunCompleted, None, 0, None);
    Ok(Next::Stop)
}

fn start_forward(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    idx: usize,
    rec: &mut Recorder<'_>,
) -> Result<Next, InvalidTransition> {
    if !rec.may_start {
        return Ok(Next::Wait(rec.now));
    }
    let step = &mut run.steps[idx];
    step_to(step, StepEvent::Start)?;
    step.attempts += 1;
    step.next_attempt_at = None;
    step.wait_until = None;
    step.started_at.get_or_insert(rec.now);
    let attempt = step.attempts;
    rec.push(
        run,
        EventKind::StepStarted,
        Some(&def.steps[idx].name),
        attempt,
        None,
    );
    Ok(Next::Execute {
        step: idx,
        kind: CallKind::Forward,
        attempt,
    })
}
