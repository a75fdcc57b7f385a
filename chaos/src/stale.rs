//! The proof that a paused replica's late work was refused, read from where
//! it would land: the runs' histories and the ledger handlers' call log in
//! the database, not the paused replica's own counters.
//!
//! When replica A is stopped, [`in_flight`] notes every attempt it was
//! running (run, step, attempt number, forward or compensation) from the
//! stored runs. Another replica can only take such a run over after A's
//! lease expired, and then records A's attempt as interrupted before it
//! goes on. So, once every run has ended:
//! - a result event (succeeded, failed, retry scheduled, compensated, …)
//!   of one of A's attempts after its `step_interrupted` can only be A's
//!   late checkpoint: the fence must have refused every one of them;
//! - a call of a ledger handler with one of A's attempt numbers recorded
//!   after A was resumed is A's handler reaching its effect after it lost
//!   the run: it must have been stopped first.

use std::collections::HashMap;

use sagaflow_engine::state::StepState;
use sqlx::PgPool;
use uuid::Uuid;

/// One attempt a replica had in flight when it was stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    pub run: Uuid,
    pub step: String,
    pub attempt: u32,
    pub compensation: bool,
}

impl InFlight {
    /// The idempotency key of the attempt's handler call.
    pub fn key(&self) -> String {
        if self.compensation {
            format!("{}:{}:compensate", self.run, self.step)
        } else {
            format!("{}:{}", self.run, self.step)
        }
    }
}

/// The attempts in flight in `runs` leased by `owner`, as stored now.
pub async fn in_flight(pool: &PgPool, owner: &str) -> Result<Vec<InFlight>, sqlx::Error> {
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT id, steps FROM runs WHERE lease_owner = $1 \
         AND state IN ('RUNNING', 'COMPENSATING')",
    )
    .bind(owner)
    .fetch_all(pool)
    .await?;
    let mut out = Vec::new();
    for (run, steps) in rows {
        let Ok(steps) = sagaflow_engine::store::decode_steps(&steps) else {
            continue;
        };
        for s in steps {
            let (attempt, compensation) = match s.state {
                StepState::Running => (s.attempts, false),
                StepState::Compensating => (s.compensation_attempts, true),
                _ => continue,
            };
            out.push(InFlight {
                run,
                step: s.name,
                attempt,
                compensation,
            });
        }
    }
    Ok(out)
}

/// The result events a forward attempt or a compensation attempt writes.
const FORWARD_RESULTS: [&str; 4] = [
    "step_succeeded",
    "step_failed",
    "step_retry_scheduled",
    "step_failed_non_blocking",
];
const COMPENSATION_RESULTS: [&str; 3] = [
    "step_compensated",
    "compensation_step_failed",
    "compensation_retry_scheduled",
];

/// What became of the stopped replica's attempts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaleOutcome {
    /// Attempts in flight when the replica was stopped.
    pub in_flight: usize,
    /// Of those, attempts another replica found unfinished when it took the
    /// run over (a `step_interrupted` event): the stopped replica's result
    /// of such an attempt would be a stale write.
    pub taken_over: usize,
    /// Result events carrying one of the stopped replica's attempts: stale
    /// writes that were not refused.
    pub stale_results: Vec<String>,
    /// Ledger calls of the stopped replica's attempts after it resumed:
    /// handlers that went on after their run was lost.
    pub late_calls: Vec<String>,
}

/// Checks the histories and the ledger call log of the attempts in
/// `stopped`; `resumed_at` is the database's time just before the replica
/// was resumed.
pub async fn outcome(
    pool: &PgPool,
    stopped: &[InFlight],
    resumed_at: chrono::DateTime<chrono::Utc>,
) -> Result<StaleOutcome, sqlx::Error> {
    let runs: Vec<Uuid> = stopped.iter().map(|s| s.run).collect();
    let events: Vec<(Uuid, String, Option<String>, i32)> = sqlx::query_as(
        "SELECT run_id, kind, step, attempt FROM run_events WHERE run_id = ANY($1) ORDER BY run_id, seq",
    )
    .bind(&runs)
    .fetch_all(pool)
    .await?;
    let mut by_run: HashMap<Uuid, Vec<(String, Option<String>, i32)>> = HashMap::new();
    for (run, kind, step, attempt) in events {
        by_run.entry(run).or_default().push((kind, step, attempt));
    }
    let keys: Vec<String> = stopped.iter().map(InFlight::key).collect();
    let calls: Vec<(String, i32)> = sqlx::query_as(
        "SELECT idempotency_key, attempt FROM effect_calls \
         WHERE idempotency_key = ANY($1) AND called_at > $2",
    )
    .bind(&keys)
    .bind(resumed_at)
    .fetch_all(pool)
    .await?;
    let mut out = StaleOutcome {
        in_flight: stopped.len(),
        ..StaleOutcome::default()
    };
    let empty = Vec::new();
    for s in stopped {
        let history = by_run.get(&s.run).unwrap_or(&empty);
        let results: &[&str] = if s.compensation {
            &COMPENSATION_RESULTS
        } else {
            &FORWARD_RESULTS
        };
        let attempt = i32::try_from(s.attempt).unwrap_or(i32::MAX);
        let is = |e: &(String, Option<String>, i32), kind: &str| {
            e.0 == kind && e.1.as_deref() == Some(s.step.as_str()) && e.2 == attempt
        };
        // Another replica found the attempt unfinished: from here on, a
        // result of it can only be the stopped replica's late write.
        if let Some(at) = history.iter().position(|e| is(e, "step_interrupted")) {
            out.taken_over += 1;
            for e in &history[at + 1..] {
                if let Some(kind) = results.iter().find(|k| is(e, k)) {
                    out.stale_results.push(format!(
                        "run {}: {kind} of {} attempt {} written after another replica found it interrupted",
                        s.run, s.step, s.attempt
                    ));
                }
            }
        }
        let key = s.key();
        if calls.iter().any(|(k, a)| *k == key && *a == attempt) {
            out.late_calls.push(format!(
                "run {}: {} attempt {} called its effect after its replica resumed without the run",
                s.run, s.step, s.attempt
            ));
        }
    }
    Ok(out)
}
