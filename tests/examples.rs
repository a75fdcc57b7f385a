//! The examples run against a real `sagaflow dev`.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use common::DevProcess;

fn example(name: &str) -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_sagaflow"));
    let dir = bin.parent().unwrap().join("examples");
    dir.join(name)
}

#[test]
fn crm_client_and_operator_script_work_against_dev() {
    let dev = DevProcess::start();
    // The CRM client starts a run and follows it to the end.
    let out = std::process::Command::new(example("crm_client"))
        .args(["demo_saga", "order-7", r#"{"demo": {"sleep_ms": 10}}"#])
        .env("SAGAFLOW_SERVER", &dev.server)
        .output()
        .expect("the crm_client example is built by `cargo test`");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("order order-7: run"), "{stdout}");
    assert!(
        stdout.contains("run_completed") && stdout.contains("WORKFLOW_STATE_COMPLETED"),
        "{stdout}"
    );

    // A failed run, repaired by the operator script.
    let failing = dev.json(
        "dev-crm",
        &[
            "workflow",
            "start",
            "demo_saga",
            "--input",
            r#"{"demo": {"fail_step": "bill"}}"#,
        ],
    );
    let id = failing["workflow"]["id"].as_str().unwrap().to_owned();
    dev.wait_state(&id, "FAILED");
    let out =
        std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/operator.sh"))
            .env("SAGAFLOW", env!("CARGO_BIN_EXE_sagaflow"))
            .env("SAGAFLOW_SERVER", &dev.server)
            .env("PATCH", r#"{"demo": {}}"#)
            .output()
            .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("== run {id}")) && stdout.contains("retried"),
        "{stdout}"
    );
    dev.wait_state(&id, "COMPLETED");
    let out =
        std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/operator.sh"))
            .env("SAGAFLOW", env!("CARGO_BIN_EXE_sagaflow"))
            .env("SAGAFLOW_SERVER", &dev.server)
            .output()
            .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("no FAILED runs"));
}

#[test]
fn curl_example_provisions_polls_and_retries_over_http() {
    let dev = DevProcess::start();
    let out = std::process::Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/curl/provision.sh"
    ))
    .env("SAGAFLOW_HTTP", &dev.http)
    .env("ORDER", "order-42")
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("order order-42: run"), "{stdout}");
    assert!(stdout.contains("created=false, same run"), "{stdout}");
    assert!(stdout.contains(": COMPLETED"), "{stdout}");
    assert!(stdout.contains("FAILED at bill"), "{stdout}");
    assert!(stdout.contains("retried: COMPLETED"), "{stdout}");
}
