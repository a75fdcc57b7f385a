//! Unit tests of the checker on hand-made histories and effects.
use super::*;

fn ev(seq: i64, kind: &str, step: Option<&str>, state: &str) -> EventRow {
    EventRow {
        seq,
        kind: kind.into(),
        step: step.map(str::to_owned),
        run_state: state.into(),
    }
}

fn run(state: &str, steps: &[(&str, &str)], last_seq: i64) -> RunRow {
    RunRow {
        id: Uuid::nil(),
        state: state.into(),
        steps: steps
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        last_seq,
    }
}

/// A two-step run whose second step failed and whose first was undone,
/// with a crash in the middle of the first step.
fn compensated_history() -> Vec<EventRow> {
    vec![
        ev(1, "run_started", None, "PENDING"),
        ev(2, "step_started", Some("a"), "RUNNING"),
        ev(3, "step_interrupted", Some("a"), "RUNNING"),
        ev(4, "step_started", Some("a"), "RUNNING"),
        ev(5, "step_succeeded", Some("a"), "RUNNING"),
        ev(6, "step_started", Some("b"), "RUNNING"),
        ev(7, "step_failed", Some("b"), "RUNNING"),
        ev(8, "compensation_started", None, "COMPENSATING"),
        ev(9, "compensation_step_started", Some("a"), "COMPENSATING"),
        ev(10, "step_compensated", Some("a"), "COMPENSATING"),
        ev(11, "run_compensated", None, "COMPENSATED"),
    ]
}

fn effect(step: &str, compensation: bool) -> Effect {
    let key = format!(
        "{}:{step}{}",
        Uuid::nil(),
        if compensation { ":compensate" } else { "" }
    );
    Effect::from_key(&key).unwrap()
}

fn findings(r: RunRow, h: Vec<EventRow>, effects: &[Effect]) -> Findings {
    let mut events = HashMap::new();
    events.insert(Uuid::nil(), h);
    check_loaded(&[r], &events, effects)
}

#[test]
fn a_completed_run_missing_an_observed_effect_is_found() {
    let other = Uuid::from_u128(7);
    let mine = run("COMPLETED", &[("a", "SUCCEEDED"), ("b", "SUCCEEDED")], 0);
    let theirs = RunRow {
        id: other,
        ..run("COMPLETED", &[("a", "SUCCEEDED"), ("b", "SUCCEEDED")], 0)
    };
    let of = |run: Uuid, step: &str| Effect::from_key(&format!("{run}:{step}")).unwrap();
    // b's effects are visible in this source (another run has one), but
    // the nil run's b is not there: applied zero times.
    let effects = [of(Uuid::nil(), "a"), of(other, "a"), of(other, "b")];
    let mut f = Findings::default();
    check_missing(&[mine.clone(), theirs.clone()], &effects, &mut f);
    assert_eq!(f.missing_effects, 1);
    assert!(f.examples[0].contains("effect of b"), "{:?}", f.examples);
    // A step this source never sees is not counted.
    let mut f = Findings::default();
    check_missing(&[mine, theirs], &effects[..2], &mut f);
    assert_eq!(f.missing_effects, 0);
}

#[test]
fn a_clean_history_passes() {
    let r = run("COMPENSATED", &[("a", "COMPENSATED"), ("b", "FAILED")], 11);
    let f = findings(
        r,
        compensated_history(),
        &[effect("a", false), effect("a", true)],
    );
    assert_eq!(f.examples, Vec::<String>::new());
    assert_eq!((f.runs, f.terminal), (1, 1));
    assert_eq!(f.effects_per_key, BTreeMap::from([(1, 2)]));
}

