//! The invariant checker, run after every scenario on the scenario's
//! database and effect ledger:
//!
//! - every run terminal;
//! - every effect applied exactly once per idempotency key, and none zero
//!   times in a run that says it completed;
//! - no compensation without its forward effect, none twice, in reverse
//!   step order; a compensated or cancelled run leaves no forward effect
//!   behind, a completed run has no compensation;
//! - gapless event sequences (`run_events.seq` is 1..n, n = `runs.last_seq`);
//! - only allowed transitions: the history is replayed through the engine's
//!   own transition tables ([`RunState::apply`], [`StepState::apply`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use sagaflow_engine::state::{OnFailure, RunEvent, RunState, StepEvent, StepState};
use sqlx::PgPool;
use uuid::Uuid;

/// One effect applied by a handler or a simulator, in the order applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effect {
    pub key: String,
    pub run: Uuid,
    pub step: String,
    pub compensation: bool,
}

impl Effect {
    /// Parses an engine idempotency key, `{run}:{step}` or
    /// `{run}:{step}:compensate`.
    pub fn from_key(key: &str) -> Option<Self> {
        let (run, rest) = key.split_once(':')?;
        let run = Uuid::parse_str(run).ok()?;
        let (step, compensation) = match rest.strip_suffix(":compensate") {
            Some(s) => (s, true),
            None => (rest, false),
        };
        Some(Self {
            key: key.to_owned(),
            run,
            step: step.to_owned(),
            compensation,
        })
    }
}

/// The effects of the `ledger.*` handlers, in the order applied.
pub async fn ledger_effects(pool: &PgPool) -> Result<Vec<Effect>, sqlx::Error> {
    let rows: Vec<(String, Uuid, String, bool)> = sqlx::query_as(
        "SELECT idempotency_key, run_id, step, compensation FROM effect_ledger ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(key, run, step, compensation)| Effect {
            key,
            run,
            step,
            compensation,
        })
        .collect())
}

/// The effects the simulators applied with an engine idempotency key (the
/// harness's own setup requests carry none), skipping undos that found
/// nothing to undo.
pub fn sim_effects(snap: &sagaflow_steps::sim::SimSnapshot) -> Vec<Effect> {
    snap.effects
        .iter()
        .filter(|e| e.changed)
        .filter_map(|e| e.key.as_deref().and_then(Effect::from_key))
        .collect()
}

/// One run as stored.
#[derive(Debug, Clone)]
pub struct RunRow {
    pub id: Uuid,
    pub state: String,
    /// Step names and states, in definition order.
    pub steps: Vec<(String, String)>,
    pub last_seq: i64,
}

/// One history event as stored.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub seq: i64,
    pub kind: String,
    pub step: Option<String>,
    pub run_state: String,
}

/// What the checker found.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    pub runs: usize,
    pub terminal: usize,
    pub end_states: BTreeMap<String, usize>,
    /// How many keys had their effect applied n times, by n.
    pub effects_per_key: BTreeMap<u64, u64>,
    pub duplicate_compensations: u64,
    pub compensation_without_forward: u64,
    pub out_of_order_compensations: u64,
    pub leaked_effects: u64,
    /// Steps a completed run says succeeded whose effect the source does
    /// not hold (applied zero times).
    pub missing_effects: u64,
    pub completed_compensations: u64,
    pub seq_gaps: u64,
    pub bad_transitions: u64,
    /// A few violations, described.
    pub examples: Vec<String>,
}

impl Findings {
    fn violation(&mut self, what: String) {
        if self.examples.len() < 20 {
            self.examples.push(what);
        }
    }
}

