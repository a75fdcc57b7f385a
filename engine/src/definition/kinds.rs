//! The rules of each step kind (task, sleep, signal) and of the run
//! deadline: which keys a kind takes, which it refuses, and their ranges.

use super::parse::is_identifier;
use super::{MAX_WAIT_MS, StepDefinition, StepKind, WorkflowDefinition};

/// Checks the workflow's `deadline_ms`.
pub(super) fn check_deadline(def: &WorkflowDefinition) -> Result<(), String> {
    match def.deadline_ms {
        Some(ms) => in_range("deadline_ms", ms),
        None => Ok(()),
    }
}

/// Checks the keys of one step against its kind. The handler's registration
/// is checked by the caller.
pub(super) fn check_step(s: &StepDefinition) -> Result<(), String> {
    let kind = s.kind.as_str();
    let refuse = |key: &str, set: bool| -> Result<(), String> {
        if set {
            Err(format!("{key} does not apply to a {kind} step"))
        } else {
            Ok(())
        }
    };
    match s.kind {
        StepKind::Task => {
            if s.handler.is_empty() {
                return Err(
                    "a task step needs a handler (or set kind = \"sleep\" or \"signal\")".into(),
                );
            }
            refuse("duration_ms", s.duration_ms.is_some())?;
            refuse("until", s.until.is_some())?;
            refuse("signal", s.signal.is_some())?;
            refuse("output_path", s.output_path.is_some())?;
        }
        StepKind::Sleep => {
            refuse("handler", !s.handler.is_empty())?;
            refuse("compensation", s.compensation.is_some())?;
            refuse("signal", s.signal.is_some())?;
            refuse("output_path", s.output_path.is_some())?;
            refuse("wait_timeout_ms", s.wait_timeout_ms.is_some())?;
            match (s.duration_ms, &s.until) {
                (Some(ms), None) => in_range("duration_ms", ms)?,
                (None, Some(p)) => pointer("until", p)?,
                _ => {
                    return Err(
                        "a sleep step takes exactly one of duration_ms and until (a JSON pointer to an RFC 3339 time in the context)"
                            .into(),
                    );
                }
            }
        }
        StepKind::Signal => {
            refuse("handler", !s.handler.is_empty())?;
            refuse("duration_ms", s.duration_ms.is_some())?;
            refuse("until", s.until.is_some())?;
            match &s.signal {
                None => {
                    return Err(
                        "a signal step needs signal = \"<name>\", the signal it waits for".into(),
                    );
                }
                Some(n) if !is_identifier(n) => {
                    return Err(format!(
                        "signal {n:?} must be lowercase letters, digits and '_', starting with a letter"
                    ));
                }
                Some(_) => {}
            }
            if let Some(p) = &s.output_path {
                pointer("output_path", p)?;
                if p[1..].contains('/') || p.len() < 2 {
                    return Err(format!(
                        "output_path {p:?} must name one top-level key of the context, like \"/approval\""
                    ));
                }
            }
        }
    }
    if let Some(ms) = s.wait_timeout_ms {
        in_range("wait_timeout_ms", ms)?;
    }
    Ok(())
}

fn in_range(key: &str, ms: u64) -> Result<(), String> {
    if ms == 0 || ms > MAX_WAIT_MS {
        return Err(format!(
            "{key} = {ms} must be between 1 and {MAX_WAIT_MS} (366 days), e.g. 3600000 for an hour"
        ));
    }
    Ok(())
}

fn pointer(key: &str, p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!(
            "{key} {p:?} must be a JSON pointer into the context, like \"/approve_by\""
        ));
    }
    Ok(())
}
