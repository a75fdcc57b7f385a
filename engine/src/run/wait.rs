//! Steps that wait: `sleep` steps (a durable timer), `signal` steps (a named
//! signal from outside, with an optional timeout) and task steps whose
//! handler answered "not ready yet". A waiting step is only its record: the
//! state WAITING, when to look at it again (`wake_at`) and when the wait
//! times out (`wait_until`). The run is released meanwhile and holds no
//! executor slot; its `next_run_at` is the wake-up time, or none when only
//! a signal can wake it. Also the run's deadline. Pure.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::advance::fail_run;
use super::attempt::failed_attempt;
use super::model::{EventKind, RunRecord, StepRecord};
use super::record::{Recorder, merge_into, run_to, step_to};
use super::state::{InvalidTransition, Next, RunEvent, StepEvent, StepState};
use crate::definition::{StepKind, WorkflowDefinition};
use crate::handler::{CallKind, StepError};

/// How the `step_waiting` event of a step that begins to wait for a signal
/// starts its message (a timer's or a "not ready" handler's does not).
const SIGNAL_WAIT: &str = "waiting for signal ";

/// Whether `event` is a step beginning to wait for a signal.
pub fn is_signal_wait(event: &super::model::NewEvent) -> bool {
    event.kind == EventKind::StepWaiting
        && event
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with(SIGNAL_WAIT))
}

/// A signal delivered to a run and not yet taken by a step.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// The store's id, by which the checkpoint that takes it marks it.
    pub id: i64,
    pub name: String,
    pub payload: Value,
    pub received_at: DateTime<Utc>,
}

/// A signal taken by a step: the checkpoint that records the step marks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalTaken {
    pub id: i64,
    pub step: String,
}

/// What one advance knows and decides about waits.
#[derive(Debug, Default)]
pub(crate) struct WaitState<'a> {
    /// The run's signals not yet taken, oldest first.
    pub(crate) signals: &'a [Signal],
    /// The signal a step took in this advance.
    pub(crate) consumed: Option<SignalTaken>,
    /// A woken step merged its output into the context.
    pub(crate) context_changed: bool,
}

/// The shortest "not ready yet" delay: a handler answering zero is not
/// called in a loop.
const MIN_NOT_READY: std::time::Duration = std::time::Duration::from_millis(100);

fn ms(n: u64) -> chrono::Duration {
    chrono::Duration::milliseconds(i64::try_from(n).unwrap_or(i64::MAX))
}

/// When the run's deadline passes, if it has one.
pub fn deadline(run: &RunRecord, def: &WorkflowDefinition) -> Option<DateTime<Utc>> {
    def.deadline_ms.map(|d| run.created_at + ms(d))
}

/// The step is leaving its wait.
fn end_wait(step: &mut StepRecord) {
    step.wake_at = None;
    step.wait_until = None;
}

/// What a step's wait means for the run: wait until `at`, or for a signal
/// only (`Stop` leaves `next_run_at` empty; a signal or an operator makes
/// the run due).
fn wait_until_woken(at: Option<DateTime<Utc>>) -> Next {
    match at {
        Some(at) => Next::Wait(at),
        None => Next::Stop,
    }
}

/// A PENDING sleep or signal step is reached: it starts waiting (an attempt
/// is counted, so a signal's timeout retries per the step's policy), or
/// completes at once when its time has come or its signal is already there.
pub(super) fn begin(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    idx: usize,
    rec: &mut Recorder<'_>,
    rand: &mut dyn FnMut() -> f64,
) -> Result<Option<Next>, InvalidTransition> {
    if !rec.may_start {
        return Ok(Some(Next::Wait(rec.now)));
    }
    let now = rec.now;
    let sd = &def.steps[idx];
    let step = &mut run.steps[idx];
    step_to(step, StepEvent::Wait)?;
    step.attempts += 1;
    step.next_attempt_at = None;
    step.started_at.get_or_insert(now);
    let attempt = step.attempts;
    let (wake, message) = match sd.kind {
        StepKind::Sleep => match sleep_until(&run.context, sd, now) {
            Ok(at) => (Some(at), format!("sleeping until {}", at.to_rfc3339())),
            Err(e) => {
                failed_attempt(run, def, idx, CallKind::Forward, e, rec, rand)?;
                return Ok(None);
            }
        },
        _ => {
            let until = sd.wait_timeout_ms.map(|t| now + ms(t));
            let signal = sd.signal.as_deref().unwrap_or_default();
            let message = match until {
                Some(u) => format!("{SIGNAL_WAIT}{signal} until {}", u.to_rfc3339()),
                None => format!("{SIGNAL_WAIT}{signal}"),
            };
            run.steps[idx].wait_until = until;
            (until, message)
        }
    };
    run.steps[idx].wake_at = wake;
    rec.push(
        run,
        EventKind::StepWaiting,
        Some(&sd.name),
        attempt,
        Some(message),
    );
    look(run, def, idx, rec, rand)
}

