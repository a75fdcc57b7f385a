//! What a new run starts as: every step pending, and the events its start
//! appends (`run_started`, then `run_queued` when it waits behind its
//! concurrency key). Pure: both store backends write what this builds.

use chrono::{DateTime, Utc};

use super::model::{EventKind, NewEvent, StepRecord};
use super::state::RunState;
use crate::definition::WorkflowDefinition;

/// The steps of a new run of `def`, all pending.
pub fn initial_steps(def: &WorkflowDefinition) -> Vec<StepRecord> {
    def.steps.iter().map(|s| StepRecord::new(&s.name)).collect()
}

/// The events a start appends: `run_started`, and `run_queued` when the run
/// waits for its concurrency key.
pub fn start_events(actor: &str, now: DateTime<Utc>, queued: bool) -> Vec<NewEvent> {
    let mut events = vec![NewEvent {
        kind: EventKind::RunStarted,
        step: None,
        attempt: 0,
        run_state: RunState::Pending,
        message: None,
        actor: actor.to_owned(),
        at: now,
    }];
    if queued {
        events.push(NewEvent {
            kind: EventKind::RunQueued,
            message: Some("waiting for the concurrency key to be free".into()),
            ..events[0].clone()
        });
    }
    events
}
