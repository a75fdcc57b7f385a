//! The saga logic, pure: given a run in memory and the outcome of its last
//! attempt, decide what changes, which events are appended and what the
//! executor does next. Operator actions are pure functions here too. Nothing
//! in this module does I/O; the executor and the engine persist the result.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::definition::WorkflowDefinition;
use crate::handler::{CallKind, StepError, StepOutput};
use crate::state::{Action, RunEvent, RunState, StepEvent, StepState};
use crate::store::{CancelRequest, EventKind, NewEvent, RunRecord, StepRecord};

/// What the executor does after [`advance`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Call the handler of step `step` (already marked as started).
    Execute {
        step: usize,
        kind: CallKind,
        attempt: u32,
    },
    /// Nothing to do until then (a retry's backoff).
    Wait(DateTime<Utc>),
    /// Nothing to do: the run is terminal or waits for an operator.
    Stop,
}

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
}

/// The fields an event gets from where it happens.
struct Recorder<'a> {
    now: DateTime<Utc>,
    actor: &'a str,
    events: Vec<NewEvent>,
    may_start: bool,
    /// Whether this engine has a handler of that name.
    known: &'a dyn Fn(&str) -> bool,
    /// The handler the next attempt needs but this engine does not have.
    unknown: Option<String>,
}

fn any_handler(_: &str) -> bool {
    true
}

impl Recorder<'_> {
    /// False (and the handler noted) when the attempt that needs `handler`
    /// cannot start in this engine: nothing is written for it.
    fn can_call(&mut self, handler: Option<&str>) -> bool {
        match handler {
            Some(h) if !(self.known)(h) => {
                self.unknown = Some(h.to_owned());
                false
            }
            _ => true,
        }
    }

    fn push(
        &mut self,
        run: &RunRecord,
        kind: EventKind,
        step: Option<&str>,
        attempt: u32,
        message: Option<String>,
    ) {
        self.events.push(NewEvent {
            kind,
            step: step.map(str::to_owned),
            attempt,
            run_state: run.state,
            message,
            actor: self.actor.to_owned(),
            at: self.now,
        });
    }
}

fn step_to(step: &mut StepRecord, event: StepEvent) -> Result<(), crate::state::InvalidTransition> {
    step.state = step.state.apply(event)?;
    Ok(())
}

fn run_to(run: &mut RunRecord, event: RunEvent) -> Result<Action, crate::state::InvalidTransition> {
    let t = run.state.apply(event)?;
    run.state = t.to;
    Ok(t.action)
}

/// Merges `output`'s keys into the context (shallow).
pub fn merge_into(context: &mut Value, output: &Map<String, Value>) {
    if !context.is_object() {
        *context = Value::Object(Map::new());
    }
    if let Value::Object(ctx) = context {
        for (k, v) in output {
            ctx.insert(k.clone(), v.clone());
        }
    }
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
) -> Result<Advance, crate::state::InvalidTransition> {
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
) -> Result<Advance, crate::state::InvalidTransition> {
    let mut rec = Recorder {
        now,
        actor: "engine",
        events: Vec::new(),
        may_start,
        known,
        unknown: None,
    };
    let mut context_changed = false;
    if let Some(o) = outcome {
        context_changed = apply_outcome(run, def, o, &mut rec, rand)?;
    }
    let next = drive(run, def, &mut rec)?;
    let finished = run.state.is_terminal();
    if finished && run.finished_at.is_none() {
        run.finished_at = Some(now);
    }
    Ok(Advance {
        next,
        events: rec.events,
        context_changed,
        finished,
        unknown_handler: rec.unknown,
    })
}

