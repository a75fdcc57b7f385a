//! The executor: claims runnable runs under a lease, drives each through its
//! steps, and records every outcome in one short write fenced by the lease.
//!
//! - Wakes on new work (in-process, and Postgres `LISTEN/NOTIFY` across
//!   replicas) with polling as the fallback.
//! - Renews the leases of the runs it holds; a run whose lease is lost is
//!   dropped at once (its handler is told through the cancellation signal).
//! - Never holds a transaction open while a handler runs.
//! - On shutdown stops claiming, lets attempts in flight finish up to a
//!   deadline, and gives the leases back.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use super::batcher::{Batcher, Checkpoints};
use super::shared::Shared;
use crate::handler::CallKind;
use crate::ids::{LeaseToken, RunId};
use crate::run::{self as saga, Next, Outcome};
use crate::store::{Checkpoint, CheckpointAck, RunRecord};
use crate::telemetry;

mod attempt;
mod intake;
mod leases;
mod signals;

pub(crate) use intake::{Intake, Slot};

use attempt::LocalDeadline;
use leases::{Lease, forget_lease, lock, renew_loop, self_fence};

/// How an executor behaves. Defaults suit a production replica.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// Names this replica in leases (`lease_owner`).
    pub owner: String,
    /// Runs driven at once.
    pub max_in_flight: usize,
    /// Runs claimed per claim statement.
    pub claim_batch: u32,
    /// How long a lease lasts without renewal.
    pub lease: Duration,
    /// How often to look for due work when nothing wakes the executor.
    pub poll_interval: Duration,
    /// How long shutdown waits for attempts in flight.
    pub shutdown_grace: Duration,
    /// Most checkpoints written in one transaction (group commit).
    pub checkpoint_batch: usize,
    /// Checkpoint batches written at once.
    pub checkpoint_writers: usize,
    /// How long a run whose next attempt needs a handler this engine does
    /// not have is left for other replicas before this one looks again.
    pub unknown_handler_delay: Duration,
}

impl Default for ExecutorOptions {
    fn default() -> Self {
        Self {
            owner: format!(
                "{}-{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "sagaflow".into()),
                std::process::id()
            ),
            max_in_flight: 256,
            claim_batch: 64,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(25),
            checkpoint_batch: 128,
            checkpoint_writers: 4,
            unknown_handler_delay: Duration::from_secs(5),
        }
    }
}

/// A running executor. Dropping it does not stop it; call [`shutdown`](Self::shutdown).
#[derive(Debug)]
pub struct ExecutorHandle {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    intake: Arc<Intake>,
}

impl ExecutorHandle {
    /// Stops claiming, drains attempts in flight (up to the grace period)
    /// and releases every lease still held.
    pub async fn shutdown(self) {
        self.intake.close();
        self.stop.cancel();
        let _ = self.task.await;
    }

    /// Stops at once without draining or releasing anything, like a crash:
    /// the leases expire and other replicas take the runs over.
    pub fn abort(self) {
        self.intake.close();
        self.task.abort();
        // The lease renewal and the listener run beside the executor's
        // task: stop them too, or the leases would never run out.
        self.stop.cancel();
    }
}

struct Exec {
    shared: Arc<Shared>,
    batcher: Batcher<Checkpoints>,
    opts: ExecutorOptions,
    leases: std::sync::Mutex<HashMap<RunId, Lease>>,
    /// No new attempt starts once set.
    draining: AtomicBool,
    /// The last claim filled its batch: there may be more due work.
    maybe_more: AtomicBool,
    wake: Arc<Notify>,
    /// One per run driven at once.
    permits: Arc<Semaphore>,
}

pub(crate) fn spawn(shared: Arc<Shared>, opts: ExecutorOptions) -> ExecutorHandle {
    let stop = CancellationToken::new();
    let permits = Arc::new(Semaphore::new(opts.max_in_flight));
    let (intake, handed) = Intake::new(
        permits.clone(),
        opts.max_in_flight,
        opts.owner.clone(),
        opts.lease,
    );
    shared.add_intake(intake.clone());
    let exec = Arc::new(Exec {
        batcher: Batcher::spawn(
            Checkpoints(shared.store.clone()),
            opts.checkpoint_batch,
            opts.checkpoint_writers,
        ),
        wake: shared.wake.clone(),
        shared,
        opts,
        leases: Default::default(),
        draining: AtomicBool::new(false),
        maybe_more: AtomicBool::new(true),
        permits,
    });
    let task = tokio::spawn(run(exec, stop.clone(), intake.clone(), handed));
    ExecutorHandle { stop, task, intake }
}

