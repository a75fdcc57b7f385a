//! The scheduler: each replica runs one. On every poll (and on
//! [`SchedulerHandle::tick_now`]) it reads the due schedules, plans each
//! ([`super::plan`]) at the engine clock's "now", and writes the plan in one
//! transaction conditional on the schedule's revision, claiming each fire
//! under the unique `(schedule_id, scheduled_time)` together with its run.
//! Replicas race freely: the loser of a race writes nothing and finds the
//! schedule advanced on its next look. No leader election, no lock held
//! between polls.

use std::time::Duration;

use metrics::{counter, histogram};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::plan::plan;
use super::{CronSpec, FireOutcome, Schedule, fire_key};
use crate::Engine;
use crate::error::Result;
use crate::runtime::engine::StartRequest;
use crate::store::{FireBatch, FireBatchAck, FireWrite};

/// How a scheduler behaves. Defaults suit a production replica.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// How often to look for due schedules (real time).
    pub poll_interval: Duration,
    /// A fire found later than this after its time fell due while no
    /// scheduler ran: the schedule's catch-up policy decides about it.
    pub catchup_grace: Duration,
    /// Due schedules read per query.
    pub batch: u32,
    /// Fires of one schedule handled per transaction (a long backlog is
    /// worked through in several).
    pub max_fires_per_write: usize,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            catchup_grace: Duration::from_secs(60),
            batch: 100,
            max_fires_per_write: 1000,
        }
    }
}

/// What one pass did (this replica's share).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    pub started: u64,
    pub skipped: u64,
    pub missed: u64,
    pub buffered: u64,
    /// Plans not written because another replica (or an API call) changed
    /// the schedule first.
    pub conflicts: u64,
    pub errors: u64,
}

impl TickReport {
    fn add(&mut self, o: FireOutcome) {
        match o {
            FireOutcome::Started => self.started += 1,
            FireOutcome::Skipped => self.skipped += 1,
            FireOutcome::Missed => self.missed += 1,
            FireOutcome::Buffered => self.buffered += 1,
        }
    }
}

/// A running scheduler. Dropping it does not stop it; call
/// [`shutdown`](Self::shutdown).
#[derive(Debug)]
pub struct SchedulerHandle {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    ticks: mpsc::Sender<oneshot::Sender<TickReport>>,
    running: Running,
}

