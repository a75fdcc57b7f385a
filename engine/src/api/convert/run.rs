//! Runs, steps, events and definitions to proto, and proto run states back.

use sagaflow_proto::v1 as pb;
use tonic::Status;

use crate::definition::{LoadedDefinition, WorkflowDefinition};
use crate::run::model::{EventRecord, RunRecord};
use crate::run::state::{RunState, StepState};

use super::*;

pub fn run_state(s: RunState) -> pb::WorkflowState {
    use pb::WorkflowState as W;
    match s {
        RunState::Pending => W::Pending,
        RunState::Running => W::Running,
        RunState::Completed => W::Completed,
        RunState::Failed => W::Failed,
        RunState::Compensating => W::Compensating,
        RunState::Compensated => W::Compensated,
        RunState::CompensationFailed => W::CompensationFailed,
        RunState::Cancelled => W::Cancelled,
        RunState::Terminated => W::Terminated,
    }
}

/// A proto state number as a run state; UNSPECIFIED and unknown numbers are
/// refused.
pub fn run_state_from(n: i32) -> Result<RunState, Status> {
    use pb::WorkflowState as W;
    Ok(match W::try_from(n) {
        Ok(W::Pending) => RunState::Pending,
        Ok(W::Running) => RunState::Running,
        Ok(W::Completed) => RunState::Completed,
        Ok(W::Failed) => RunState::Failed,
        Ok(W::Compensating) => RunState::Compensating,
        Ok(W::Compensated) => RunState::Compensated,
        Ok(W::CompensationFailed) => RunState::CompensationFailed,
        Ok(W::Cancelled) => RunState::Cancelled,
        Ok(W::Terminated) => RunState::Terminated,
        Ok(W::Unspecified) | Err(_) => {
            return Err(Status::invalid_argument(format!(
                "{n} is not a workflow state"
            )));
        }
    })
}

pub fn step_state(s: StepState) -> pb::StepState {
    use pb::StepState as P;
    match s {
        StepState::Pending => P::Pending,
        StepState::Running => P::Running,
        StepState::Succeeded => P::Succeeded,
        StepState::Failed => P::Failed,
        StepState::FailedNonBlocking => P::FailedNonBlocking,
        StepState::Skipped => P::Skipped,
        StepState::Compensating => P::Compensating,
        StepState::Compensated => P::Compensated,
        StepState::CompensationFailed => P::CompensationFailed,
        StepState::Waiting => P::Waiting,
    }
}

/// A run as proto; `def` (the run's snapshot) fills the steps' handlers.
pub fn workflow(run: &RunRecord, def: Option<&WorkflowDefinition>) -> pb::Workflow {
    let steps = run
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let sd = def.and_then(|d| d.steps.get(i));
            pb::Step {
                name: s.name.clone(),
                index: i as u32,
                state: step_state(s.state) as i32,
                required: sd.is_none_or(|d| d.required),
                attempts: s.attempts,
                compensation_attempts: s.compensation_attempts,
                last_error: s.last_error.clone().unwrap_or_default(),
                output: s.output.as_ref().map(json_to_struct),
                started_at: s.started_at.map(timestamp),
                finished_at: s.finished_at.map(timestamp),
                next_attempt_at: s.next_attempt_at.map(timestamp),
                handler: sd.map(|d| d.handler.clone()).unwrap_or_default(),
                compensation_handler: sd.and_then(|d| d.compensation.clone()).unwrap_or_default(),
                waiting_for: sd
                    .filter(|_| s.state == StepState::Waiting)
                    .and_then(|d| d.signal.clone())
                    .unwrap_or_default(),
                wake_at: s
                    .wake_at
                    .filter(|_| s.state == StepState::Waiting)
                    .map(timestamp),
            }
        })
        .collect();
    pb::Workflow {
        id: run.id.to_string(),
        tenant_id: run.tenant_id.to_string(),
        workflow_name: run.workflow_name.clone(),
        workflow_version: run.workflow_version,
        state: run_state(run.state) as i32,
        input: Some(json_to_struct(&run.input)),
        context: Some(json_to_struct(&run.context)),
        steps,
        current_step: run.current_step().unwrap_or_default().to_owned(),
        error: run.error.clone().unwrap_or_default(),
        idempotency_key: run.idempotency_key.clone().unwrap_or_default(),
        concurrency_key: run.concurrency_key.clone().unwrap_or_default(),
        schedule_id: run.schedule_id.map(|s| s.to_string()).unwrap_or_default(),
        trace_id: run.trace_id.clone().unwrap_or_default(),
        created_at: Some(timestamp(run.created_at)),
        updated_at: Some(timestamp(run.updated_at)),
        finished_at: run.finished_at.map(timestamp),
        search_attributes: def
            .map(|d| d.search_values(&run.input).into_iter().collect())
            .unwrap_or_default(),
    }
}

pub fn event(e: &EventRecord) -> pb::WorkflowEvent {
    pb::WorkflowEvent {
        workflow_id: e.run_id.to_string(),
        sequence: e.seq,
        at: Some(timestamp(e.at)),
        r#type: e.kind.as_str().to_owned(),
        step: e.step.clone().unwrap_or_default(),
        attempt: e.attempt,
        workflow_state: run_state(e.run_state) as i32,
        message: e.message.clone().unwrap_or_default(),
        actor: e.actor.clone(),
    }
}

pub fn definition(d: &LoadedDefinition) -> pb::WorkflowDefinition {
    let def = &d.definition;
    pb::WorkflowDefinition {
        name: def.name.clone(),
        version: def.version,
        description: def.description.clone(),
        steps: def
            .steps
            .iter()
            .map(|s| pb::StepDefinition {
                name: s.name.clone(),
                handler: s.handler.clone(),
                compensation_handler: s.compensation.clone().unwrap_or_default(),
                required: s.required,
                max_attempts: s.retry().max_attempts,
                timeout_ms: s.timeout().as_millis().min(u32::MAX as u128) as u32,
                kind: s.kind.as_str().into(),
                signal_name: s.signal.clone().unwrap_or_default(),
                wait_timeout_ms: s
                    .wait_timeout_ms
                    .map_or(0, |ms| ms.min(u64::from(u32::MAX)) as u32),
            })
            .collect(),
        input_schema: Some(json_to_struct(&def.input_schema)),
        search_attributes: def.search_attributes.clone(),
    }
}
