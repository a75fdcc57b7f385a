//! Property tests of the pure parts: the run state machine as the saga logic
//! drives it (random workflows, random step outcomes, crashes, operator
//! actions at random moments), and cron arithmetic (random expressions and
//! instants, across the DST changes of Europe/Berlin and America/New_York).
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use sagaflow_engine::definition::{LoadedDefinition, WorkflowDefinition, parse};
use sagaflow_engine::handler::{CallKind, StepError};
use sagaflow_engine::ids::{RunId, TenantId};
use sagaflow_engine::saga::{Next, OperatorAction, Outcome, advance, operate};
use sagaflow_engine::schedule::CronSpec;
use sagaflow_engine::state::{RunEvent, RunState, StepEvent, StepState};
use sagaflow_engine::store::{EventKind, NewEvent, RunRecord, StepRecord};
use serde_json::json;

// ---------------------------------------------------------------------------
// The run state machine.

/// One step of a generated workflow.
#[derive(Debug, Clone)]
struct StepShape {
    required: bool,
    compensation: bool,
    attempts: u32,
    compensation_attempts: u32,
}

fn workflow(steps: &[StepShape], pause: bool) -> WorkflowDefinition {
    let mut t = format!(
        "name = \"prop\"\nversion = 1\non_failure = \"{}\"\n",
        if pause { "pause" } else { "compensate" }
    );
    for (i, s) in steps.iter().enumerate() {
        t.push_str(&format!(
            "[[steps]]\nname = \"s{i}\"\nhandler = \"h\"\nrequired = {}\n\
             retry = {{ max_attempts = {}, initial_interval_ms = 1, max_interval_ms = 1, jitter = 0.0 }}\n",
            s.required, s.attempts
        ));
        if s.compensation {
            t.push_str(&format!(
                "compensation = \"c\"\n\
                 compensation_retry = {{ max_attempts = {}, initial_interval_ms = 1, max_interval_ms = 1, jitter = 0.0 }}\n",
                s.compensation_attempts
            ));
        }
    }
    LoadedDefinition::new(parse(&t, "prop.toml").unwrap(), "prop.toml").definition
}

fn new_run(def: &WorkflowDefinition, now: DateTime<Utc>) -> RunRecord {
    RunRecord {
        id: RunId::new(),
        tenant_id: TenantId::new("t"),
        workflow_name: def.name.clone(),
        workflow_version: def.version,
        definition_id: "prop@v1".into(),
        state: RunState::Pending,
        input: json!({}),
        context: json!({}),
        steps: def.steps.iter().map(|s| StepRecord::new(&s.name)).collect(),
        cursor: 0,
        error: None,
        idempotency_key: None,
        concurrency_key: None,
        schedule_id: None,
        trace_id: None,
        traceparent: None,
        cancel_request: None,
        last_seq: 0,
        next_run_at: Some(now),
        lease_owner: None,
        lease_expires_at: None,
        created_at: now,
        updated_at: now,
        finished_at: None,
    }
}

/// What the test does at each point where something can happen.
#[derive(Debug, Clone, Copy)]
struct Move {
    choice: u8,
    param: u8,
}

/// Everything the run went through, checked as it grows.
struct Checker {
    def: WorkflowDefinition,
    history: Vec<NewEvent>,
    /// Steps whose forward effect may exist (succeeded, or an attempt with
    /// an unknown outcome).
    effect: HashSet<usize>,
    compensated: Vec<usize>,
}

impl Checker {
    fn index(&self, step: &Option<String>) -> usize {
        let name = step.as_deref().unwrap();
        self.def.steps.iter().position(|s| s.name == name).unwrap()
    }