async fn run(
    exec: Arc<Exec>,
    stop: CancellationToken,
    intake: Arc<Intake>,
    mut handed: tokio::sync::mpsc::UnboundedReceiver<intake::Handed>,
) {
    let permits = exec.permits.clone();
    let mut tasks = JoinSet::new();
    let listen_stop = stop.child_token();
    let listener = {
        let store = exec.shared.store.clone();
        let wake = exec.wake.clone();
        let s = listen_stop.clone();
        tokio::spawn(async move { store.listen_for_work(wake, s).await })
    };
    let renewer = tokio::spawn(renew_loop(exec.clone(), stop.clone()));
    let refill_at = (exec.opts.claim_batch as usize)
        .min(exec.opts.max_in_flight)
        .div_ceil(2)
        .max(1);
    let mut poll = tokio::time::interval(exec.opts.poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut polled = false;
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = exec.wake.notified() => {}
            Some(h) = handed.recv() => {
                // A run a start inserted leased to this executor.
                telemetry::handed_over();
                let deadline = LocalDeadline::new(h.sent, exec.valid_for());
                adopt(&exec, &mut tasks, h.run, h.token, deadline, h.permit, None);
                continue;
            }
            _ = poll.tick() => polled = true,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {
                // More due work: claim it in batches, not one run per
                // finished one.
                if !exec.maybe_more.load(Ordering::Relaxed)
                    || permits.available_permits() < refill_at
                {
                    continue;
                }
            }
        }
        while tasks.try_join_next().is_some() {}
        if polled {
            expire_queued(&exec).await;
            if let Err(e) = exec
                .shared
                .store
                .promote_queued(exec.shared.clock.now())
                .await
            {
                warn!(error = %e, "promoting queued runs failed");
            }
        }
        // Claim as long as there is room and due work.
        loop {
            let free = permits.available_permits();
            if free == 0 {
                break;
            }
            let want = (free as u32).min(exec.opts.claim_batch);
            let now = exec.shared.clock.now();
            let token = LeaseToken::new();
            let started = std::time::Instant::now();
            let sent = tokio::time::Instant::now();
            let claimed = match exec
                .shared
                .store
                .claim(&exec.opts.owner, token, now, exec.opts.lease, want)
                .await
            {
                Ok(c) => {
                    telemetry::claimed(started.elapsed(), c.len());
                    c
                }
                Err(e) => {
                    warn!(error = %e, "claiming runs failed; retrying at the next poll");
                    break;
                }
            };
            let got = claimed.len() as u32;
            exec.maybe_more.store(got == want, Ordering::Relaxed);
            let mut batch_signals = signals::for_batch(&exec, &claimed).await;
            for r in claimed {
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    break;
                };
                let deadline = LocalDeadline::new(sent, exec.valid_for());
                let read = batch_signals.remove(&r.id);
                adopt(&exec, &mut tasks, r, token, deadline, permit, read);
            }
            if got < want {
                break;
            }
        }
    }
    // Shutdown: no new attempts; let those in flight finish. Runs handed
    // over but not yet taken up are given back with the leases below.
    exec.draining.store(true, Ordering::SeqCst);
    intake.close();
    handed.close();
    let mut not_taken_up = Vec::new();
    while let Ok(h) = handed.try_recv() {
        not_taken_up.push((h.run.id, h.token));
    }
    listen_stop.cancel();
    let drained = tokio::time::timeout(exec.opts.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!("shutdown grace period over; abandoning attempts still in flight");
        for l in lock(&exec.leases).values() {
            l.cancel.cancel();
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    renewer.abort();
    listener.abort();
    let held: Vec<(RunId, LeaseToken)> = lock(&exec.leases)
        .drain()
        .map(|(id, l)| (id, l.token))
        .chain(not_taken_up)
        .collect();
    if let Err(e) = exec
        .shared
        .store
        .release_leases(&held, exec.shared.clock.now())
        .await
    {
        warn!(error = %e, "releasing leases at shutdown failed; they will expire");
    }
}

/// Drives a run leased to this executor (claimed, or handed over by a
/// start) in a task of its own, holding `permit` until it stops.
fn adopt(
    exec: &Arc<Exec>,
    tasks: &mut JoinSet<()>,
    r: RunRecord,
    token: LeaseToken,
    deadline: Arc<LocalDeadline>,
    permit: tokio::sync::OwnedSemaphorePermit,
    read: Option<Vec<crate::store::Signal>>,
) {
    let cancel = CancellationToken::new();
    let stale = lock(&exec.leases).insert(
        r.id,
        Lease {
            token,
            cancel: cancel.clone(),
            deadline: deadline.clone(),
        },
    );
    if let Some(stale) = stale {
        // The run was claimed again: the lease an attempt here still held
        // ran out unconfirmed. Stop that attempt.
        self_fence(r.id, &stale.cancel);
    }
    let e = exec.clone();
    let span =
        info_span!("run", run_id = %r.id, workflow = %r.workflow_name, tenant = %r.tenant_id);
    telemetry::join_trace(
        &span,
        &telemetry::run_traceparent(r.id, r.traceparent.as_deref()),
    );
    tasks.spawn(
        async move {
            let id = r.id;
            drive(&e, r, token, cancel, deadline, read).await;
            forget_lease(&e, id, token);
            drop(permit);
        }
        .instrument(span),
    );
}

impl Exec {
    /// How long after a statement that confirmed a lease was sent the
    /// executor may still act under it: the lease minus a safety margin
    /// (a fifth of it) for clock rate drift, scheduling and the abort grace.
    fn valid_for(&self) -> Duration {
        self.opts.lease - self.opts.lease / 5
    }
}

/// Ends the queued runs whose time in the queue is up (before keys are
/// handed over, so an expired run is never started).
async fn expire_queued(exec: &Exec) {
    match exec
        .shared
        .store
        .expire_queued(
            exec.shared.clock.now(),
            EXPIRE_BATCH,
            &exec.shared.webhooks(),
        )
        .await
    {
        Ok(expired) => {
            for e in expired {
                debug!(run_id = %e.run_id, tenant = %e.tenant_id, "queued run expired");
                telemetry::queue_expired(&e.workflow_name);
                let _ = exec.shared.changes.send(e.run_id);
            }
        }
        Err(e) => warn!(error = %e, "expiring queued runs failed"),
    }
}

/// Queued runs expired per poll at most (the rest at the next poll).
const EXPIRE_BATCH: u32 = 500;

/// Drives one claimed run until it stops, waits, or the lease is lost.
/// `read_with_batch`: its signals, read with its claimed batch.
async fn drive(
    exec: &Exec,
    mut run: RunRecord,
    token: LeaseToken,
    lease_lost: CancellationToken,
    deadline: Arc<LocalDeadline>,
    mut read_with_batch: Option<Vec<crate::store::Signal>>,
) {
    let def = match exec.shared.definition(&run.definition_id).await {
        Ok(d) => d,
        Err(e) => {
            warn!(error = %e, definition = %run.definition_id, "cannot load the run's definition; leaving it for later");
            return;
        }
    };
    let mut outcome: Option<Outcome> = None;
    let mut carried: Vec<crate::store::NewEvent> = Vec::new();
    loop {
        // The batch's read serves the first advance only.
        let Some(signals) = signals::for_run(exec, &run, &def, read_with_batch.take()).await else {
            return;
        };
        let now = exec.shared.clock.now();
        let may_start = !exec.draining.load(Ordering::SeqCst);
        let known = |h: &str| exec.shared.registry.contains(h);
        let mut adv = match saga::advance_with_signals(
            &mut run,
            &def,
            outcome.take(),
            now,
            may_start,
            &known,
            &signals,
            &mut || fastrand::f64(),
        ) {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "run is in a state the executor cannot continue from");
                return;
            }
        };
        let left_for_others = adv
            .unknown_handler
            .take()
            .map(|h| release_for_unknown_handler(exec, &run, &h, now));
        if let Some(at) = left_for_others {
            adv.next = Next::Wait(at);
        }
        let (next_run_at, keep_lease) = match adv.next {
            Next::Execute { .. } => (None, Some(exec.opts.lease)),
            Next::Wait(at) => (Some(at), None),
            Next::Stop => (None, None),
        };
        let events: Vec<_> = carried.drain(..).chain(adv.events).collect();
        let deliveries =
            exec.shared
                .webhooks()
                .deliveries(&run.tenant_id, run.id, &run.workflow_name, &events);
        let cp = Checkpoint {
            run_id: run.id,
            lease: token,
            id: uuid::Uuid::now_v7(),
            expected_seq: run.last_seq,
            now,
            state: run.state,
            cursor: run.cursor,
            context: adv.context_changed.then(|| run.context.clone()),
            steps: run.steps.clone(),
            error: run.error.clone(),
            events,
            next_run_at,
            keep_lease,
            finished_at: run.finished_at,
            release_concurrency_key: adv.finished && run.concurrency_key.is_some(),
            take_signal: adv.consumed_signal.take(),
            deliveries,
        };
        let sent = tokio::time::Instant::now();
        let Some(ack) = write_checkpoint(exec, &cp, &lease_lost, &deadline).await else {
            return;
        };
        if keep_lease.is_some() && matches!(ack, CheckpointAck::Applied { .. }) {
            deadline.confirm(sent, exec.valid_for());
        }
        run.last_seq += cp.events.len() as u64;
        if matches!(ack, CheckpointAck::Applied { .. }) {
            let _ = exec.shared.changes.send(run.id);
            telemetry::record_events(&run.workflow_name, &cp.events);
        }
        if matches!(ack, CheckpointAck::Applied { .. })
            && let Some(name) = &adv.waiting_for
        {
            signals::recheck(exec, run.id, name).await;
        }
        match ack {
            CheckpointAck::Fenced => {
                telemetry::lease_lost(telemetry::LeaseLoss::Fenced);
                debug!("lease lost before the checkpoint; another replica has the run");
                return;
            }
            CheckpointAck::Applied { cancel_request } => {
                let newly = cancel_request.is_some() && run.cancel_request.is_none();
                run.cancel_request = run.cancel_request.or(cancel_request);
                if newly && run.state.carries_out_cancel() {
                    // An operator cancelled the run meanwhile.
                    if let Next::Execute {
                        step,
                        kind: CallKind::Forward,
                        ..
                    } = adv.next
                    {
                        // The attempt just recorded as started has not called
                        // anything yet: withdraw it and carry the cancel out
                        // under the lease we still hold.
                        match saga::withdraw_attempt(&mut run, &def, step, exec.shared.clock.now())
                        {
                            Ok(ev) => carried.push(ev),
                            Err(e) => warn!(error = %e, "cannot withdraw the attempt"),
                        }
                        continue;
                    }
                    if keep_lease.is_none() {
                        // The checkpoint released the run and, seeing the
                        // request, made it due at once: claim it again.
                        exec.wake.notify_one();
                        return;
                    }
                }
            }
        }
        match adv.next {
            Next::Execute {
                step,
                kind,
                attempt,
            } => {
                if deadline.passed() {
                    self_fence(run.id, &lease_lost);
                    return;
                }
                let result = attempt::call(
                    exec,
                    &run,
                    &def,
                    step,
                    kind,
                    attempt,
                    &lease_lost,
                    &deadline,
                )
                .await;
                if deadline.passed() {
                    self_fence(run.id, &lease_lost);
                }
                if lease_lost.is_cancelled() {
                    return;
                }
                outcome = Some(Outcome { step, kind, result });
            }
            Next::Wait(at) => {
                // A run left for a replica that has its handler is found
                // again by polling, not by a wake-up that would always be
                // first to claim it.
                // A waiting step is found by polling unless it wakes soon:
                // it holds no timer task.
                let soon = super::shared::delay_until(at, exec.shared.clock.now())
                    <= exec.opts.poll_interval;
                if left_for_others.is_none() && (!adv.waiting || soon) {
                    exec.shared.wake_at(at);
                }
                return;
            }
            Next::Stop => return,
        }
    }
}