/// Loads the runs of `tenant` and their histories.
pub async fn load(
    pool: &PgPool,
    tenant: &str,
) -> Result<(Vec<RunRow>, HashMap<Uuid, Vec<EventRow>>), sqlx::Error> {
    let rows: Vec<(Uuid, String, String, i64)> = sqlx::query_as(
        "SELECT id, state, steps, last_seq FROM runs WHERE tenant_id = $1 ORDER BY created_at, id",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await?;
    let runs = rows
        .into_iter()
        .map(|(id, state, steps, last_seq)| {
            // Unreadable steps leave the list empty, which the checks report.
            let steps = sagaflow_engine::store::decode_steps(&steps)
                .map(|v| {
                    v.into_iter()
                        .map(|s| (s.name, s.state.as_str().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            RunRow {
                id,
                state,
                steps,
                last_seq,
            }
        })
        .collect();
    let events: Vec<(Uuid, i64, String, Option<String>, String)> = sqlx::query_as(
        "SELECT e.run_id, e.seq, e.kind, e.step, e.run_state FROM run_events e \
         JOIN runs r ON r.id = e.run_id WHERE r.tenant_id = $1 ORDER BY e.run_id, e.seq",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await?;
    let mut by_run: HashMap<Uuid, Vec<EventRow>> = HashMap::new();
    for (run, seq, kind, step, run_state) in events {
        by_run.entry(run).or_default().push(EventRow {
            seq,
            kind,
            step,
            run_state,
        });
    }
    Ok((runs, by_run))
}

/// Loads `tenant`'s runs and checks every invariant against `effects`.
pub async fn check(
    pool: &PgPool,
    tenant: &str,
    effects: &[Effect],
) -> Result<Findings, sqlx::Error> {
    let (runs, events) = load(pool, tenant).await?;
    Ok(check_loaded(&runs, &events, effects))
}

/// [`check`] on data already loaded.
pub fn check_loaded(
    runs: &[RunRow],
    events: &HashMap<Uuid, Vec<EventRow>>,
    effects: &[Effect],
) -> Findings {
    let mut f = Findings {
        runs: runs.len(),
        ..Findings::default()
    };
    let empty = Vec::new();
    for run in runs {
        *f.end_states.entry(run.state.clone()).or_default() += 1;
        let terminal = RunState::from_str(&run.state).is_ok_and(RunState::is_terminal);
        if terminal {
            f.terminal += 1;
        }
        let history = events.get(&run.id).unwrap_or(&empty);
        check_sequence(run, history, &mut f);
        check_transitions(run, history, &mut f);
        check_compensation_history(run, history, &mut f);
    }
    check_effects(runs, effects, &mut f);
    f
}

fn check_sequence(run: &RunRow, history: &[EventRow], f: &mut Findings) {
    let gapless = history
        .iter()
        .enumerate()
        .all(|(i, e)| e.seq == i as i64 + 1);
    if !gapless || history.len() as i64 != run.last_seq {
        f.seq_gaps += 1;
        f.violation(format!(
            "run {}: {} events, last_seq {}, sequence {:?}",
            run.id,
            history.len(),
            run.last_seq,
            history.iter().map(|e| e.seq).collect::<Vec<_>>()
        ));
    }
}

/// The run events an event kind stands for, when it stands for a
/// transition of the run.
fn run_events_of(kind: &str) -> Option<&'static [RunEvent]> {
    use RunEvent as E;
    Some(match kind {
        "run_completed" => &[E::AllStepsDone],
        "run_compensated" => &[E::AllCompensated { cancelled: false }],
        "run_cancelled" => &[E::AllCompensated { cancelled: true }],
        "run_terminated" => &[E::Cancel { compensate: false }],
        "run_queue_expired" => &[E::QueueExpired],
        "run_failed" => &[E::RequiredStepGaveUp(OnFailure::Pause)],
        "run_compensation_failed" => &[E::CompensationGaveUp],
        "operator_retry" => &[E::OperatorRetry],
        "operator_compensate" => &[E::OperatorCompensate],
        "operator_skip" => &[E::OperatorSkip],
        "operator_cancel" => &[
            E::Cancel { compensate: true },
            E::Cancel { compensate: false },
        ],
        "compensation_started" => &[
            E::RequiredStepGaveUp(OnFailure::Compensate),
            E::Cancel { compensate: true },
        ],
        _ => return None,
    })
}

/// The step events an event kind may stand for (`None`: the step's state
/// does not change).
fn step_events_of(kind: &str) -> &'static [Option<StepEvent>] {
    use StepEvent as E;
    match kind {
        "step_started" => &[Some(E::Start)],
        // A sleep or signal step reached, or a handler's "not ready yet".
        "step_waiting" => &[Some(E::Wait)],
        // A task asked again (then RUNNING), or a sleep or signal step
        // done (`step_succeeded` follows).
        "step_woken" => &[None, Some(E::Start)],
        "step_succeeded" => &[Some(E::Succeed)],
        "step_failed" | "compensation_step_failed" => &[None],
        "step_retry_scheduled" => &[Some(E::ScheduleRetry)],
        "step_failed_non_blocking" => &[Some(E::FailNonBlocking)],
        "step_skipped" | "operator_skip" => &[Some(E::Skip)],
        // A crash (the next attempt starts it again), a cancellation (it
        // failed) or a withdrawn attempt.
        "step_interrupted" => &[None, Some(E::Fail), Some(E::Withdraw)],
        "run_failed" => &[Some(E::Fail)],
        "compensation_step_started" => &[Some(E::StartCompensation)],
        "step_compensated" => &[Some(E::Compensated)],
        "compensation_retry_scheduled" => &[Some(E::ScheduleCompensationRetry)],
        "run_compensation_failed" => &[Some(E::FailCompensation)],
        _ => &[None],
    }
}

/// Every state `from` can reach through one of `options`.
fn step_successors(from: &[StepState], options: &[Option<StepEvent>]) -> Vec<StepState> {
    let mut out = Vec::new();
    for s in from {
        for o in options {
            let next = match o {
                None => Ok(*s),
                Some(e) => s.apply(*e),
            };
            if let Ok(n) = next
                && !out.contains(&n)
            {
                out.push(n);
            }
        }
    }
    out
}

fn check_transitions(run: &RunRow, history: &[EventRow], f: &mut Findings) {
    let mut bad = Vec::new();
    // The run: each event's state must follow from the previous one
    // through the run transition table.
    let mut prev: Option<RunState> = None;
    // The steps: the set of states each step may be in (some kinds stand
    // for more than one step event).
    let names: Vec<&str> = run.steps.iter().map(|s| s.0.as_str()).collect();
    let mut possible: Vec<Vec<StepState>> = vec![vec![StepState::Pending]; names.len()];
    for e in history {
        let Ok(cur) = RunState::from_str(&e.run_state) else {
            bad.push(format!("seq {}: unknown state {}", e.seq, e.run_state));
            continue;
        };
        match prev {
            None => {
                if !matches!(e.kind.as_str(), "run_started" | "run_queued")
                    || cur != RunState::Pending
                {
                    bad.push(format!("seq {}: starts with {} in {cur}", e.seq, e.kind));
                }
            }
            Some(p) => {
                let reachable = |events: &[RunEvent]| {
                    events
                        .iter()
                        .any(|ev| p.apply(*ev).is_ok_and(|t| t.to == cur))
                };
                // A cancellation without compensation of a run no executor
                // holds ends it at once: operator_cancel then run_terminated,
                // both in TERMINATED.
                let same_ok = p == cur
                    && (!p.is_terminal() || e.kind == "run_terminated")
                    && !matches!(
                        e.kind.as_str(),
                        "run_completed"
                            | "run_compensated"
                            | "run_cancelled"
                            | "run_queue_expired"
                            | "run_failed"
                            | "run_compensation_failed"
                            | "operator_retry"
                            | "operator_compensate"
                            | "operator_skip"
                            | "compensation_started"
                    );
                let ok = same_ok
                    || match run_events_of(&e.kind) {
                        Some(events) => reachable(events),
                        None => reachable(&RunEvent::ALL),
                    };
                if !ok {
                    bad.push(format!("seq {}: {p} -> {cur} by {}", e.seq, e.kind));
                }
            }
        }
        prev = Some(cur);
        // Steps.
        match (e.kind.as_str(), &e.step) {
            ("operator_retry", step) => {
                let from_failed = history
                    .iter()
                    .rev()
                    .find(|x| x.seq < e.seq)
                    .is_some_and(|x| x.run_state == RunState::Failed.as_str());
                if from_failed {
                    let start = step
                        .as_deref()
                        .and_then(|s| names.iter().position(|n| *n == s))
                        .unwrap_or(names.len());
                    for p in possible.iter_mut().skip(start) {
                        *p = step_successors(p, &[None, Some(StepEvent::Reset)]);
                    }
                } else if let Some(i) = step
                    .as_deref()
                    .and_then(|s| names.iter().position(|n| *n == s))
                {
                    possible[i] =
                        step_successors(&possible[i], &[Some(StepEvent::StartCompensation)]);
                }
            }
            ("compensation_started", None) => {
                for p in possible.iter_mut() {
                    *p = step_successors(p, &[None, Some(StepEvent::Fail)]);
                }
            }
            (kind, Some(step)) => match names.iter().position(|n| n == step) {
                Some(i) => {
                    let next = step_successors(&possible[i], step_events_of(kind));
                    if next.is_empty() {
                        bad.push(format!(
                            "seq {}: step {step} in {:?} cannot take {kind}",
                            e.seq, possible[i]
                        ));
                    } else {
                        possible[i] = next;
                    }
                }
                None => bad.push(format!("seq {}: unknown step {step}", e.seq)),
            },
            _ => {}
        }
    }
    if let Some(p) = prev
        && p.as_str() != run.state
    {
        bad.push(format!("the history ends in {p}, the run is {}", run.state));
    }
    for (i, (name, state)) in run.steps.iter().enumerate() {
        let ok = StepState::from_str(state).is_ok_and(|s| possible[i].contains(&s));
        if !ok {
            bad.push(format!(
                "step {name} is {state}, the history allows {:?}",
                possible[i]
            ));
        }
    }
    if !bad.is_empty() {
        f.bad_transitions += 1;
        f.violation(format!("run {}: {}", run.id, bad.join("; ")));
    }
}

fn check_compensation_history(run: &RunRow, history: &[EventRow], f: &mut Findings) {
    let index = |s: &str| run.steps.iter().position(|(n, _)| n == s);
    let order: Vec<usize> = history
        .iter()
        .filter(|e| e.kind == "step_compensated")
        .filter_map(|e| e.step.as_deref().and_then(index))
        .collect();
    if order.windows(2).any(|w| w[0] <= w[1]) {
        f.out_of_order_compensations += 1;
        f.violation(format!(
            "run {}: steps compensated in the order {order:?} (history)",
            run.id
        ));
    }
}

fn check_effects(runs: &[RunRow], effects: &[Effect], f: &mut Findings) {
    let mut per_key: HashMap<&str, u64> = HashMap::new();
    for e in effects {
        *per_key.entry(e.key.as_str()).or_default() += 1;
    }
    for (key, n) in &per_key {
        *f.effects_per_key.entry(*n).or_default() += 1;
        if *n > 1 {
            f.violation(format!("key {key}: applied {n} times"));
        }
    }
    let by_id: HashMap<Uuid, &RunRow> = runs.iter().map(|r| (r.id, r)).collect();
    let mut per_run: HashMap<Uuid, Vec<&Effect>> = HashMap::new();
    for e in effects {
        per_run.entry(e.run).or_default().push(e);
    }
    for (run_id, list) in per_run {
        let Some(run) = by_id.get(&run_id) else {
            continue;
        };
        let index = |s: &str| run.steps.iter().position(|(n, _)| n == s);
        let mut forward_seen: Vec<&str> = Vec::new();
        let mut compensated: Vec<&str> = Vec::new();
        let mut order: Vec<usize> = Vec::new();
        for e in &list {
            if !e.compensation {
                forward_seen.push(&e.step);
                continue;
            }
            if compensated.contains(&e.step.as_str()) {
                f.duplicate_compensations += 1;
                f.violation(format!("run {run_id}: step {} compensated twice", e.step));
            }
            compensated.push(&e.step);
            if !forward_seen.contains(&e.step.as_str()) {
                f.compensation_without_forward += 1;
                f.violation(format!(
                    "run {run_id}: step {} compensated without its forward effect",
                    e.step
                ));
            }
            order.extend(index(&e.step));
        }
        if order.windows(2).any(|w| w[0] <= w[1]) {
            f.out_of_order_compensations += 1;
            f.violation(format!(
                "run {run_id}: effects undone in step order {order:?}"
            ));
        }
        match run.state.as_str() {
            "COMPENSATED" | "CANCELLED" => {
                for step in forward_seen.iter().filter(|s| !compensated.contains(s)) {
                    f.leaked_effects += 1;
                    f.violation(format!(
                        "run {run_id} is {} but the effect of {step} was not undone",
                        run.state
                    ));
                }
            }
            "COMPLETED" if !compensated.is_empty() => {
                f.completed_compensations += 1;
                f.violation(format!("run {run_id} completed with compensations"));
            }
            _ => {}
        }
    }
    check_missing(runs, effects, f);
}

/// Every step a completed run reports as succeeded has its forward effect
/// in the source. Only steps whose effects this source can see are
/// checked: those with a forward effect in any run (the simulators see the
/// ONU, CPE and billing steps; the ledger sees every step of its workflows).
fn check_missing(runs: &[RunRow], effects: &[Effect], f: &mut Findings) {
    let observed: HashSet<&str> = effects
        .iter()
        .filter(|e| !e.compensation)
        .map(|e| e.step.as_str())
        .collect();
    let applied: HashSet<(Uuid, &str)> = effects
        .iter()
        .filter(|e| !e.compensation)
        .map(|e| (e.run, e.step.as_str()))
        .collect();
    for run in runs.iter().filter(|r| r.state == "COMPLETED") {
        for (step, state) in &run.steps {
            if state == "SUCCEEDED"
                && observed.contains(step.as_str())
                && !applied.contains(&(run.id, step.as_str()))
            {
                f.missing_effects += 1;
                f.violation(format!(
                    "run {} is COMPLETED but the effect of {step} is not there",
                    run.id
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests;
