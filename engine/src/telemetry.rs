//! Metrics and trace context of the engine.
//!
//! Metrics go through the `metrics` facade: whoever embeds the engine
//! installs a recorder (the server exports them in the Prometheus format on
//! `/metrics`; every name is listed in `docs/metrics.md`). Labels only carry
//! bounded values: workflow and step names come from the loaded definitions,
//! `adapter` is the handler name from the registry, and the rest are fixed
//! words. Run ids, tenants and subscribers are never labels; they are span
//! fields.
//!
//! Traces: the W3C `traceparent` a caller sent with `StartWorkflow` is
//! stored with the run; [`join_trace`] makes the run's span (and so its step
//! spans) children of it whichever replica drives the run, and however late.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_histogram, histogram};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::definition::Definitions;
use crate::handler::{CallKind, StepError};
use crate::ids::RunId;
use crate::run::model::{EventKind, NewEvent};

pub const RUNS_STARTED: &str = "sagaflow_runs_started_total";
pub const RUNS_FINISHED: &str = "sagaflow_runs_finished_total";
pub const STEP_ATTEMPTS: &str = "sagaflow_step_attempts_total";
pub const STEP_FAILURES: &str = "sagaflow_step_failures_total";
pub const STEP_DURATION: &str = "sagaflow_step_duration_seconds";
pub const STEP_RETRIES: &str = "sagaflow_step_retries_total";
pub const STEP_NON_BLOCKING_FAILURES: &str = "sagaflow_step_non_blocking_failures_total";
pub const STEP_INTERRUPTIONS: &str = "sagaflow_step_interruptions_total";
pub const COMPENSATIONS: &str = "sagaflow_compensations_total";
pub const RUNS_CLAIMED: &str = "sagaflow_runs_claimed_total";
pub const CLAIM_DURATION: &str = "sagaflow_claim_duration_seconds";
pub const LEASES_LOST: &str = "sagaflow_leases_lost_total";
pub const UNKNOWN_HANDLER_RELEASES: &str = "sagaflow_unknown_handler_releases_total";
pub const UNDECODABLE_RUNS: &str = "sagaflow_undecodable_runs_total";
pub const QUEUE_EXPIRED: &str = "sagaflow_queue_expired_total";
pub const WEBHOOK_DELIVERIES: &str = "sagaflow_webhook_deliveries_total";

/// Registers the help text of the engine's metrics with the installed
/// recorder (call once, after installing it).
pub fn describe() {
    describe_counter!(RUNS_STARTED, "Runs created, by workflow.");
    describe_counter!(
        RUNS_FINISHED,
        "Runs that reached a resting state (completed, failed, compensated, compensation_failed, cancelled, terminated), by workflow and state."
    );
    describe_counter!(
        STEP_ATTEMPTS,
        "Handler calls, by workflow, step, adapter (handler) and kind (forward, compensate)."
    );
    describe_counter!(
        STEP_FAILURES,
        "Handler calls that failed, by workflow, step, adapter, kind and error (retryable, fatal)."
    );
    describe_histogram!(
        STEP_DURATION,
        metrics::Unit::Seconds,
        "Duration of handler calls, by workflow, step, adapter, kind and outcome."
    );
    describe_counter!(
        STEP_RETRIES,
        "Retries scheduled, by workflow, step and kind."
    );
    describe_counter!(
        STEP_NON_BLOCKING_FAILURES,
        "Optional steps that gave up (the run went on), by workflow and step."
    );
    describe_counter!(
        STEP_INTERRUPTIONS,
        "Attempts found unfinished (their replica stopped or its lease expired), by workflow and step."
    );
    describe_counter!(
        COMPENSATIONS,
        "Compensations finished, by workflow, step and outcome (succeeded, failed)."
    );
    describe_counter!(
        RUNS_CLAIMED,
        "Runs leased by this replica: claimed (via=claim), or leased by a start made through it (via=start)."
    );
    describe_histogram!(
        CLAIM_DURATION,
        metrics::Unit::Seconds,
        "Duration of one claim statement."
    );
    describe_counter!(
        LEASES_LOST,
        "Leases this replica lost while driving a run, by reason (renewal, fenced)."
    );
    describe_counter!(
        UNKNOWN_HANDLER_RELEASES,
        "Runs released untouched because their next attempt needs a handler this replica does not have, by workflow."
    );
    describe_counter!(
        QUEUE_EXPIRED,
        "Runs that waited behind their concurrency key longer than the workflow's queue_ttl_ms and ended cancelled without running, by workflow."
    );
    describe_counter!(
        WEBHOOK_DELIVERIES,
        "Tries of run-outcome webhook deliveries, by outcome: delivered (2xx), failed (retried later), disabled (failed for 24 h; the webhook is disabled)."
    );
    describe_counter!(
        UNDECODABLE_RUNS,
        "Claimed runs whose row could not be decoded; each was parked (released, not due for an hour) and logged with its id."
    );
}

