//! Eager starts: a start in this process that finds one of its executors
//! with room reserves a slot there, inserts the run already leased to that
//! executor and hands it over, so the run's first step needs no claim (one
//! commit less, and no wake-up of the claiming loop).
//!
//! - A start takes a slot only while more than half of the executor's
//!   slots are free: the rest stay for due work found by claims (retries,
//!   timers, runs started elsewhere), which eager starts never crowd out.
//! - The run's lease runs out on the database's clock like a claimed one;
//!   the local deadline counts from before the insert was sent.
//! - A run handed over while the executor stops is given back (its lease
//!   released) by whichever side sees the stop, so it is not left leased
//!   to nobody until its lease runs out. (A start whose insert committed
//!   but whose answer was lost does leave it so: like a replica that died
//!   after a claim, the run waits for its lease to run out.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::ids::LeaseToken;
use crate::store::{RunRecord, StartLease};

/// A run handed to an executor with the lease its insert took.
pub(super) struct Handed {
    pub(super) run: RunRecord,
    pub(super) token: LeaseToken,
    /// Sent before the insert that took the lease.
    pub(super) sent: tokio::time::Instant,
    pub(super) permit: OwnedSemaphorePermit,
}

/// Where starts hand runs to one executor.
#[derive(Debug)]
pub(crate) struct Intake {
    permits: Arc<Semaphore>,
    max_in_flight: usize,
    owner: String,
    lease: Duration,
    tx: mpsc::UnboundedSender<Handed>,
    /// False once the executor stops: no more slots are given out.
    open: AtomicBool,
}

impl Intake {
    pub(super) fn new(
        permits: Arc<Semaphore>,
        max_in_flight: usize,
        owner: String,
        lease: Duration,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Handed>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let intake = Arc::new(Self {
            permits,
            max_in_flight,
            owner,
            lease,
            tx,
            open: AtomicBool::new(true),
        });
        (intake, rx)
    }

    /// A slot for a run about to be inserted, if the executor is running
    /// and more than half of its slots are free.
    pub(crate) fn reserve(self: &Arc<Self>) -> Option<Slot> {
        if !self.open.load(Ordering::SeqCst)
            || self.permits.available_permits() * 2 <= self.max_in_flight
        {
            return None;
        }
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        Some(Slot {
            intake: self.clone(),
            permit,
            lease: StartLease {
                owner: self.owner.clone(),
                token: LeaseToken::new(),
                lease: self.lease,
            },
            sent: tokio::time::Instant::now(),
        })
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }

    /// No more slots: the executor is stopping.
    pub(super) fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
    }
}

/// A slot reserved in an executor for one run; dropped unused, it frees
/// the slot.
pub(crate) struct Slot {
    intake: Arc<Intake>,
    permit: OwnedSemaphorePermit,
    lease: StartLease,
    sent: tokio::time::Instant,
}

impl Slot {
    /// The lease the run's insert takes.
    pub(crate) fn lease(&self) -> &StartLease {
        &self.lease
    }

    /// Hands the inserted run (leased with [`Self::lease`]) to the
    /// executor. Err: the executor has stopped; the caller gives the lease
    /// back.
    pub(crate) fn hand(self, run: RunRecord) -> Result<(), LeaseToken> {
        let token = self.lease.token;
        self.intake
            .tx
            .send(Handed {
                run,
                token,
                sent: self.sent,
                permit: self.permit,
            })
            .map_err(|_| token)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly on purpose

    use super::*;

    fn intake(slots: usize) -> (Arc<Intake>, mpsc::UnboundedReceiver<Handed>) {
        Intake::new(
            Arc::new(Semaphore::new(slots)),
            slots,
            "here".into(),
            Duration::from_secs(30),
        )
    }

    #[test]
    fn a_start_takes_a_slot_only_while_more_than_half_are_free() {
        let (intake, _rx) = intake(4);
        let a = intake.reserve().unwrap();
        let b = intake.reserve().unwrap();
        // Two of four taken: the rest is kept for claimed work.
        assert!(intake.reserve().is_none());
        assert_eq!(intake.permits.available_permits(), 2);
        drop(a);
        let c = intake.reserve().unwrap();
        assert_eq!(c.lease().owner, "here");
        assert_ne!(b.lease().token, c.lease().token);
    }

    #[test]
    fn a_stopped_executor_gives_no_slot() {
        let (intake, _rx) = intake(4);
        intake.close();
        assert!(intake.reserve().is_none());
        assert_eq!(intake.permits.available_permits(), 4);
    }
}
