//! Tests of definition parsing, validation and normalization.

use super::*;
use crate::handler::{Registry, StepError};
use crate::run::state::OnFailure;

fn registry() -> Registry {
    let mut r = Registry::new();
    for h in ["a.do", "a.undo"] {
        r.register_fn(h, |_| async { Ok::<_, StepError>(Default::default()) });
    }
    r
}

const GOOD: &str = r#"
name = "demo"
version = 1
on_failure = "pause"
concurrency = { key = "/subscriber_id", policy = "reject" }
[input_schema]
type = "object"
required = ["subscriber_id"]
[defaults.retry]
max_attempts = 4
[[steps]]
name = "one"
handler = "a.do"
compensation = "a.undo"
[[steps]]
name = "two"
handler = "a.do"
required = false
when = { path = "/enable_ipv6", equals = true }
retry = { max_attempts = 2, initial_interval_ms = 10, max_interval_ms = 10 }
"#;

#[test]
fn a_good_definition_loads_and_is_normalized() {
    let mut defs = Definitions::default();
    let def = parse(GOOD, "demo.toml").unwrap();
    let loaded = defs.add(def, "demo.toml", &registry()).unwrap();
    let d = &loaded.definition;
    assert_eq!(d.on_failure, OnFailure::Pause);
    assert_eq!(d.steps[0].retry().max_attempts, 4, "inherits defaults");
    assert_eq!(d.steps[1].retry().max_attempts, 2);
    assert!(!d.steps[1].required);
    assert!(loaded.id.starts_with("demo@v1#"));
    assert_eq!(defs.resolve("demo", 0).unwrap().id, loaded.id);
    assert!(defs.resolve("demo", 2).is_none());
}

fn refused(text: &str) -> DefinitionError {
    let r = registry();
    match parse(text, "w.toml") {
        Err(e) => e,
        Ok(d) => validate(&d, "w.toml", &r).expect_err("must be refused"),
    }
}

#[test]
fn unknown_handler_names_file_step_and_fix() {
    let e = refused(&GOOD.replace(
        "handler = \"a.do\"\nrequired",
        "handler = \"a.dox\"\nrequired",
    ));
    assert_eq!(e.file, "w.toml");
    assert_eq!(e.step.as_deref(), Some("two"));
    assert!(e.to_string().contains("\"a.dox\" is not registered"), "{e}");
    assert!(e.to_string().contains("a.do, a.undo"), "{e}");
}

#[test]
fn duplicate_step_is_refused() {
    let e = refused(&GOOD.replace("name = \"two\"", "name = \"one\""));
    assert!(
        e.to_string().contains("step \"one\": duplicate step name"),
        "{e}"
    );
}

#[test]
fn malformed_policies_are_refused() {
    let e = refused(&GOOD.replace("max_attempts = 2,", "max_attempts = 0,"));
    assert!(
        e.to_string().contains("step \"two\": retry: max_attempts"),
        "{e}"
    );
    let e = refused(&GOOD.replace("max_interval_ms = 10 }", "max_interval_ms = 1 }"));
    assert!(e.to_string().contains("max_interval_ms"), "{e}");
    let e = refused(&GOOD.replace("max_attempts = 2,", "max_atempts = 2,"));
    assert!(e.to_string().contains("max_atempts"), "typo is named: {e}");
    let e = refused(&GOOD.replace("on_failure = \"pause\"", "on_failure = \"explode\""));
    assert!(e.to_string().contains("w.toml"), "{e}");
}

#[test]
fn partial_step_policies_inherit_the_workflow_defaults() {
    let text = GOOD.replace(
        "[defaults.retry]\nmax_attempts = 4",
        "[defaults.retry]\nmax_attempts = 4\ninitial_interval_ms = 7\nmax_interval_ms = 50",
    );
    let def = parse(
        &text.replace(
            "retry = { max_attempts = 2, initial_interval_ms = 10, max_interval_ms = 10 }",
            "retry = { max_attempts = 2 }",
        ),
        "w.toml",
    )
    .unwrap();
    let p = def.steps[1].retry.as_ref().unwrap();
    assert_eq!(
        (p.max_attempts, p.initial_interval_ms, p.max_interval_ms),
        (2, 7, 50)
    );
}

