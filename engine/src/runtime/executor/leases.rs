//! The leases an executor holds: the table of runs it drives (one lease
//! per run, the newest claim's), their renewal, and stopping a run's work
//! when its lease is lost or cannot be confirmed in time.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::Exec;
use super::attempt::LocalDeadline;
use crate::ids::{LeaseToken, RunId};
use crate::telemetry;

/// A lease held on a run, and how to stop the run's work.
pub(super) struct Lease {
    pub(super) token: LeaseToken,
    pub(super) cancel: CancellationToken,
    pub(super) deadline: Arc<LocalDeadline>,
}

/// Forgets the lease `token` on `run`, unless the run was claimed again
/// meanwhile (then the newer lease stays).
pub(super) fn forget_lease(exec: &Exec, run: RunId, token: LeaseToken) {
    let mut leases = lock(&exec.leases);
    if leases.get(&run).is_some_and(|l| l.token == token) {
        leases.remove(&run);
    }
}

pub(super) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Renews every lease held, a third of a lease apart (sooner after a
/// failure); a lease the store no longer has stops its run's work.
pub(super) async fn renew_loop(exec: Arc<Exec>, stop: CancellationToken) {
    let every = exec.opts.lease / 3;
    // After a failed renewal, try again soon: the local deadlines are
    // running out.
    let retry = (exec.opts.lease / 10).max(Duration::from_millis(10));
    let mut wait = every;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = every;
        let held: Vec<(RunId, LeaseToken)> = lock(&exec.leases)
            .iter()
            .map(|(id, l)| (*id, l.token))
            .collect();
        if held.is_empty() {
            continue;
        }
        let sent = tokio::time::Instant::now();
        let renewed = tokio::time::timeout(
            every,
            exec.shared.store.renew_leases(&held, exec.opts.lease),
        )
        .await;
        match renewed {
            Ok(Ok(lost)) => {
                let leases = lock(&exec.leases);
                for (id, token) in &held {
                    // The run may have been claimed again meanwhile: this
                    // answer is about the lease renewed, not the newer one.
                    let Some(l) = leases.get(id).filter(|l| l.token == *token) else {
                        continue;
                    };
                    if lost.contains(id) {
                        warn!(run_id = %id, "lease lost; abandoning the run");
                        telemetry::lease_lost(telemetry::LeaseLoss::Renewal);
                        l.cancel.cancel();
                    } else {
                        l.deadline.confirm(sent, exec.valid_for());
                    }
                }
            }
            Ok(Err(e)) => {
                warn!(error = %e, "renewing leases failed");
                wait = retry;
            }
            Err(_) => {
                warn!("renewing leases timed out");
                wait = retry;
            }
        }
    }
}

/// The lease could not be confirmed in time: stop the run's work here
/// before another replica may take it over.
pub(super) fn self_fence(run: RunId, lease_lost: &CancellationToken) {
    if !lease_lost.is_cancelled() {
        warn!(run_id = %run, "lease not confirmed in time; stopping the run's attempts");
        telemetry::lease_lost(telemetry::LeaseLoss::SelfFence);
        lease_lost.cancel();
    }
}
