//! The CLI against a real `sagaflow dev` process: start, watch, get, a
//! forced failure and a retry, all checked from the JSON output; and the
//! exit codes (0 ok, 1 refused, 2 usage).
#![allow(clippy::unwrap_used)]

mod common;

use common::DevProcess;

#[test]
fn cli_drives_a_run_through_failure_and_retry() {
    let dev = DevProcess::start();

    let defs = dev.json("dev-crm", &["definitions"]);
    assert!(
        defs.as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == "demo_saga")
    );

    // A run that completes; watch streams it to the end, one JSON per line.
    let started = dev.json(
        "dev-crm",
        &[
            "workflow",
            "start",
            "demo_saga",
            "--input",
            r#"{"demo": {"sleep_ms": 20}}"#,
            "--idempotency-key",
            "order-1",
        ],
    );
    assert_eq!(started["created"], true);
    let id = started["workflow"]["id"].as_str().unwrap().to_owned();
    let (code, out, err) = dev.cli("dev-crm", &["workflow", "watch", &id, "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.first().unwrap()["type"], "run_started");
    assert_eq!(events.last().unwrap()["type"], "run_completed");
    assert_eq!(events.last().unwrap()["workflow_state"], "COMPLETED");
    let w = dev.json("dev-crm", &["workflow", "get", &id]);
    assert_eq!(w["state"], "COMPLETED");
    assert_eq!(w["steps"].as_array().unwrap().len(), 5);
    let again = dev.json(
        "dev-crm",
        &[
            "workflow",
            "start",
            "demo_saga",
            "--input",
            r#"{"demo": {"sleep_ms": 20}}"#,
            "--idempotency-key",
            "order-1",
        ],
    );
    assert_eq!(
        (again["created"].as_bool(), again["workflow"]["id"].as_str()),
        (Some(false), Some(id.as_str()))
    );

    // A forced failure, then an operator's retry with a corrected input.
    let failing = dev.json(
        "dev-crm",
        &[
            "workflow",
            "start",
            "demo_saga",
            "--input",
            r#"{"demo": {"fail_step": "configure"}}"#,
        ],
    );
    let fid = failing["workflow"]["id"].as_str().unwrap().to_owned();
    let failed = dev.wait_state(&fid, "FAILED");
    assert_eq!(failed["current_step"], "configure");
    assert!(failed["error"].as_str().unwrap().contains("configure"));
    let (code, _, err) = dev.cli("dev-crm", &["workflow", "retry", &fid]);
    assert_eq!(code, 1, "a crm token is refused: {err}");
    assert!(err.contains("PERMISSION_DENIED"), "{err}");
    let retried = dev.json(
        "dev-operator",
        &[
            "workflow",
            "retry",
            &fid,
            "--patch",
            r#"{"demo": {}}"#,
            "--reason",
            "input corrected",
        ],
    );
    assert_ne!(retried["state"], "FAILED");
    dev.wait_state(&fid, "COMPLETED");
    let history = dev.json("dev-crm", &["workflow", "history", &fid]);
    let op = history
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "operator_retry")
        .unwrap();
    assert_eq!(
        (op["actor"].as_str(), op["message"].as_str()),
        (Some("dev-operator"), Some("input corrected"))
    );
    let list = dev.json("dev-crm", &["workflow", "list", "--state", "COMPLETED"]);
    assert_eq!(list["workflows"].as_array().unwrap().len(), 2);

    // Exit codes.
    let (code, _, err) = dev.cli(
        "dev-crm",
        &["workflow", "get", "0190a5d2-ac96-7d4b-bcce-b302099a8057"],
    );
    assert_eq!(code, 1, "NOT_FOUND is a refusal: {err}");
    let (code, _, _) = dev.cli(
        "dev-crm",
        &["workflow", "start", "demo_saga", "--input", "not json"],
    );
    assert_eq!(code, 2, "bad JSON on the command line is a usage error");
    let (code, _, _) = dev.cli("dev-crm", &["workflow", "frobnicate"]);
    assert_eq!(code, 2);
    // The table output is for people, but says the same thing.
    let (code, out, _) = dev.cli("dev-crm", &["workflow", "get", &fid]);
    assert_eq!(code, 0);
    assert!(
        out.contains("COMPLETED") && out.contains("configure"),
        "{out}"
    );
}