/// Exports the counters whose events are rare at zero from the start, so
/// that a dashboard or alert over them reads 0 (not "no data") and a scrape
/// shows every documented metric: the replica-wide ones for each of their
/// label values, the per-workflow ones for each loaded workflow and step.
pub fn zero_series(defs: &Definitions) {
    for why in [LeaseLoss::Renewal, LeaseLoss::Fenced, LeaseLoss::SelfFence] {
        counter!(LEASES_LOST, "reason" => why.as_str()).increment(0);
    }
    for outcome in ["delivered", "failed", "disabled"] {
        counter!(WEBHOOK_DELIVERIES, "outcome" => outcome).increment(0);
    }
    counter!(UNDECODABLE_RUNS).increment(0);
    for via in ["claim", "start"] {
        counter!(RUNS_CLAIMED, "via" => via).increment(0);
    }
    for d in defs.all() {
        let w = d.definition.name.clone();
        counter!(RUNS_STARTED, "workflow" => w.clone()).increment(0);
        counter!(UNKNOWN_HANDLER_RELEASES, "workflow" => w.clone()).increment(0);
        counter!(QUEUE_EXPIRED, "workflow" => w.clone()).increment(0);
        for s in &d.definition.steps {
            let step = s.name.clone();
            for kind in ["forward", "compensate"] {
                counter!(STEP_RETRIES, "workflow" => w.clone(), "step" => step.clone(), "kind" => kind)
                    .increment(0);
            }
            counter!(STEP_INTERRUPTIONS, "workflow" => w.clone(), "step" => step.clone())
                .increment(0);
            if !s.required {
                counter!(STEP_NON_BLOCKING_FAILURES, "workflow" => w.clone(), "step" => step.clone())
                    .increment(0);
            }
            if s.compensation.is_some() {
                for outcome in ["succeeded", "failed"] {
                    counter!(COMPENSATIONS, "workflow" => w.clone(), "step" => step.clone(), "outcome" => outcome)
                        .increment(0);
                }
            }
        }
    }
}

/// A webhook delivery was tried; `outcome` is delivered, failed or
/// disabled.
pub fn webhook_delivery(outcome: &'static str) {
    counter!(WEBHOOK_DELIVERIES, "outcome" => outcome).increment(1);
}

/// A claimed run's row could not be decoded; it was parked.
pub fn undecodable_run() {
    counter!(UNDECODABLE_RUNS).increment(1);
}

/// A run was released for a replica that has the handler it needs.
pub fn unknown_handler(workflow: &str) {
    counter!(UNKNOWN_HANDLER_RELEASES, "workflow" => workflow.to_owned()).increment(1);
}

/// A queued run's time in the queue was up: it ended CANCELLED.
pub fn queue_expired(workflow: &str) {
    counter!(QUEUE_EXPIRED, "workflow" => workflow.to_owned()).increment(1);
    run_finished(workflow, "cancelled");
}

/// A run was created.
pub fn run_started(workflow: &str) {
    counter!(RUNS_STARTED, "workflow" => workflow.to_owned()).increment(1);
}

/// What the outcome of one handler call was.
pub fn attempt_outcome(result: &Result<crate::handler::StepOutput, StepError>) -> &'static str {
    match result {
        Ok(_) => "success",
        Err(e) if e.is_retryable() => "retryable_error",
        Err(_) => "fatal_error",
    }
}

fn kind_label(kind: CallKind) -> &'static str {
    match kind {
        CallKind::Forward => "forward",
        CallKind::Compensate => "compensate",
    }
}

/// The labels of one handler call.
#[derive(Debug, Clone)]
pub struct AttemptLabels {
    pub workflow: String,
    pub step: String,
    pub adapter: String,
    pub kind: CallKind,
}