/// The run's next attempt needs `handler`, which this engine does not have
/// (a rolling deploy where this replica is older): nothing is called and no
/// attempt counted; the run is released until the returned time, for a
/// replica that has the handler (or this one, once upgraded).
fn release_for_unknown_handler(
    exec: &Exec,
    run: &RunRecord,
    handler: &str,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    warn!(run_id = %run.id, workflow = %run.workflow_name, handler,
        "handler not registered in this engine; leaving the run to a replica that has it");
    telemetry::unknown_handler(&run.workflow_name);
    now + chrono::Duration::from_std(exec.opts.unknown_handler_delay).unwrap_or_default()
}

/// Writes a checkpoint, retrying while the store is unreachable and the
/// lease still holds. None: give the run up (the lease will expire).
async fn write_checkpoint(
    exec: &Exec,
    cp: &Checkpoint,
    lease_lost: &CancellationToken,
    lease_deadline: &LocalDeadline,
) -> Option<CheckpointAck> {
    let mut delay = Duration::from_millis(50);
    let deadline = tokio::time::Instant::now() + exec.opts.lease;
    loop {
        let written = tokio::select! {
            w = exec.batcher.write(cp.clone()) => w,
            _ = lease_lost.cancelled() => return None,
            _ = lease_deadline.expired() => {
                self_fence(cp.run_id, lease_lost);
                return None;
            }
        };
        match written {
            Ok(ack) => return Some(ack),
            Err(e) => {
                warn!(error = %e, "checkpoint failed; retrying");
                if tokio::time::Instant::now() + delay > deadline || lease_lost.is_cancelled() {
                    return None;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}