#[test]
fn gaps_bad_transitions_and_effect_violations_are_found() {
    let r = run("COMPENSATED", &[("a", "COMPENSATED"), ("b", "FAILED")], 11);
    let mut h = compensated_history();
    h.remove(4);
    assert_eq!(findings(r.clone(), h, &[]).seq_gaps, 1);

    let mut h = compensated_history();
    h[9].step = Some("b".into()); // b never started compensating
    assert_eq!(findings(r.clone(), h, &[]).bad_transitions, 1);

    let mut h = compensated_history();
    h[10].run_state = "COMPLETED".into(); // COMPENSATING -> COMPLETED
    assert_eq!(findings(r.clone(), h, &[]).bad_transitions, 1);

    let f = findings(
        r.clone(),
        compensated_history(),
        &[
            effect("a", true),
            effect("a", false),
            effect("a", false),
            effect("b", false),
        ],
    );
    assert_eq!(f.compensation_without_forward, 1);
    assert_eq!(f.effects_per_key.get(&2), Some(&1), "a applied twice");
    assert_eq!(f.leaked_effects, 1, "b was never undone");

    let f = findings(
        r,
        compensated_history(),
        &[
            effect("a", false),
            effect("b", false),
            effect("a", true),
            effect("b", true),
            effect("b", true),
        ],
    );
    assert_eq!(f.duplicate_compensations, 1);
    assert_eq!(f.out_of_order_compensations, 1);
}

#[test]
fn a_run_that_is_not_terminal_is_counted() {
    let r = run("RUNNING", &[("a", "RUNNING"), ("b", "PENDING")], 2);
    let f = findings(r, compensated_history()[..2].to_vec(), &[]);
    assert_eq!((f.runs, f.terminal), (1, 0));
    assert_eq!(f.bad_transitions, 0);
}

#[test]
fn keys_parse() {
    let id = Uuid::now_v7();
    let e = Effect::from_key(&format!("{id}:activate_onu:compensate")).unwrap();
    assert_eq!(
        (e.run, e.step.as_str(), e.compensation),
        (id, "activate_onu", true)
    );
    assert!(Effect::from_key("no-run:step").is_none());
}

#[test]
fn waits_are_allowed_transitions() {
    // a: "not ready", asked again, done; b: a signal that timed out, then
    // compensation of a.
    let h = vec![
        ev(1, "run_started", None, "PENDING"),
        ev(2, "step_started", Some("a"), "RUNNING"),
        ev(3, "step_waiting", Some("a"), "RUNNING"),
        ev(4, "step_woken", Some("a"), "RUNNING"),
        ev(5, "step_succeeded", Some("a"), "RUNNING"),
        ev(6, "step_waiting", Some("b"), "RUNNING"),
        ev(7, "signal_received", None, "RUNNING"),
        ev(8, "wait_timed_out", Some("b"), "RUNNING"),
        ev(9, "step_failed", Some("b"), "RUNNING"),
        ev(10, "compensation_started", None, "COMPENSATING"),
        ev(11, "compensation_step_started", Some("a"), "COMPENSATING"),
        ev(12, "step_compensated", Some("a"), "COMPENSATING"),
        ev(13, "run_compensated", None, "COMPENSATED"),
    ];
    let r = run("COMPENSATED", &[("a", "COMPENSATED"), ("b", "FAILED")], 13);
    let f = findings(r, h, &[effect("a", false), effect("a", true)]);
    assert_eq!(f.bad_transitions, 0, "{:?}", f.examples);

    // A signal step woken by its signal.
    let h = vec![
        ev(1, "run_started", None, "PENDING"),
        ev(2, "step_waiting", Some("a"), "RUNNING"),
        ev(3, "signal_received", None, "RUNNING"),
        ev(4, "step_woken", Some("a"), "RUNNING"),
        ev(5, "step_succeeded", Some("a"), "RUNNING"),
        ev(6, "run_completed", None, "COMPLETED"),
    ];
    let f = findings(run("COMPLETED", &[("a", "SUCCEEDED")], 6), h, &[]);
    assert_eq!(f.bad_transitions, 0, "{:?}", f.examples);
}
