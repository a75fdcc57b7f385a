//! The bookkeeping every pure run function shares: the [`Recorder`] that
//! collects the events one change appends, the table-checked moves of a run
//! and of a step, and the shallow context merge.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::model::{EventKind, NewEvent, RunRecord, StepRecord};
use super::state::{Action, InvalidTransition, RunEvent, StepEvent};

/// The fields an event gets from where it happens.
pub(crate) struct Recorder<'a> {
    pub(crate) now: DateTime<Utc>,
    pub(crate) actor: &'a str,
    pub(crate) events: Vec<NewEvent>,
    pub(crate) may_start: bool,
    /// Whether this engine has a handler of that name.
    pub(crate) known: &'a dyn Fn(&str) -> bool,
    /// The handler the next attempt needs but this engine does not have.
    pub(crate) unknown: Option<String>,
    /// The run's signals, and what the waits of this change decided.
    pub(crate) wait: super::wait::WaitState<'a>,
}

pub(crate) fn any_handler(_: &str) -> bool {
    true
}

impl Recorder<'_> {
    /// False (and the handler noted) when the attempt that needs `handler`
    /// cannot start in this engine: nothing is written for it.
    pub(crate) fn can_call(&mut self, handler: Option<&str>) -> bool {
        match handler {
            Some(h) if !(self.known)(h) => {
                self.unknown = Some(h.to_owned());
                false
            }
            _ => true,
        }
    }

    pub(crate) fn push(
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

pub(crate) fn step_to(step: &mut StepRecord, event: StepEvent) -> Result<(), InvalidTransition> {
    step.state = step.state.apply(event)?;
    Ok(())
}

pub(crate) fn run_to(run: &mut RunRecord, event: RunEvent) -> Result<Action, InvalidTransition> {
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