/// Whether a scheduler's loop is alive (for readiness checks). Cheap to
/// clone; turns false for good when the loop ends for any reason.
#[derive(Debug, Clone, Default)]
pub struct Running(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Running {
    pub fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Clears the flag however the loop ends (stop, abort or panic).
struct RunningGuard(Running);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        (self.0).0.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl SchedulerHandle {
    /// Runs a pass now (after the one in progress, if any) and returns what
    /// it did; none once the scheduler has stopped. Tests drive time with a
    /// manual clock and call this instead of waiting for the poll.
    pub async fn tick_now(&self) -> Option<TickReport> {
        let (tx, rx) = oneshot::channel();
        self.ticks.send(tx).await.ok()?;
        rx.await.ok()
    }

    /// A flag that says whether this scheduler is still running.
    pub fn running(&self) -> Running {
        self.running.clone()
    }

    /// Stops after the pass in progress.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }

    /// Stops at once, like a crash: a transaction in flight is rolled back.
    pub fn abort(self) {
        self.task.abort();
    }
}

/// Rounds of reading due schedules per pass while work remains.
const MAX_ROUNDS: usize = 64;

struct Service {
    engine: Engine,
    opts: SchedulerOptions,
    grace: chrono::Duration,
}

pub(crate) fn spawn(engine: Engine, opts: SchedulerOptions) -> SchedulerHandle {
    let stop = CancellationToken::new();
    let (ticks, rx) = mpsc::channel(16);
    let svc = Service {
        grace: chrono::Duration::from_std(opts.catchup_grace).unwrap_or(chrono::Duration::MAX),
        engine,
        opts,
    };
    let loop_stop = stop.clone();
    let running = Running::default();
    running.0.store(true, std::sync::atomic::Ordering::SeqCst);
    let guard = RunningGuard(running.clone());
    let task = tokio::spawn(async move {
        let _guard = guard;
        run(svc, loop_stop, rx).await
    });
    SchedulerHandle {
        stop,
        task,
        ticks,
        running,
    }
}

async fn run(
    svc: Service,
    stop: CancellationToken,
    mut ticks: mpsc::Receiver<oneshot::Sender<TickReport>>,
) {
    let mut poll = tokio::time::interval(svc.opts.poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            Some(reply) = ticks.recv() => {
                let report = svc.pass().await;
                let _ = reply.send(report);
            }
            _ = poll.tick() => {
                svc.pass().await;
            }
        }
    }
}

impl Service {
    /// Handles every due schedule, looping while a backlog remains.
    async fn pass(&self) -> TickReport {
        let mut report = TickReport::default();
        for _ in 0..MAX_ROUNDS {
            let now = self.engine.clock().now();
            let due = match self
                .engine
                .store()
                .due_schedules(now, self.opts.batch)
                .await
            {
                Ok(d) => d,
                Err(e) => {
                    warn!(error = %e, "reading due schedules failed; retrying at the next poll");
                    report.errors += 1;
                    break;
                }
            };
            let full = due.len() >= self.opts.batch as usize;
            let mut wrote = false;
            let mut more = false;
            for s in &due {
                match self.fire(s, now, &mut report).await {
                    Ok(Some(m)) => {
                        wrote = true;
                        more |= m;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        warn!(schedule = %s.name, tenant = %s.tenant_id, error = %e, "firing a schedule failed");
                        report.errors += 1;
                    }
                }
            }
            if !(wrote && (full || more)) {
                break;
            }
        }
        report
    }

    /// Plans and writes one schedule. Some(more) when written (more: a
    /// backlog remains), none when there was nothing to do or another
    /// replica was first.
    async fn fire(
        &self,
        s: &Schedule,
        now: chrono::DateTime<chrono::Utc>,
        report: &mut TickReport,
    ) -> Result<Option<bool>> {
        if self
            .engine
            .definitions()
            .resolve(&s.workflow_name, 0)
            .is_none()
        {
            // A replica that knows the workflow fires it.
            debug!(schedule = %s.name, workflow = %s.workflow_name, "workflow not loaded here; leaving the schedule to other replicas");
            return Ok(None);
        }
        let spec = CronSpec::parse(&s.cron, &s.timezone)?;
        let p = plan(s, &spec, now, self.grace, self.opts.max_fires_per_write);
        if p.is_noop(s) {
            return Ok(None);
        }
        let fires = p
            .fires
            .into_iter()
            .map(|f| {
                let mut w = FireWrite {
                    scheduled_time: f.at,
                    outcome: f.outcome,
                    detail: f.detail,
                    run: None,
                    from_buffer: f.from_buffer,
                    manual: false,
                };
                if f.outcome == FireOutcome::Started {
                    match self.engine.prepare_run(StartRequest {
                        idempotency_key: Some(fire_key(s.id, f.at)),
                        schedule_id: Some(s.id),
                        actor: "scheduler".into(),
                        ..StartRequest::new(s.tenant_id.as_str(), &s.workflow_name, s.input.clone())
                    }) {
                        Ok(run) => w.run = Some(run),
                        Err(e) => {
                            w.outcome = FireOutcome::Skipped;
                            w.detail = Some(format!("the run could not start: {e}"));
                        }
                    }
                }
                w
            })
            .collect();
        let batch = FireBatch {
            tenant_id: s.tenant_id.clone(),
            schedule_id: s.id,
            expected_revision: s.revision,
            now,
            next_fire_at: p.next_fire_at,
            buffered_fire_at: p.buffered_fire_at,
            fires,
        };
        match self.engine.store().apply_fires(&batch).await? {
            FireBatchAck::Applied(applied) => {
                let mut started = false;
                for a in &applied {
                    report.add(a.outcome);
                    counter!("sagaflow_schedule_fires_total", "outcome" => a.outcome.as_str())
                        .increment(1);
                    let late = (now - a.scheduled_time)
                        .num_microseconds()
                        .unwrap_or(i64::MAX);
                    let detail = batch
                        .fires
                        .iter()
                        .find(|f| f.scheduled_time == a.scheduled_time)
                        .and_then(|f| f.detail.as_deref())
                        .unwrap_or("");
                    match a.outcome {
                        FireOutcome::Started => {
                            started = true;
                            crate::telemetry::run_started(&s.workflow_name);
                            histogram!("sagaflow_schedule_fire_lateness_seconds")
                                .record(late as f64 / 1e6);
                            info!(schedule = %s.name, tenant = %s.tenant_id, scheduled_time = %a.scheduled_time,
                                run_id = %a.run_id.map(|r| r.to_string()).unwrap_or_default(),
                                lateness_ms = late / 1000, "schedule fired");
                        }
                        other => {
                            info!(schedule = %s.name, tenant = %s.tenant_id, scheduled_time = %a.scheduled_time,
                                outcome = other.as_str(), detail, "schedule fire not run");
                        }
                    }
                }
                if started {
                    self.engine.wake();
                }
                Ok(Some(p.more))
            }
            FireBatchAck::Conflict | FireBatchAck::KeyHeld { .. } => {
                report.conflicts += 1;
                debug!(schedule = %s.name, "another replica fired the schedule first");
                Ok(None)
            }
        }
    }
}