#[test]
fn conditions() {
    let ctx = serde_json::json!({"a": true, "b": 0, "c": "x", "n": null});
    let c = |path: &str| Condition {
        path: path.into(),
        equals: None,
        not_equals: None,
        exists: None,
    };
    assert!(c("/a").holds(&ctx));
    assert!(!c("/b").holds(&ctx));
    assert!(c("/c").holds(&ctx));
    assert!(!c("/n").holds(&ctx));
    assert!(!c("/missing").holds(&ctx));
    let eq = Condition {
        equals: Some(serde_json::json!("x")),
        ..c("/c")
    };
    assert!(eq.holds(&ctx));
    let ex = Condition {
        exists: Some(false),
        ..c("/missing")
    };
    assert!(ex.holds(&ctx));
}

#[test]
fn waiting_steps_load_and_keep_old_snapshots_unchanged() {
    let text = r#"
name = "waits"
version = 1
deadline_ms = 60000
[[steps]]
name = "nap"
kind = "sleep"
duration_ms = 1000
[[steps]]
name = "approve"
kind = "signal"
signal = "approve"
output_path = "/approval"
wait_timeout_ms = 5000
[[steps]]
name = "poll"
handler = "a.do"
wait_timeout_ms = 5000
"#;
    let mut defs = Definitions::default();
    let loaded = defs
        .add(parse(text, "w.toml").unwrap(), "w.toml", &registry())
        .unwrap();
    let d = &loaded.definition;
    assert_eq!(d.deadline_ms, Some(60000));
    assert_eq!(d.steps[0].kind, StepKind::Sleep);
    assert_eq!(d.steps[1].signal.as_deref(), Some("approve"));
    assert_eq!(d.steps[2].kind, StepKind::Task);
    // A task's snapshot names no kind and no wait keys: definitions written
    // before steps could wait keep their snapshot id.
    let good = parse(GOOD, "demo.toml").unwrap();
    let snap = LoadedDefinition::new(good, "demo.toml").snapshot;
    let text = snap.to_string();
    for key in ["kind", "deadline_ms", "wait_timeout_ms", "signal", "until"] {
        assert!(!text.contains(&format!("\"{key}\"")), "{key} in {text}");
    }
}

#[test]
fn waiting_steps_are_checked_by_kind() {
    let head = "name = \"w\"\nversion = 1\n[[steps]]\nname = \"s\"\n";
    let cases = [
        ("kind = \"task\"", "a task step needs a handler"),
        (
            "kind = \"sleep\"",
            "a sleep step takes exactly one of duration_ms and until",
        ),
        (
            "kind = \"sleep\"\nduration_ms = 5\nuntil = \"/t\"",
            "a sleep step takes exactly one of duration_ms and until",
        ),
        (
            "kind = \"sleep\"\nduration_ms = 0",
            "duration_ms = 0 must be between 1 and",
        ),
        (
            "kind = \"sleep\"\nuntil = \"t\"",
            "until \"t\" must be a JSON pointer",
        ),
        (
            "kind = \"sleep\"\nhandler = \"a.do\"\nduration_ms = 5",
            "handler does not apply to a sleep step",
        ),
        (
            "kind = \"signal\"",
            "a signal step needs signal = \"<name>\"",
        ),
        (
            "kind = \"signal\"\nsignal = \"Go!\"",
            "signal \"Go!\" must be lowercase",
        ),
        (
            "kind = \"signal\"\nsignal = \"go\"\noutput_path = \"/a/b\"",
            "output_path \"/a/b\" must name one top-level key",
        ),
        (
            "kind = \"signal\"\nsignal = \"go\"\nduration_ms = 5",
            "duration_ms does not apply to a signal step",
        ),
        (
            "handler = \"a.do\"\nsignal = \"go\"",
            "signal does not apply to a task step",
        ),
        (
            "handler = \"a.do\"\nwait_timeout_ms = 99999999999999",
            "wait_timeout_ms = 99999999999999 must be between",
        ),
        (
            "kind = \"wait\"\nhandler = \"a.do\"",
            "not a valid workflow definition",
        ),
    ];
    for (step, want) in cases {
        let e = refused(&format!("{head}{step}\n"));
        assert!(e.to_string().contains(want), "{step:?}: {e}");
        if !want.starts_with("not a valid") {
            assert!(e.to_string().starts_with("w.toml: step \"s\": "), "{e}");
        }
    }
    let e = refused(
        "name = \"w\"\nversion = 1\ndeadline_ms = 0\n[[steps]]\nname = \"s\"\nhandler = \"a.do\"\n",
    );
    assert!(
        e.to_string().contains("deadline_ms = 0 must be between"),
        "{e}"
    );
}