    /// Checks one change of the run: `before` → `after`, with `events`.
    fn change(&mut self, before: &RunRecord, after: &RunRecord, events: &[NewEvent]) {
        // Every state the run passes through is reached by a transition of
        // the table (a state may repeat).
        let mut state = before.state;
        for e in events {
            if e.run_state != state {
                assert!(
                    RunEvent::ALL
                        .iter()
                        .any(|ev| state.apply(*ev).is_ok_and(|t| t.to == e.run_state)),
                    "no transition {state} -> {} ({:?})",
                    e.run_state,
                    e.kind
                );
                assert!(
                    !state.is_terminal(),
                    "left terminal {state} by {:?}",
                    e.kind
                );
            }
            state = e.run_state;
        }
        assert_eq!(state, after.state, "the last event names the run's state");
        if before.state.is_terminal() {
            assert_eq!(before, after, "a terminal run changed");
            assert!(events.is_empty());
        }
        // Every step's state change is one of the step table's.
        for (b, a) in before.steps.iter().zip(&after.steps) {
            if a.state != b.state {
                let reachable = StepEvent::ALL
                    .iter()
                    .any(|ev| b.state.apply(*ev) == Ok(a.state))
                    || StepEvent::ALL.iter().any(|e1| {
                        b.state.apply(*e1).is_ok_and(|mid| {
                            StepEvent::ALL
                                .iter()
                                .any(|e2| mid.apply(*e2) == Ok(a.state))
                        })
                    });
                assert!(reachable, "step {}: {} -> {}", b.name, b.state, a.state);
            }
        }
        for (i, s) in after.steps.iter().enumerate() {
            let sd = &self.def.steps[i];
            assert!(
                s.attempts <= sd.retry().max_attempts,
                "step {} ran {} attempts, the policy allows {}",
                s.name,
                s.attempts,
                sd.retry().max_attempts
            );
        }
        for e in events {
            match e.kind {
                EventKind::StepSucceeded => {
                    self.effect.insert(self.index(&e.step));
                }
                EventKind::StepInterrupted => {
                    self.effect.insert(self.index(&e.step));
                }
                // A step the operator skipped is the operator's to undo.
                EventKind::OperatorSkip => {
                    let i = self.index(&e.step);
                    self.effect.remove(&i);
                }
                EventKind::StepFailed
                    if e.message
                        .as_deref()
                        .is_some_and(|m| m.starts_with("timeout")) =>
                {
                    self.effect.insert(self.index(&e.step));
                }
                EventKind::CompensationStepStarted => {
                    let i = self.index(&e.step);
                    assert!(self.def.steps[i].compensation.is_some());
                    assert!(
                        self.effect.contains(&i),
                        "compensation of {} without its forward effect",
                        self.def.steps[i].name
                    );
                    // Strict reverse order: nothing after it is left to undo.
                    for j in i + 1..self.def.steps.len() {
                        if self.effect.contains(&j) && self.def.steps[j].compensation.is_some() {
                            assert!(
                                self.compensated.contains(&j),
                                "{} compensated before {}",
                                self.def.steps[i].name,
                                self.def.steps[j].name
                            );
                        }
                    }
                }
                EventKind::StepCompensated => {
                    let i = self.index(&e.step);
                    assert!(
                        !self.compensated.contains(&i),
                        "{} compensated twice",
                        self.def.steps[i].name
                    );
                    self.compensated.push(i);
                }
                _ => {}
            }
        }
        self.history.extend(events.iter().cloned());
    }
}

fn outcome(step: usize, kind: CallKind, choice: u8) -> Outcome {
    let result = match choice % 8 {
        0..=3 => Ok(serde_json::Map::from_iter([(
            format!("out{step}"),
            json!("done"),
        )])),
        4 => Err(StepError::retryable("transient", "try again")),
        5 => Err(StepError::fatal("bad_request", "refused")),
        _ => Err(StepError::retryable("timeout", "no answer")),
    };
    Outcome { step, kind, result }
}

fn operator_action(def: &WorkflowDefinition, m: Move) -> OperatorAction {
    let step = |p: u8| def.steps[p as usize % def.steps.len()].name.clone();
    match m.choice % 6 {
        0 => OperatorAction::Retry {
            from_step: None,
            context_patch: None,
        },
        1 => OperatorAction::Retry {
            from_step: Some(step(m.param)),
            context_patch: Some(serde_json::Map::from_iter([("patched".into(), json!(1))])),
        },
        2 => OperatorAction::Skip {
            step: step(m.param),
            output: None,
        },
        3 => OperatorAction::Compensate,
        4 => OperatorAction::Cancel { compensate: true },
        _ => OperatorAction::Cancel { compensate: false },
    }
}

