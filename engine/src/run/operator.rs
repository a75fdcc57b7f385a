//! Operator actions (retry, compensate, skip, cancel) as pure functions on
//! a run in memory: which are allowed in which state, and what they change.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::model::{CancelRequest, EventKind, NewEvent, RunRecord};
use super::record::{Recorder, any_handler, merge_into};
use super::state::{RunEvent, RunState, StepEvent, StepState};
use crate::definition::WorkflowDefinition;

/// An operator action's effect on a run: the run was mutated in place.
#[derive(Debug, Clone)]
pub struct OperatorChange {
    pub events: Vec<NewEvent>,
    /// The write must find no live lease (it changes what a holder would).
    pub require_free_lease: bool,
    /// The run became terminal.
    pub finished: bool,
}

/// Actions an operator can take on a run.
#[derive(Debug, Clone)]
pub enum OperatorAction {
    Retry {
        from_step: Option<String>,
        context_patch: Option<Map<String, Value>>,
    },
    Compensate,
    Skip {
        step: String,
        output: Option<Map<String, Value>>,
    },
    Cancel {
        compensate: bool,
    },
    /// Back to `to_step`: compensate the completed steps from it on, merge
    /// the patch, go forward from it (see [`super::rewind`]).
    Rewind {
        to_step: String,
        context_patch: Option<Map<String, Value>>,
    },
}

impl OperatorAction {
    pub fn name(&self) -> &'static str {
        match self {
            OperatorAction::Retry { .. } => "retry",
            OperatorAction::Compensate => "compensate",
            OperatorAction::Skip { .. } => "skip",
            OperatorAction::Cancel { .. } => "cancel",
            OperatorAction::Rewind { .. } => "rewind",
        }
    }
}

/// Why an operator action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// The action does not fit the run's state.
    #[error("{0}")]
    Precondition(String),
    /// The request names something that does not exist.
    #[error("{0}")]
    Invalid(String),
}