#[test]
fn cli_skips_a_failed_step_with_its_output_and_the_run_completes() {
    let dev = DevProcess::start();
    let failing = dev.json(
        "dev-crm",
        &[
            "workflow",
            "start",
            "demo_saga",
            "--input",
            r#"{"demo": {"fail_step": "configure"}}"#,
        ],
    );
    let id = failing["workflow"]["id"].as_str().unwrap().to_owned();
    dev.wait_state(&id, "FAILED");

    let skipped = dev.json(
        "dev-operator",
        &[
            "workflow",
            "skip",
            &id,
            "--step",
            "configure",
            "--step-output",
            r#"{"vlan": 120}"#,
            "--reason",
            "configured by hand",
        ],
    );
    assert_ne!(skipped["state"], "FAILED");
    let done = dev.wait_state(&id, "COMPLETED");
    let configure = done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "configure")
        .unwrap();
    assert_eq!(configure["state"], "SKIPPED");
    assert_eq!(configure["output"]["vlan"], 120);
    assert_eq!(done["context"]["vlan"], 120);
    let history = dev.json("dev-crm", &["workflow", "history", &id]);
    let op = history
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "operator_skip")
        .unwrap();
    assert_eq!(
        (
            op["actor"].as_str(),
            op["message"].as_str(),
            op["step"].as_str()
        ),
        (
            Some("dev-operator"),
            Some("configured by hand"),
            Some("configure")
        )
    );
}

#[test]
fn cli_shows_a_waiting_run_and_signals_it() {
    let dev = DevProcess::start();
    let started = dev.json("dev-crm", &["workflow", "start", "demo_wait"]);
    let id = started["workflow"]["id"].as_str().unwrap().to_owned();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let w = dev.json("dev-crm", &["workflow", "get", &id]);
        if w["steps"][1]["state"] == "WAITING" {
            assert_eq!(w["steps"][1]["waiting_for"], "approve");
            assert!(w["steps"][1]["wake_at"].is_string(), "{w}");
            break;
        }
        assert!(std::time::Instant::now() < end, "never waited: {w}");
        std::thread::sleep(std::time::Duration::from_millis(50)); // poll interval
    }
    let (code, table, err) = dev.cli("dev-crm", &["workflow", "get", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(
        table.contains("waiting:   approve for signal approve until "),
        "{table}"
    );

    let answer = dev.json(
        "dev-crm",
        &[
            "workflow",
            "signal",
            &id,
            "approve",
            "--payload",
            r#"{"by": "cli"}"#,
            "--key",
            "k1",
        ],
    );
    assert_eq!(answer["delivered"], true, "{answer}");
    let done = dev.wait_state(&id, "COMPLETED");
    assert_eq!(done["context"]["approval"]["by"], "cli");
    let (code, _, err) = dev.cli(
        "dev-crm",
        &["workflow", "signal", &id, "approve", "--payload", "[1]"],
    );
    assert_eq!(
        code, 2,
        "a payload that is not an object is a usage error: {err}"
    );
    let (code, _, err) = dev.cli("dev-crm", &["workflow", "signal", &id, "approve"]);
    assert_eq!(code, 1, "a finished run refuses signals: {err}");
    assert!(err.contains("COMPLETED"), "{err}");
}

/// A default schedules' file that does not check stops the start, naming
/// the file, the entry and the field.
#[test]
fn a_bad_schedules_file_stops_the_start_saying_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let workflows = dir.path().join("workflows");
    std::fs::create_dir(&workflows).unwrap();
    std::fs::write(
        workflows.join("schedules.toml"),
        "[[schedule]]\nname = \"nightly\"\nworkflow = \"report\"\ncron = \"0 25 * * *\"\n",
    )
    .unwrap();
    let db = format!("sqlite://{}", dir.path().join("dev.db").display());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sagaflow"))
        .args(["dev", "--database-url", &db, "--workflows"])
        .arg(&workflows)
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Its stderr ends when it exits; a start that goes on fails the test.
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
        let _ = tx.send(err);
    });
    let Ok(err) = rx.recv_timeout(std::time::Duration::from_secs(60)) else {
        child.kill().unwrap();
        panic!("sagaflow dev started with a bad schedules.toml");
    };
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(
        err.contains(
            "schedules.toml: schedule 1 (\"nightly\"), field `cron`: invalid cron expression"
        ),
        "{err}"
    );
}