/// Applies an operator action; a refused one must change nothing.
fn act(
    run: &mut RunRecord,
    check: &mut Checker,
    action: OperatorAction,
    now: DateTime<Utc>,
) -> bool {
    let before = run.clone();
    match operate(run, &check.def, action, "op", "by hand", now) {
        Ok(change) => {
            check.change(&before, run, &change.events);
            true
        }
        Err(_) => {
            assert_eq!(*run, before, "a refused action changed the run");
            false
        }
    }
}

/// Drives a run with `moves`, then to its end with every handler
/// succeeding and an operator who retries or compensates. Returns the run.
fn drive(def: WorkflowDefinition, moves: &[Move]) -> (RunRecord, Checker) {
    let mut now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut run = new_run(&def, now);
    let mut check = Checker {
        def: def.clone(),
        history: Vec::new(),
        effect: HashSet::new(),
        compensated: Vec::new(),
    };
    let mut rand = || 0.5;
    let mut pending: Option<Outcome> = None;
    let mut moves = moves.iter().copied();
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 2_000, "the run never ended: {:?}", run.state);
        now += Duration::milliseconds(1);
        let before = run.clone();
        let adv = advance(&mut run, &def, pending.take(), now, true, &mut rand).unwrap();
        check.change(&before, &run, &adv.events);
        assert_eq!(adv.finished, run.state.is_terminal());
        let m = moves.next();
        match adv.next {
            Next::Execute {
                step,
                kind,
                attempt,
            } => {
                let counted = match kind {
                    CallKind::Forward => run.steps[step].attempts,
                    CallKind::Compensate => run.steps[step].compensation_attempts,
                };
                assert_eq!(attempt, counted, "attempts are counted when they start");
                match m {
                    // Out of moves: every handler succeeds.
                    None => pending = Some(outcome(step, kind, 0)),
                    // A crash: the attempt never reports.
                    Some(m) if m.choice % 16 == 15 => {}
                    Some(m) => {
                        if m.param % 8 == 0 {
                            // An operator acts while the attempt runs.
                            act(&mut run, &mut check, operator_action(&def, m), now);
                        }
                        pending = Some(outcome(step, kind, m.choice));
                    }
                }
            }
            Next::Wait(at) => now = now.max(at),
            Next::Stop if run.state.is_terminal() => {
                // Terminal stays terminal: every action is refused, and
                // advancing does nothing.
                for choice in 0..6 {
                    let a = operator_action(&def, Move { choice, param: 0 });
                    assert!(!act(&mut run, &mut check, a, now), "{:?}", run.state);
                }
                let before = run.clone();
                let adv = advance(&mut run, &def, None, now, true, &mut rand).unwrap();
                assert!(adv.events.is_empty() && adv.next == Next::Stop);
                assert_eq!(run, before);
                return (run, check);
            }
            Next::Stop => {
                assert!(
                    matches!(run.state, RunState::Failed | RunState::CompensationFailed),
                    "stopped in {}",
                    run.state
                );
                let action = match m {
                    Some(m) => operator_action(&def, m),
                    // Out of moves: the operator gives up on the run.
                    None if run.state == RunState::Failed => OperatorAction::Compensate,
                    None => OperatorAction::Retry {
                        from_step: None,
                        context_patch: None,
                    },
                };
                act(&mut run, &mut check, action, now);
            }
        }
    }
}