fn sleep_until(
    context: &Value,
    sd: &crate::definition::StepDefinition,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, StepError> {
    if let Some(d) = sd.duration_ms {
        return Ok(now + ms(d));
    }
    let path = sd.until.as_deref().unwrap_or_default();
    context
        .pointer(path)
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| {
            StepError::fatal(
                "invalid_context",
                format!("the context has no RFC 3339 time at {path} (the sleep's until)"),
            )
        })
}

/// Looks at the WAITING step `idx`: completes it (its time came, its signal
/// is there), times it out, calls its handler again (a task that was not
/// ready), or keeps it waiting. `None`: the step is done, go on.
pub(super) fn look(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    idx: usize,
    rec: &mut Recorder<'_>,
    rand: &mut dyn FnMut() -> f64,
) -> Result<Option<Next>, InvalidTransition> {
    let now = rec.now;
    let sd = &def.steps[idx];
    let step = &run.steps[idx];
    let due = step.wake_at.is_some_and(|t| t <= now);
    match sd.kind {
        StepKind::Sleep => {
            if !due {
                return Ok(Some(wait_until_woken(step.wake_at)));
            }
            complete(run, def, idx, None, "the timer fired".into(), rec)?;
            Ok(None)
        }
        StepKind::Signal => {
            let name = sd.signal.as_deref().unwrap_or_default();
            if let Some(sig) = rec.wait.signals.iter().find(|s| s.name == name) {
                let key = sd
                    .output_path
                    .as_deref()
                    .map(|p| p[1..].replace("~1", "/").replace("~0", "~"))
                    .unwrap_or_else(|| name.to_owned());
                let mut out = Map::new();
                out.insert(key, sig.payload.clone());
                let message = format!("signal {name} received at {}", sig.received_at.to_rfc3339());
                rec.wait.consumed = Some(SignalTaken {
                    id: sig.id,
                    step: sd.name.clone(),
                });
                complete(run, def, idx, Some(out), message, rec)?;
                return Ok(None);
            }
            if step.wait_until.is_some_and(|t| t <= now) {
                let waited = sd.wait_timeout_ms.unwrap_or_default();
                let message = format!("no signal {name} within {waited} ms");
                time_out(run, def, idx, message, rec, rand)?;
                return Ok(None);
            }
            Ok(Some(wait_until_woken(step.wake_at)))
        }
        StepKind::Task => {
            if !due {
                return Ok(Some(wait_until_woken(step.wake_at)));
            }
            if !rec.may_start {
                return Ok(Some(Next::Wait(now)));
            }
            if !rec.can_call(Some(&sd.handler)) {
                return Ok(Some(Next::Wait(now)));
            }
            let step = &mut run.steps[idx];
            step_to(step, StepEvent::Start)?;
            step.wake_at = None;
            let attempt = step.attempts;
            rec.push(
                run,
                EventKind::StepWoken,
                Some(&sd.name),
                attempt,
                Some("asking the handler again".into()),
            );
            Ok(Some(Next::Execute {
                step: idx,
                kind: CallKind::Forward,
                attempt,
            }))
        }
    }
}

/// The waiting step `idx` is done: `output` (if any) is merged into the
/// context and the run goes on.
fn complete(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    idx: usize,
    output: Option<Map<String, Value>>,
    message: String,
    rec: &mut Recorder<'_>,
) -> Result<(), InvalidTransition> {
    let name = def.steps[idx].name.as_str();
    let step = &mut run.steps[idx];
    step_to(step, StepEvent::Succeed)?;
    end_wait(step);
    step.finished_at = Some(rec.now);
    step.last_error = None;
    let attempt = step.attempts;
    if let Some(out) = output {
        step.output = Some(Value::Object(out.clone()));
        merge_into(&mut run.context, &out);
        rec.wait.context_changed = true;
    }
    run.cursor = run.cursor.max(idx as u32 + 1);
    run_to(run, RunEvent::StepSucceeded)?;
    rec.push(
        run,
        EventKind::StepWoken,
        Some(name),
        attempt,
        Some(message),
    );
    rec.push(run, EventKind::StepSucceeded, Some(name), attempt, None);
    Ok(())
}