impl AttemptLabels {
    fn labels(&self) -> [(&'static str, String); 4] {
        [
            ("workflow", self.workflow.clone()),
            ("step", self.step.clone()),
            ("adapter", self.adapter.clone()),
            ("kind", kind_label(self.kind).to_owned()),
        ]
    }

    /// A handler call begins.
    pub fn started(&self) {
        counter!(STEP_ATTEMPTS, &self.labels()).increment(1);
    }

    /// A handler call ended after `elapsed`.
    pub fn finished(
        &self,
        result: &Result<crate::handler::StepOutput, StepError>,
        elapsed: Duration,
    ) {
        let outcome = attempt_outcome(result);
        let mut labels = self.labels().to_vec();
        if let Err(e) = result {
            let error = if e.is_retryable() {
                "retryable"
            } else {
                "fatal"
            };
            let mut l = labels.clone();
            l.push(("error", error.to_owned()));
            counter!(STEP_FAILURES, &l).increment(1);
        }
        labels.push(("outcome", outcome.to_owned()));
        histogram!(STEP_DURATION, &labels).record(elapsed.as_secs_f64());
    }
}

/// Counts what the events of a written transition say: retries,
/// compensations, interruptions and runs coming to rest.
pub fn record_events(workflow: &str, events: &[NewEvent]) {
    for e in events {
        let step = || e.step.clone().unwrap_or_default();
        let w = || workflow.to_owned();
        match e.kind {
            EventKind::StepRetryScheduled => {
                counter!(STEP_RETRIES, "workflow" => w(), "step" => step(), "kind" => "forward")
                    .increment(1)
            }
            EventKind::CompensationRetryScheduled => {
                counter!(STEP_RETRIES, "workflow" => w(), "step" => step(), "kind" => "compensate")
                    .increment(1)
            }
            EventKind::StepFailedNonBlocking => {
                counter!(STEP_NON_BLOCKING_FAILURES, "workflow" => w(), "step" => step())
                    .increment(1)
            }
            EventKind::StepInterrupted => {
                counter!(STEP_INTERRUPTIONS, "workflow" => w(), "step" => step()).increment(1)
            }
            EventKind::StepCompensated => {
                counter!(COMPENSATIONS, "workflow" => w(), "step" => step(), "outcome" => "succeeded")
                    .increment(1)
            }
            EventKind::RunCompensationFailed => {
                counter!(COMPENSATIONS, "workflow" => w(), "step" => step(), "outcome" => "failed")
                    .increment(1);
                run_finished(workflow, "compensation_failed");
            }
            EventKind::RunCompleted => run_finished(workflow, "completed"),
            EventKind::RunFailed => run_finished(workflow, "failed"),
            EventKind::RunCompensated => run_finished(workflow, "compensated"),
            EventKind::RunCancelled => run_finished(workflow, "cancelled"),
            EventKind::RunTerminated => run_finished(workflow, "terminated"),
            _ => {}
        }
    }
}

fn run_finished(workflow: &str, state: &'static str) {
    counter!(RUNS_FINISHED, "workflow" => workflow.to_owned(), "state" => state).increment(1);
}

/// A claim statement took `elapsed` and leased `claimed` runs.
pub fn claimed(elapsed: Duration, claimed: usize) {
    histogram!(CLAIM_DURATION).record(elapsed.as_secs_f64());
    counter!(RUNS_CLAIMED, "via" => "claim").increment(claimed as u64);
}

/// A run a start inserted leased to this replica's executor was handed to
/// it (an eager start: no claim).
pub fn handed_over() {
    counter!(RUNS_CLAIMED, "via" => "start").increment(1);
}

/// Why a lease was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseLoss {
    /// Renewal found another owner (the lease had expired).
    Renewal,
    /// A checkpoint was refused: the lease had passed to another replica.
    Fenced,
    /// The lease could not be confirmed before its local deadline: the
    /// replica stopped its attempts on its own.
    SelfFence,
}

impl LeaseLoss {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseLoss::Renewal => "renewal",
            LeaseLoss::Fenced => "fenced",
            LeaseLoss::SelfFence => "self_fence",
        }
    }
}

pub fn lease_lost(why: LeaseLoss) {
    counter!(LEASES_LOST, "reason" => why.as_str()).increment(1);
}

/// The trace context of a run: the caller's `traceparent` when it sent one.
/// A run started without one (by the scheduler, or by a caller that does
/// not trace) gets a trace of its own, derived from its id, so every span
/// of the run — on any replica, at any time — still lands in one trace.
pub fn run_traceparent(run: RunId, traceparent: Option<&str>) -> String {
    match traceparent {
        Some(tp) if parse_traceparent(tp).is_some() => tp.to_owned(),
        _ => {
            let hex = run.0.simple().to_string();
            // The span id: the id's last 16 hex digits (random in a v7 id).
            format!("00-{hex}-{}-01", &hex[16..])
        }
    }
}

/// The trace id of a `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`) if it is
/// well formed.
pub fn parse_traceparent(tp: &str) -> Option<&str> {
    let mut parts = tp.split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    (hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && nonzero(trace)
        && hex(span, 16)
        && nonzero(span)
        && hex(flags, 2))
    .then_some(trace)
}

/// The OpenTelemetry context a W3C `traceparent` names.
pub fn context_from_traceparent(traceparent: &str) -> opentelemetry::Context {
    let carrier =
        std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    TraceContextPropagator::new().extract(&carrier)
}

/// Makes `span` a child of the trace `traceparent` names. A no-op when no
/// OpenTelemetry layer is installed; call before the span is first entered.
pub fn join_trace(span: &tracing::Span, traceparent: &str) {
    let _ = span.set_parent(context_from_traceparent(traceparent));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_checked_and_runs_without_one_get_their_own() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            parse_traceparent(tp),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473x-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
        let id = RunId::new();
        assert_eq!(run_traceparent(id, Some(tp)), tp);
        let own = run_traceparent(id, Some("garbage"));
        assert_eq!(
            parse_traceparent(&own),
            Some(id.0.simple().to_string().as_str())
        );
        assert_eq!(own, run_traceparent(id, None), "stable across replicas");
    }
}
