//! Reading a step's request, for every ISP handler: the run's context (the
//! workflow input, see the schemas in `workflows/`, plus earlier steps'
//! outputs), the keys derived from the run and step (forward key,
//! allocation key, undo owner), and the shape of a handler's output.
//!
//! `subscriber.verify` puts a stored subscriber's data into the context
//! under the same names the provisioning input uses, so later steps of
//! suspend, reactivate and deprovision read them the same way.

use sagaflow_engine::handler::{CallKind, StepError, StepOutput, StepRequest};
use serde_json::Value;

use crate::adapters::Owner;
use crate::lifecycle::Family;

/// Default bandwidth of a profile whose input names none, in kbit/s.
const DEFAULT_DOWNLOAD_KBPS: i64 = 100_000;
const DEFAULT_UPLOAD_KBPS: i64 = 20_000;

pub(crate) type StepResult = Result<StepOutput, StepError>;

pub(crate) fn invalid(message: impl Into<String>) -> StepError {
    StepError::fatal("invalid_input", message)
}

pub(crate) fn output(v: Value) -> StepOutput {
    match v {
        Value::Object(m) => m,
        _ => StepOutput::new(),
    }
}

pub(crate) fn opt_str(req: &StepRequest, pointer: &str) -> Option<String> {
    req.context
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

pub(crate) fn opt_i64(req: &StepRequest, pointer: &str) -> Option<i64> {
    req.context.pointer(pointer).and_then(Value::as_i64)
}

pub(crate) fn flag(req: &StepRequest, pointer: &str) -> bool {
    req.context
        .pointer(pointer)
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

pub(crate) fn subscriber_id(req: &StepRequest) -> Result<String, StepError> {
    req.context_str("/subscriber_id").map(str::to_owned)
}

/// The run's id as the text an address record keeps of who moved it (the
/// address repositories also take other labels: maintenance, tests). The
/// subscriber repository takes the [`RunId`](sagaflow_engine::ids::RunId)
/// itself.
pub(crate) fn run(req: &StepRequest) -> String {
    req.run_id.to_string()
}

/// The forward key of the step (also when compensating): allocations are
/// found again by it.
pub(crate) fn forward_key(req: &StepRequest) -> String {
    format!("{}:{}", req.run_id, req.step)
}

/// Whose device an external undo may touch: a compensation only what its
/// step's forward request made, a forward removal only the subscriber's.
pub(crate) fn owner<'a>(req: &StepRequest, created_by: &'a str, subscriber: &'a str) -> Owner<'a> {
    match req.kind {
        CallKind::Compensate => Owner::Request(created_by),
        CallKind::Forward => Owner::Subscriber(subscriber),
    }
}

pub(crate) fn allocation_key(req: &StepRequest, family: Family) -> String {
    format!("{}:{}", forward_key(req), family.lower())
}

pub(crate) fn profile_numbers(req: &StepRequest) -> Result<(i64, i64, Option<i32>), StepError> {
    let vlan = match opt_i64(req, "/service_vlan") {
        None => None,
        Some(v) => Some(
            i32::try_from(v)
                .ok()
                .filter(|v| (1..=4094).contains(v))
                .ok_or_else(|| invalid(format!("service_vlan {v} is not a VLAN id (1-4094)")))?,
        ),
    };
    Ok((
        opt_i64(req, "/download_kbps").unwrap_or(DEFAULT_DOWNLOAD_KBPS),
        opt_i64(req, "/upload_kbps").unwrap_or(DEFAULT_UPLOAD_KBPS),
        vlan,
    ))
}