/// The wait of step `idx` timed out: the attempt fails (retryable, kind
/// `wait_timeout`) and the step's retry policy decides what follows.
fn time_out(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    idx: usize,
    message: String,
    rec: &mut Recorder<'_>,
    rand: &mut dyn FnMut() -> f64,
) -> Result<(), InvalidTransition> {
    let step = &mut run.steps[idx];
    end_wait(step);
    let attempt = step.attempts;
    rec.push(
        run,
        EventKind::WaitTimedOut,
        Some(&def.steps[idx].name),
        attempt,
        Some(message.clone()),
    );
    failed_attempt(
        run,
        def,
        idx,
        CallKind::Forward,
        StepError::retryable("wait_timeout", message),
        rec,
        rand,
    )
}

/// A task's handler answered "not ready yet, look again after
/// `retry_after`": the step waits (no attempt counted) until then, but not
/// past the step's `wait_timeout_ms` counted from its first such answer;
/// once that has passed, the attempt fails with kind `wait_timeout`.
pub(super) fn not_ready(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    idx: usize,
    retry_after: std::time::Duration,
    message: String,
    rec: &mut Recorder<'_>,
    rand: &mut dyn FnMut() -> f64,
) -> Result<(), InvalidTransition> {
    let now = rec.now;
    let sd = &def.steps[idx];
    let step = &mut run.steps[idx];
    if step.wait_until.is_none() {
        step.wait_until = sd.wait_timeout_ms.map(|t| now + ms(t));
    }
    if step.wait_until.is_some_and(|t| t <= now) {
        let waited = sd.wait_timeout_ms.unwrap_or_default();
        return time_out(
            run,
            def,
            idx,
            format!("not ready within {waited} ms: {message}"),
            rec,
            rand,
        );
    }
    let after =
        chrono::Duration::from_std(retry_after.max(MIN_NOT_READY)).unwrap_or(chrono::Duration::MAX);
    let mut at = now.checked_add_signed(after).unwrap_or(now);
    if let Some(u) = step.wait_until {
        at = at.min(u);
    }
    step_to(step, StepEvent::Wait)?;
    step.wake_at = Some(at);
    step.last_error = Some(format!("not ready: {message}"));
    let attempt = step.attempts;
    rec.push(
        run,
        EventKind::StepWaiting,
        Some(&sd.name),
        attempt,
        Some(format!(
            "not ready: {message}; looking again at {}",
            at.to_rfc3339()
        )),
    );
    Ok(())
}

/// Ends every wait of the run (it is being cancelled, or its deadline
/// passed): the step goes back to PENDING, its attempt count restored.
pub(super) fn withdraw_waits(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    why: &str,
    rec: &mut Recorder<'_>,
) -> Result<(), InvalidTransition> {
    for i in 0..run.steps.len() {
        let s = &mut run.steps[i];
        if s.state != StepState::Waiting {
            continue;
        }
        step_to(s, StepEvent::Withdraw)?;
        end_wait(s);
        let attempt = s.attempts;
        if def.steps[i].kind != StepKind::Task {
            s.attempts = s.attempts.saturating_sub(1);
        }
        rec.push(
            run,
            EventKind::StepInterrupted,
            Some(&def.steps[i].name),
            attempt,
            Some(format!("the wait ended: {why}")),
        );
    }
    Ok(())
}

/// The run's deadline has passed while it goes forward: its waits end, an
/// attempt left unfinished counts as failed with an unknown outcome, and
/// the run fails as if a required step gave up (compensating or pausing
/// per `on_failure`). False when the deadline has not passed.
pub(super) fn deadline_passed(
    run: &mut RunRecord,
    def: &WorkflowDefinition,
    rec: &mut Recorder<'_>,
) -> Result<bool, InvalidTransition> {
    let Some(at) = deadline(run, def).filter(|d| *d <= rec.now) else {
        return Ok(false);
    };
    withdraw_waits(run, def, "the run's deadline passed", rec)?;
    let now = rec.now;
    let mut current: Option<(usize, u32)> = None;
    for (i, s) in run.steps.iter_mut().enumerate() {
        if s.state == StepState::Running {
            // An attempt left unfinished: its effect may exist.
            step_to(s, StepEvent::Fail)?;
            s.effect_uncertain = true;
            s.finished_at = Some(now);
            current = Some((i, s.attempts));
        }
    }
    let current = current.or_else(|| {
        let i = run.cursor as usize;
        run.steps.get(i).map(|s| (i, s.attempts))
    });
    let message = format!(
        "the run's deadline ({} ms, at {}) passed",
        def.deadline_ms.unwrap_or_default(),
        at.to_rfc3339()
    );
    rec.push(
        run,
        EventKind::RunDeadlineExceeded,
        None,
        0,
        Some(message.clone()),
    );
    let step = current.map(|(i, _)| def.steps[i].name.as_str());
    let attempt = current.map_or(0, |(_, a)| a);
    fail_run(run, def, step, attempt, message, rec)?;
    Ok(true)
}
