//! Decoding the rows of the runs, events, schedules and fires tables, on
//! either backend ([`ReadRow`]). A stored name the engine does not know is
//! a corrupt row.

use super::ReadRow;
use crate::ids::{RunId, TenantId};
use crate::run::state::UnknownState;
use crate::schedule::model::{FireRecord, Schedule, ScheduleId};
use crate::store::{
    CancelRequest, EventKind, EventRecord, Result, RunRecord, StoreError, steps_decode,
};

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

pub(crate) fn run_from_row<R: ReadRow + ?Sized>(row: &R) -> Result<RunRecord> {
    let state = row.text("state")?;
    let cancel = row.opt_text("cancel_request")?;
    Ok(RunRecord {
        id: RunId(row.uuid("id")?),
        tenant_id: TenantId(row.text("tenant_id")?),
        workflow_name: row.text("workflow_name")?,
        workflow_version: row.int("workflow_version")?,
        definition_id: row.text("definition_id")?,
        state: state
            .parse()
            .map_err(|e: UnknownState| StoreError::Corrupt(e.to_string()))?,
        input: row.json("input")?,
        context: row.json("context")?,
        steps: steps_decode(&row.text("steps")?)?,
        cursor: row.int("cursor")?,
        error: row.opt_text("error")?,
        idempotency_key: row.opt_text("idempotency_key")?,
        concurrency_key: row.opt_text("concurrency_key")?,
        schedule_id: row
            .opt_text("schedule_id")?
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: uuid::Error| StoreError::Corrupt(format!("schedule_id: {e}")))?,
        trace_id: row.opt_text("trace_id")?,
        traceparent: row.opt_text("traceparent")?,
        cancel_request: cancel.as_deref().map(CancelRequest::parse).transpose()?,
        last_seq: row.int64("last_seq")? as u64,
        next_run_at: row.opt_time("next_run_at")?,
        lease_owner: row.opt_text("lease_owner")?,
        lease_expires_at: row.opt_time("lease_expires_at")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
        finished_at: row.opt_time("finished_at")?,
    })
}

pub(crate) fn event_from_row<R: ReadRow + ?Sized>(row: &R) -> Result<EventRecord> {
    let state = row.text("run_state")?;
    let kind = row.text("kind")?;
    Ok(EventRecord {
        run_id: RunId(row.uuid("run_id")?),
        seq: row.int64("seq")? as u64,
        at: row.time("at")?,
        kind: EventKind::parse(&kind)?,
        step: row.opt_text("step")?,
        attempt: row.int("attempt")?,
        run_state: state
            .parse()
            .map_err(|e: UnknownState| StoreError::Corrupt(e.to_string()))?,
        message: row.opt_text("message")?,
        actor: row.text("actor")?,
    })
}

pub(crate) fn schedule_from_row<R: ReadRow + ?Sized>(row: &R) -> Result<Schedule> {
    let overlap = row.text("overlap_policy")?;
    let catchup = row.text("catchup_policy")?;
    let state = row.opt_text("last_run_state")?;
    Ok(Schedule {
        id: ScheduleId(row.uuid("id")?),
        tenant_id: TenantId(row.text("tenant_id")?),
        name: row.text("name")?,
        cron: row.text("cron")?,
        timezone: row.text("timezone")?,
        workflow_name: row.text("workflow_name")?,
        input: row.json("input")?,
        paused: row.flag("paused")?,
        pause_reason: row.opt_text("pause_reason")?,
        overlap_policy: overlap.parse().map_err(corrupt)?,
        catchup_policy: catchup.parse().map_err(corrupt)?,
        next_fire_at: row.opt_time("next_fire_at")?,
        last_fire_at: row.opt_time("last_fire_at")?,
        last_workflow_id: row.opt_uuid("last_workflow_id")?.map(RunId),
        buffered_fire_at: row.opt_time("buffered_fire_at")?,
        revision: row.int64("revision")? as u64,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
        last_run_state: state
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(corrupt)?,
    })
}

pub(crate) fn fire_from_row<R: ReadRow + ?Sized>(
    row: &R,
    schedule_id: ScheduleId,
) -> Result<FireRecord> {
    let outcome = row.text("outcome")?;
    Ok(FireRecord {
        schedule_id,
        scheduled_time: row.time("scheduled_time")?,
        outcome: outcome.parse().map_err(corrupt)?,
        run_id: row.opt_uuid("run_id")?.map(RunId),
        detail: row.opt_text("detail")?,
        at: row.time("at")?,
    })
}