fn apply_outcome(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    o: Outcome,
    rec: &mut Recorder<'_>,
    rand: &mut dyn FnMut() -> f64,
) -> Result<bool, crate::state::InvalidTransition> {
    let now = rec.now;
    let Some(sd) = def.steps.get(o.step) else {
        return Ok(false);
    };
    let name = sd.name.as_str();
    match (o.kind, o.result) {
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
        (CallKind::Forward, Err(e)) => {
            let policy = sd.retry();
            let step = &mut run.steps[o.step];
            let attempt = step.attempts;
            let message = e.to_string();
            step.last_error = Some(message.clone());
            step.effect_uncertain |= e.outcome_unknown();
            rec.push(
                run,
                EventKind::StepFailed,
                Some(name),
                attempt,
                Some(message.clone()),
            );
            if policy.should_retry(attempt, e.is_retryable(), e.kind()) {
                let at = now
                    + chrono::Duration::from_std(policy.delay(attempt, rand())).unwrap_or_default();
                let step = &mut run.steps[o.step];
                step_to(step, StepEvent::ScheduleRetry)?;
                step.next_attempt_at = Some(at);
                run_to(run, RunEvent::StepRetryScheduled)?;
                rec.push(
                    run,
                    EventKind::StepRetryScheduled,
                    Some(name),
                    attempt + 1,
                    Some(format!("next attempt at {}", at.to_rfc3339())),
                );
            } else {
                give_up_forward(run, def, o.step, message, rec)?;
            }
            Ok(false)
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
        (CallKind::Compensate, Err(e)) => {
            let policy = sd.compensation_retry();
            let step = &mut run.steps[o.step];
            let attempt = step.compensation_attempts;
            let message = e.to_string();
            step.last_error = Some(message.clone());
            rec.push(
                run,
                EventKind::CompensationStepFailed,
                Some(name),
                attempt,
                Some(message.clone()),
            );
            if policy.should_retry(attempt, e.is_retryable(), e.kind()) {
                let at = now
                    + chrono::Duration::from_std(policy.delay(attempt, rand())).unwrap_or_default();
                let step = &mut run.steps[o.step];
                step_to(step, StepEvent::ScheduleCompensationRetry)?;
                step.next_attempt_at = Some(at);
                run_to(run, RunEvent::CompensationRetryScheduled)?;
                rec.push(
                    run,
                    EventKind::CompensationRetryScheduled,
                    Some(name),
                    attempt + 1,
                    Some(format!("next attempt at {}", at.to_rfc3339())),
                );
            } else {
                give_up_compensation(run, o.step, name, message, rec)?;
            }
            Ok(false)
        }
    }
}

fn give_up_forward(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    idx: usize,
    message: String,
    rec: &mut Recorder<'_>,
) -> Result<(), crate::state::InvalidTransition> {
    let sd = &def.steps[idx];
    let step = &mut run.steps[idx];
    let attempt = step.attempts;
    step.finished_at = Some(rec.now);
    step.next_attempt_at = None;
    if sd.required {
        step_to(step, StepEvent::Fail)?;
        run.error = Some(format!(
            "step {} failed after {attempt} attempt(s): {message}",
            sd.name
        ));
        match run_to(run, RunEvent::RequiredStepGaveUp(def.on_failure))? {
            Action::AwaitOperator => rec.push(
                run,
                EventKind::RunFailed,
                Some(&sd.name),
                attempt,
                run.error.clone(),
            ),
            _ => rec.push(
                run,
                EventKind::CompensationStarted,
                None,
                0,
                run.error.clone(),
            ),
        }
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

fn give_up_compensation(
    run: &mut RunRecord,
    idx: usize,
    name: &str,
    message: String,
    rec: &mut Recorder<'_>,
) -> Result<(), crate::state::InvalidTransition> {
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

/// Moves the run forward until a handler must be called, a wait begins or
/// the run stops.
fn drive(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    rec: &mut Recorder<'_>,
) -> Result<Next, crate::state::InvalidTransition> {
    let now = rec.now;
    // A cancellation recorded while the run was moving is carried out here,
    // including when the run has just paused as FAILED.
    if let (Some(req), RunState::Pending | RunState::Running | RunState::Failed) =
        (run.cancel_request, run.state)
    {
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
            return Ok(Next::Stop);
        }
    }
    match run.state {
        RunState::Pending => {
            run_to(run, RunEvent::Begin)?;
            drive_forward(run, def, rec)
        }
        RunState::Running => drive_forward(run, def, rec),
        RunState::Compensating => drive_compensation(run, def, rec),
        _ => Ok(Next::Stop),
    }
}

fn drive_forward(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    rec: &mut Recorder<'_>,
) -> Result<Next, crate::state::InvalidTransition> {
    let now = rec.now;
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
                // lost the lease. It counts as a failed attempt whose effect
                // may exist.
                run.steps[idx].effect_uncertain = true;
                let attempt = run.steps[idx].attempts;
                rec.push(
                    run,
                    EventKind::StepInterrupted,
                    Some(&sd.name),
                    attempt,
                    Some("the attempt did not finish (engine stopped or lease lost)".into()),
                );
                if attempt >= sd.retry().max_attempts {
                    let step = &mut run.steps[idx];
                    step.last_error = Some("interrupted: the attempt did not finish".into());
                    give_up_forward(
                        run,
                        def,
                        idx,
                        "interrupted: the attempt did not finish".into(),
                        rec,
                    )?;
                    return drive(run, def, rec);
                }
                return start_forward(run, def, idx, rec);
            }
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
) -> Result<Next, crate::state::InvalidTransition> {
    if !rec.may_start {
        return Ok(Next::Wait(rec.now));
    }
    let step = &mut run.steps[idx];
    step_to(step, StepEvent::Start)?;
    step.attempts += 1;
    step.next_attempt_at = None;
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

fn drive_compensation(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    rec: &mut Recorder<'_>,
) -> Result<Next, crate::state::InvalidTransition> {
    let now = rec.now;
    // Strict reverse order: the highest step that succeeded and has a
    // compensation handler goes first.
    let target = (0..def.steps.len()).rev().find(|&i| {
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
        step.state == StepState::Compensating || (has_effect && def.steps[i].compensation.is_some())
    });
    let Some(idx) = target else {
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
        let attempt = step.compensation_attempts;
        rec.push(
            run,
            EventKind::StepInterrupted,
            Some(&sd.name),
            attempt,
            Some("the compensation attempt did not finish".into()),
        );
        if attempt >= sd.compensation_retry().max_attempts {
            give_up_compensation(
                run,
                idx,
                &sd.name,
                "interrupted: the attempt did not finish".into(),
                rec,
            )?;
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

/// Withdraws the attempt of `step` that was recorded as started but whose
/// handler was never called: the run was cancelled in between.
pub fn withdraw_attempt(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    step: usize,
    now: DateTime<Utc>,
) -> Result<NewEvent, crate::state::InvalidTransition> {
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
}

impl OperatorAction {
    pub fn name(&self) -> &'static str {
        match self {
            OperatorAction::Retry { .. } => "retry",
            OperatorAction::Compensate => "compensate",
            OperatorAction::Skip { .. } => "skip",
            OperatorAction::Cancel { .. } => "cancel",
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
        OperatorAction::Cancel { compensate } => {
            if compensate && run.state == RunState::CompensationFailed {
                return Err(ActionError::Precondition(
                    "cannot cancel a COMPENSATION_FAILED run with compensation (its compensation \
                     already gave up): retry it to run the compensation again, or cancel with \
                     compensate = false to end it TERMINATED as resolved by hand"
                        .into(),
                ));
            }
            // Checked here; carried out by the executor (below) or at once.
            run.state
                .apply(RunEvent::Cancel { compensate })
                .map_err(|_| refuse(run, "cancel"))?;
            if run.cancel_request.is_some() {
                return Err(ActionError::Precondition(
                    "the run is already being cancelled".into(),
                ));
            }
            if !compensate
                && matches!(run.state, RunState::Failed | RunState::CompensationFailed)
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
                RunState::Pending | RunState::Running => {
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
