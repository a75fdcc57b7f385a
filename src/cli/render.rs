//! Rendering answers: runs, events, definitions' fields and schedules as
//! JSON or as table rows.

use std::io::Write;

use sagaflow_proto::json;
use sagaflow_proto::v1 as pb;
use serde_json::{Value, json};

use super::client::Output;

pub(crate) fn struct_json(s: &Option<prost_types::Struct>) -> Value {
    s.as_ref()
        .and_then(|s| json::struct_to_json(s).ok())
        .unwrap_or(Value::Null)
}

pub(crate) fn ts(t: &Option<prost_types::Timestamp>) -> Value {
    t.as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
        .unwrap_or(Value::Null)
}

pub(crate) fn state_name(n: i32) -> String {
    pb::WorkflowState::try_from(n)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("WORKFLOW_STATE_")
                .to_owned()
        })
        .unwrap_or_else(|_| n.to_string())
}

pub(crate) fn step_state_name(n: i32) -> String {
    pb::StepState::try_from(n)
        .map(|s| s.as_str_name().trim_start_matches("STEP_STATE_").to_owned())
        .unwrap_or_else(|_| n.to_string())
}

pub fn workflow_json(w: &pb::Workflow) -> Value {
    json!({
        "id": w.id,
        "tenant_id": w.tenant_id,
        "workflow_name": w.workflow_name,
        "workflow_version": w.workflow_version,
        "state": state_name(w.state),
        "input": struct_json(&w.input),
        "context": struct_json(&w.context),
        "steps": w.steps.iter().map(|s| json!({
            "name": s.name,
            "index": s.index,
            "state": step_state_name(s.state),
            "required": s.required,
            "attempts": s.attempts,
            "compensation_attempts": s.compensation_attempts,
            "last_error": s.last_error,
            "output": struct_json(&s.output),
            "started_at": ts(&s.started_at),
            "finished_at": ts(&s.finished_at),
            "next_attempt_at": ts(&s.next_attempt_at),
            "waiting_for": s.waiting_for,
            "wake_at": ts(&s.wake_at),
            "handler": s.handler,
            "compensation_handler": s.compensation_handler,
        })).collect::<Vec<_>>(),
        "current_step": w.current_step,
        "search_attributes": w.search_attributes,
        "error": w.error,
        "idempotency_key": w.idempotency_key,
        "concurrency_key": w.concurrency_key,
        "schedule_id": w.schedule_id,
        "trace_id": w.trace_id,
        "created_at": ts(&w.created_at),
        "updated_at": ts(&w.updated_at),
        "finished_at": ts(&w.finished_at),
    })
}

pub fn event_json(e: &pb::WorkflowEvent) -> Value {
    json!({
        "workflow_id": e.workflow_id,
        "sequence": e.sequence,
        "at": ts(&e.at),
        "type": e.r#type,
        "step": e.step,
        "attempt": e.attempt,
        "workflow_state": state_name(e.workflow_state),
        "message": e.message,
        "actor": e.actor,
    })
}

pub(crate) fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub(crate) fn print_workflow(w: &pb::Workflow, out: Output) {
    if out == Output::Json {
        return print_json(&workflow_json(w));
    }
    println!("id:        {}", w.id);
    println!("workflow:  {} v{}", w.workflow_name, w.workflow_version);
    println!("state:     {}", state_name(w.state));
    if !w.current_step.is_empty() {
        println!("step:      {}", w.current_step);
    }
    if let Some(s) = w
        .steps
        .iter()
        .find(|s| s.state == pb::StepState::Waiting as i32)
    {
        println!("waiting:   {}", waiting_text(s));
    }
    if !w.error.is_empty() {
        println!("error:     {}", w.error);
    }
    if !w.idempotency_key.is_empty() {
        println!("idem key:  {}", w.idempotency_key);
    }
    if !w.steps.is_empty() {
        println!();
        println!(
            "{:<3} {:<28} {:<20} {:>8} {:>5}  ERROR",
            "#", "STEP", "STATE", "ATTEMPTS", "COMP"
        );
        for s in &w.steps {
            println!(
                "{:<3} {:<28} {:<20} {:>8} {:>5}  {}",
                s.index,
                s.name,
                step_state_name(s.state),
                s.attempts,
                s.compensation_attempts,
                s.last_error
            );
        }
    }
}

/// What a WAITING step waits for and until when, in words.
pub(crate) fn waiting_text(s: &pb::Step) -> String {
    let what = if s.waiting_for.is_empty() {
        format!("{} (timer or not ready yet)", s.name)
    } else {
        format!("{} for signal {}", s.name, s.waiting_for)
    };
    match s.wake_at {
        Some(_) => format!("{what} until {}", ts_str(&s.wake_at)),
        None => format!("{what}, no timeout"),
    }
}

pub(crate) fn print_event(e: &pb::WorkflowEvent, out: Output) {
    if out == Output::Json {
        println!("{}", event_json(e));
    } else {
        let at = ts(&e.at);
        println!(
            "{:>4}  {}  {:<28} {:<24} {:>3}  {:<20} {:<14} {}",
            e.sequence,
            at.as_str().unwrap_or(""),
            e.r#type,
            e.step,
            e.attempt,
            state_name(e.workflow_state),
            e.actor,
            e.message
        );
    }
    let _ = std::io::stdout().flush();
}

pub(crate) fn ts_str(t: &Option<prost_types::Timestamp>) -> String {
    ts(t).as_str().unwrap_or("-").to_owned()
}

pub(crate) fn enum_name(full: &str, prefix: &str) -> String {
    full.trim_start_matches(prefix).to_owned()
}

pub fn schedule_json(s: &pb::Schedule) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "cron": s.cron,
        "timezone": s.timezone,
        "workflow_name": s.workflow_name,
        "input": struct_json(&s.input),
        "paused": s.paused,
        "overlap_policy": pb::OverlapPolicy::try_from(s.overlap_policy).map(|p| enum_name(p.as_str_name(), "OVERLAP_POLICY_")).unwrap_or_default(),
        "catchup_policy": pb::CatchupPolicy::try_from(s.catchup_policy).map(|p| enum_name(p.as_str_name(), "CATCHUP_POLICY_")).unwrap_or_default(),
        "next_fire_at": ts(&s.next_fire_at),
        "last_fire_at": ts(&s.last_fire_at),
        "last_workflow_id": s.last_workflow_id,
        "created_at": ts(&s.created_at),
    })
}

pub(crate) fn print_schedules(all: &[pb::Schedule], out: Output) {
    if out == Output::Json {
        let v: Vec<Value> = all.iter().map(schedule_json).collect();
        return print_json(&Value::Array(v));
    }
    println!(
        "{:<36}  {:<24} {:<14} {:<22} {:<7} NEXT FIRE",
        "ID", "NAME", "CRON", "WORKFLOW", "PAUSED"
    );
    for s in all {
        println!(
            "{:<36}  {:<24} {:<14} {:<22} {:<7} {}",
            s.id,
            s.name,
            s.cron,
            s.workflow_name,
            s.paused,
            ts_str(&s.next_fire_at)
        );
    }
}
