//! `Engine::signal`: delivering a named signal to a run. The signal is
//! checked, stored with its `signal_received` event, and the run's waiting
//! step (if it waits for that name) is woken; otherwise the signal is kept
//! until a step waits for it.

use serde_json::Value;

use super::engine::Engine;
use crate::definition::StepKind;
use crate::error::{Error, Result};
use crate::ids::{RunId, TenantId};
use crate::run::state::{RunState, StepState};
use crate::store::{RunRecord, SignalAck, SignalWrite};

/// A signal to deliver.
#[derive(Debug, Clone)]
pub struct SignalRequest {
    pub tenant_id: TenantId,
    pub run_id: RunId,
    pub name: String,
    /// A JSON object; it becomes the waiting step's output.
    pub payload: Value,
    /// Empty: every call is a new signal.
    pub idempotency_key: String,
    /// Who sent it.
    pub actor: String,
}

/// The answer to a signal.
#[derive(Debug, Clone)]
pub struct Signalled {
    /// The run after the signal was stored.
    pub run: RunRecord,
    /// A step was waiting for the signal (or, for a repeated key, took the
    /// first one); false: it is kept until a step waits for it.
    pub delivered: bool,
}

/// Longest signal name, and longest idempotency key.
const MAX_NAME: usize = 100;
const MAX_KEY: usize = 256;

fn check(req: &SignalRequest) -> Result<()> {
    let n = &req.name;
    let valid = !n.is_empty()
        && n.len() <= MAX_NAME
        && n.as_bytes()[0].is_ascii_lowercase()
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid {
        let shown: String = n.chars().take(40).collect();
        return Err(Error::InvalidArgument(format!(
            "signal_name {shown:?} must be 1 to {MAX_NAME} lowercase letters, digits and '_', starting with a letter (e.g. \"cpe_inform\")"
        )));
    }
    if req.idempotency_key.chars().count() > MAX_KEY || req.idempotency_key.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "idempotency_key must be at most {MAX_KEY} characters, without NUL"
        )));
    }
    if !req.payload.is_object() {
        return Err(Error::InvalidArgument(
            "payload must be a JSON object".into(),
        ));
    }
    Ok(())
}

impl Engine {
    /// Delivers a signal to a run of the tenant. A terminal run refuses it
    /// (FAILED_PRECONDITION); a repeated idempotency key changes nothing.
    pub async fn signal(&self, req: SignalRequest) -> Result<Signalled> {
        check(&req)?;
        let w = SignalWrite {
            tenant_id: req.tenant_id.clone(),
            run_id: req.run_id,
            name: req.name.clone(),
            idempotency_key: req.idempotency_key.clone(),
            payload: req.payload,
            actor: req.actor,
            now: self.shared.clock.now(),
        };
        let (run, delivered) = match self.shared.store_signal(w).await? {
            SignalAck::NotFound => return Err(Error::RunNotFound(req.run_id)),
            SignalAck::Terminal { run } => {
                return Err(Error::FailedPrecondition(format!(
                    "run {} is {}: a finished run takes no signals",
                    run.id, run.state
                )));
            }
            SignalAck::Duplicate { taken } => (self.get(&req.tenant_id, req.run_id).await?, taken),
            SignalAck::Stored { run } => {
                let waiting = self.waits_for(&run, &req.name).await?;
                let _ = self.shared.changes.send(run.id);
                if run.state == RunState::Running {
                    self.wake();
                }
                (*run, waiting)
            }
        };
        Ok(Signalled { run, delivered })
    }

    /// Whether the run's current step is waiting for signal `name`.
    async fn waits_for(&self, run: &RunRecord, name: &str) -> Result<bool> {
        if run.state != RunState::Running {
            return Ok(false);
        }
        let def = self.shared.definition(&run.definition_id).await?;
        let i = run.cursor as usize;
        Ok(matches!(
            (def.steps.get(i), run.steps.get(i)),
            (Some(sd), Some(s)) if sd.kind == StepKind::Signal
                && sd.signal.as_deref() == Some(name)
                && s.state == StepState::Waiting
        ))
    }
}