/// Applies an operator's action to the run in memory.
pub fn operate(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    action: OperatorAction,
    actor: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<OperatorChange, ActionError> {
    let mut rec = Recorder {
        now,
        actor,
        events: Vec::new(),
        may_start: false,
        known: &any_handler,
        unknown: None,
        wait: Default::default(),
    };
    let reason = (!reason.is_empty()).then(|| reason.to_owned());
    let refuse = |run: &RunRecord, what: &str| {
        ActionError::Precondition(format!("cannot {what} a {} run", run.state))
    };
    let mut require_free_lease = true;
    match action {
        OperatorAction::Retry {
            from_step,
            context_patch,
        } => {
            match run.state {
                RunState::Failed => {
                    let failed = run.cursor as usize;
                    let from = match &from_step {
                        None => failed,
                        Some(name) => {
                            let i = def.steps.iter().position(|s| &s.name == name).ok_or_else(
                                || {
                                    ActionError::Invalid(format!(
                                        "workflow {} has no step {name:?}",
                                        def.name
                                    ))
                                },
                            )?;
                            if i > failed {
                                return Err(ActionError::Precondition(format!(
                                    "from_step {name:?} comes after the failed step {:?}; retry from it or an earlier step",
                                    def.steps.get(failed).map(|s| s.name.as_str()).unwrap_or("")
                                )));
                            }
                            i
                        }
                    };
                    if let Some(patch) = &context_patch {
                        merge_into(&mut run.context, patch);
                    }
                    for s in &mut run.steps[from..] {
                        // Its effect stays until the step runs again: a
                        // cancellation before that must undo it.
                        if s.state == StepState::Succeeded {
                            s.effect_uncertain = true;
                        }
                        if s.state != StepState::Pending {
                            s.state = s
                                .state
                                .apply(StepEvent::Reset)
                                .map_err(|e| ActionError::Precondition(e.to_string()))?;
                        }
                        s.attempts = 0;
                        s.next_attempt_at = None;
                        s.finished_at = None;
                        s.last_error = None;
                    }
                    run.cursor = from as u32;
                    run.error = None;
                    run.state
                        .apply(RunEvent::OperatorRetry)
                        .map_err(|e| ActionError::Precondition(e.to_string()))?;
                    run.state = RunState::Running;
                    run.next_run_at = Some(now);
                    let step = def.steps.get(from).map(|s| s.name.as_str());
                    rec.push(run, EventKind::OperatorRetry, step, 0, reason);
                }
                RunState::CompensationFailed => {
                    if from_step.is_some() {
                        return Err(ActionError::Precondition(
                        "from_step applies to FAILED runs; a COMPENSATION_FAILED run retries its failed compensation".into(),
                    ));
                    }
                    if let Some(patch) = &context_patch {
                        merge_into(&mut run.context, patch);
                    }
                    let mut step_name = None;
                    for (i, s) in run.steps.iter_mut().enumerate() {
                        if s.state == StepState::CompensationFailed {
                            s.state = StepState::Compensating;
                            s.compensation_attempts = 0;
                            s.next_attempt_at = None;
                            s.last_error = None;
                            step_name = Some(def.steps[i].name.clone());
                        }
                    }
                    run.state = run
                        .state
                        .apply(RunEvent::OperatorRetry)
                        .map_err(|e| ActionError::Precondition(e.to_string()))?
                        .to;
                    run.error = None;
                    run.next_run_at = Some(now);
                    rec.push(
                        run,
                        EventKind::OperatorRetry,
                        step_name.as_deref(),
                        0,
                        reason,
                    );
                }
                _ => return Err(refuse(run, "retry")),
            }
        }
        OperatorAction::Compensate => {
            if run.state != RunState::Failed {
                return Err(refuse(run, "compensate"));
            }
            run.state = run
                .state
                .apply(RunEvent::OperatorCompensate)
                .map_err(|e| ActionError::Precondition(e.to_string()))?
                .to;
            run.next_run_at = Some(now);
            rec.push(run, EventKind::OperatorCompensate, None, 0, reason);
        }
        OperatorAction::Skip { step, output } => {
            if run.state != RunState::Failed {
                return Err(refuse(run, "skip a step of"));
            }
            let idx = run.cursor as usize;
            let failed = def.steps.get(idx).map(|s| s.name.as_str()).unwrap_or("");
            if step != failed {
                if !def.steps.iter().any(|s| s.name == step) {
                    return Err(ActionError::Invalid(format!(
                        "workflow {} has no step {step:?}",
                        def.name
                    )));
                }
                return Err(ActionError::Precondition(format!(
                    "only the failed step {failed:?} can be skipped, not {step:?}"
                )));
            }
            let s = &mut run.steps[idx];
            s.state = s
                .state
                .apply(StepEvent::Skip)
                .map_err(|e| ActionError::Precondition(e.to_string()))?;
            s.finished_at = Some(now);
            // The operator takes the step over with whatever its attempts
            // may have left: a skipped step is never compensated, and
            // should it run again (a retry from it) the engine's account of
            // its effect starts afresh.
            s.effect_uncertain = false;
            if let Some(out) = &output {
                s.output = Some(Value::Object(out.clone()));
                merge_into(&mut run.context, out);
            }
            run.cursor += 1;
            run.error = None;
            run.state = run
                .state
                .apply(RunEvent::OperatorSkip)
                .map_err(|e| ActionError::Precondition(e.to_string()))?
                .to;
            run.next_run_at = Some(now);
            rec.push(run, EventKind::OperatorSkip, Some(&step), 0, reason);
        }
        OperatorAction::Rewind {
            to_step,
            context_patch,
        } => {
            super::rewind::start(run, def, &to_step, context_patch.as_ref(), &mut rec, reason)?;
        }
        OperatorAction::Cancel { compensate } => {
            // A state that accepts only an end without compensation.
            if !run.state.accepts_cancel(compensate) && run.state.accepts_cancel(false) {
                return Err(ActionError::Precondition(format!(
                    "cannot cancel a {} run with compensation (its compensation \
                     already gave up): retry it to run the compensation again, or cancel with \
                     compensate = false to end it TERMINATED as resolved by hand",
                    run.state
                )));
            }
            // Checked here; carried out by the executor (below) or at once.
            if !run.state.accepts_cancel(compensate) {
                return Err(refuse(run, "cancel"));
            }
            if run.cancel_request.is_some() {
                return Err(ActionError::Precondition(
                    "the run is already being cancelled".into(),
                ));
            }
            if !compensate
                && run.state.awaits_operator()
                && reason.as_deref().is_none_or(|r| r.trim().is_empty())
            {
                return Err(ActionError::Invalid(format!(
                    "reason: ending a {} run without compensation marks it resolved by hand; \
                     say what was done (e.g. the ticket)",
                    run.state
                )));
            }
            let req = if compensate {
                CancelRequest::Compensate
            } else {
                CancelRequest::Terminate
            };
            run.cancel_request = Some(req);
            match run.state {
                // A state the executor moves (one that accepts a cancel:
                // PENDING or RUNNING).
                s if s.is_executable() => {
                    // The executor carries the cancellation out at its next
                    // checkpoint, so an attempt in flight is accounted for.
                    require_free_lease = false;
                    if !run.is_leased(now) {
                        run.next_run_at = Some(now);
                    }
                    rec.push(run, EventKind::OperatorCancel, None, 0, reason);
                }
                _ => {
                    run.state = run
                        .state
                        .apply(RunEvent::Cancel { compensate })
                        .map_err(|e| ActionError::Precondition(e.to_string()))?
                        .to;
                    rec.push(run, EventKind::OperatorCancel, None, 0, reason);
                    if compensate {
                        run.next_run_at = Some(now);
                    } else {
                        run.next_run_at = None;
                        run.finished_at = Some(now);
                        let mut r = Recorder {
                            now,
                            actor: "engine",
                            events: Vec::new(),
                            may_start: false,
                            known: &any_handler,
                            unknown: None,
                            wait: Default::default(),
                        };
                        r.push(
                            run,
                            EventKind::RunTerminated,
                            None,
                            0,
                            Some("cancelled by an operator without compensation".into()),
                        );
                        rec.events.extend(r.events);
                    }
                }
            }
        }
    }
    Ok(OperatorChange {
        events: rec.events,
        require_free_lease,
        finished: run.state.is_terminal(),
    })
}