fn step_shape() -> impl Strategy<Value = StepShape> {
    (any::<bool>(), any::<bool>(), 1u32..4, 1u32..3).prop_map(|(r, c, a, ca)| StepShape {
        required: r || a == 1,
        compensation: c,
        attempts: a,
        compensation_attempts: ca,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn runs_take_only_allowed_transitions_and_compensate_in_reverse_once(
        steps in prop::collection::vec(step_shape(), 1..6),
        pause in any::<bool>(),
        moves in prop::collection::vec((any::<u8>(), any::<u8>()).prop_map(|(choice, param)| Move { choice, param }), 0..80),
    ) {
        let def = workflow(&steps, pause);
        let (run, check) = drive(def.clone(), &moves);
        // Every run ends terminal once handlers succeed and an operator
        // decides.
        prop_assert!(run.state.is_terminal());
        match run.state {
            RunState::Completed => {
                for (s, sd) in run.steps.iter().zip(&def.steps) {
                    prop_assert!(s.state.is_done(), "{} is {}", sd.name, s.state);
                    if sd.required {
                        prop_assert!(matches!(s.state, StepState::Succeeded | StepState::Skipped));
                    }
                }
            }
            RunState::Compensated | RunState::Cancelled => {
                // Every effect that can be undone was undone, once.
                for i in &check.effect {
                    if def.steps[*i].compensation.is_some() {
                        prop_assert!(check.compensated.contains(i), "{} left", def.steps[*i].name);
                    }
                }
            }
            RunState::Terminated => {
                prop_assert!(check.history.iter().any(|e| e.kind == EventKind::RunTerminated));
            }
            other => prop_assert!(false, "not terminal: {other}"),
        }
        // The compensations ran in strictly reverse step order.
        prop_assert!(check.compensated.windows(2).all(|w| w[0] > w[1]), "{:?}", check.compensated);
    }
}

// ---------------------------------------------------------------------------
// Cron arithmetic.

/// One field of a generated expression: its text and the values it allows.
#[derive(Debug, Clone)]
struct Field {
    text: String,
    values: HashSet<u32>,
}

fn field(lo: u32, hi: u32) -> impl Strategy<Value = Field> {
    prop_oneof![
        Just(Field {
            text: "*".into(),
            values: (lo..=hi).collect()
        }),
        (lo..=hi).prop_map(|v| Field {
            text: v.to_string(),
            values: [v].into()
        }),
        (lo..=hi, lo..=hi).prop_map(|(a, b)| {
            let (a, b) = (a.min(b), a.max(b));
            Field {
                text: format!("{a}-{b}"),
                values: (a..=b).collect(),
            }
        }),
        (1..(hi - lo + 1).min(31)).prop_map(move |k| Field {
            text: format!("*/{k}"),
            values: (lo..=hi).filter(|v| (v - lo).is_multiple_of(k)).collect()
        }),
        prop::collection::btree_set(lo..=hi, 1..4).prop_map(|s| Field {
            text: s.iter().map(u32::to_string).collect::<Vec<_>>().join(","),
            values: s.into_iter().collect()
        }),
    ]
}

#[derive(Debug, Clone)]
struct Expr {
    minute: Field,
    hour: Field,
    dom: Field,
    month: Field,
    dow: Field,
}

impl Expr {
    fn text(&self) -> String {
        [&self.minute, &self.hour, &self.dom, &self.month, &self.dow]
            .iter()
            .map(|f| f.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn date_matches(&self, local: &DateTime<Tz>) -> bool {
        self.month.values.contains(&local.month())
            && self.dom.values.contains(&local.day())
            && self
                .dow
                .values
                .contains(&local.weekday().num_days_from_sunday())
    }

    fn matches(&self, local: &DateTime<Tz>) -> bool {
        self.date_matches(local)
            && self.hour.values.contains(&local.hour())
            && self.minute.values.contains(&local.minute())
    }
}

/// Expressions restricting at most one of day-of-month and day-of-week (so
/// that their OR rule does not matter).
fn expr() -> impl Strategy<Value = Expr> {
    let star = |lo: u32, hi: u32| Field {
        text: "*".into(),
        values: (lo..=hi).collect(),
    };
    (
        field(0, 59),
        field(0, 23),
        field(1, 31),
        field(1, 12),
        field(0, 6),
        any::<bool>(),
    )
        .prop_map(move |(minute, hour, dom, month, dow, by_dom)| {
            let (dom, dow) = if by_dom {
                (dom, star(0, 6))
            } else {
                (star(1, 31), dow)
            };
            Expr {
                minute,
                hour,
                dom,
                month,
                dow,
            }
        })
}

const ZONES: [&str; 3] = ["Europe/Berlin", "America/New_York", "UTC"];

/// The days the clocks change in Europe (last Sundays of March and
/// October) and in the United States (second Sunday of March, first of
/// November).
fn dst_days(year: i32) -> [NaiveDate; 4] {
    let sunday = |month: u32, days: std::ops::RangeInclusive<u32>, last: bool| {
        let mut found = days.filter(|d| {
            NaiveDate::from_ymd_opt(year, month, *d).unwrap().weekday() == chrono::Weekday::Sun
        });
        let d = if last {
            found.next_back()
        } else {
            found.next()
        };
        NaiveDate::from_ymd_opt(year, month, d.unwrap()).unwrap()
    };
    [
        sunday(3, 25..=31, true),
        sunday(10, 25..=31, true),
        sunday(3, 8..=14, false),
        sunday(11, 1..=7, false),
    ]
}

/// Instants from 2020 to 2035, often within two days of a DST change.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    let base = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap();
    prop_oneof![
        (0i64..15 * 365 * 24 * 3600).prop_map(move |s| base + Duration::seconds(s)),
        (2020i32..2035, 0usize..4, -2 * 24 * 3600i64..2 * 24 * 3600).prop_map(
            |(year, which, offset)| {
                let day = dst_days(year)[which];
                Utc.from_utc_datetime(&day.and_hms_opt(3, 0, 0).unwrap())
                    + Duration::seconds(offset)
            }
        ),
    ]
}

/// Whether the wall clock jumped forward just before `t` (a DST gap ends
/// at `t`): a fire for a local time in the gap happens then.
fn after_gap(t: DateTime<Utc>, zone: Tz) -> bool {
    let before = (t - Duration::minutes(1))
        .with_timezone(&zone)
        .naive_local();
    t.with_timezone(&zone).naive_local() - before > Duration::minutes(1)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn next_fire_is_strictly_later_matches_and_is_monotonic(
        e in expr(),
        zone in 0usize..3,
        t in instant(),
        later in 0i64..3 * 24 * 3600,
    ) {
        let zone_name = ZONES[zone];
        let tz: Tz = zone_name.parse().unwrap();
        let spec = match CronSpec::parse(&e.text(), zone_name) {
            Ok(spec) => spec,
            Err(err) => {
                // 30 February: refused when parsed, never silently idle.
                prop_assert!(err.to_string().contains("matches no date"), "{err}");
                return Ok(());
            }
        };
        let Some(next) = spec.next_after(t) else {
            return Ok(());
        };
        prop_assert!(next > t);
        prop_assert_eq!(next.second(), 0);
        let local = next.with_timezone(&tz);
        if after_gap(next, tz) {
            prop_assert!(e.date_matches(&local), "{} at {local}", e.text());
        } else {
            prop_assert!(e.matches(&local), "{} fired at {local}", e.text());
        }
        // Monotonic: a later start never fires earlier.
        let t2 = t + Duration::seconds(later);
        if let Some(next2) = spec.next_after(t2) {
            prop_assert!(next2 >= next);
            if t2 < next {
                prop_assert_eq!(next2, next, "nothing fires in between");
            }
        }
        // The fires in a window are strictly increasing (none twice) and
        // each is the next after the one before.
        let fires = spec.fires_between(t, t + Duration::days(3), 500);
        prop_assert!(fires.windows(2).all(|w| w[0] < w[1]));
        if let Some(first) = fires.first() {
            prop_assert_eq!(*first, next);
        }
        for w in fires.windows(2) {
            prop_assert_eq!(spec.next_after(w[0]), Some(w[1]));
        }
    }

    #[test]
    fn a_daily_job_fires_once_per_local_day_across_dst(
        minute in 0u32..60,
        hour in 0u32..24,
        zone in 0usize..2,
        t in instant(),
    ) {
        let zone_name = ZONES[zone];
        let tz: Tz = zone_name.parse().unwrap();
        let spec = CronSpec::parse(&format!("{minute} {hour} * * *"), zone_name).unwrap();
        let fires = spec.fires_between(t, t + Duration::days(10), 100);
        prop_assert!(fires.len() >= 9 && fires.len() <= 11, "{} fires", fires.len());
        let days: Vec<NaiveDate> = fires.iter().map(|f| f.with_timezone(&tz).date_naive()).collect();
        for w in days.windows(2) {
            prop_assert_eq!(w[1] - w[0], Duration::days(1), "{:?}", fires);
        }
        for f in &fires {
            let local = f.with_timezone(&tz);
            if !after_gap(*f, tz) {
                prop_assert_eq!((local.hour(), local.minute()), (hour, minute));
            }
        }
    }
}
