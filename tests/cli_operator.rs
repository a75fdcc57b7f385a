//! The operator's CLI against a real `sagaflow dev` process: `workflow list`
//! by failed step and idempotency key, `workflow bulk … --dry-run` (the
//! count and the ids, nothing changed), `workflow rewind`, `workflow watch`
//! and `workflow start --wait` exiting by the run's outcome (0 COMPLETED, 3
//! otherwise).
#![allow(clippy::unwrap_used)]

mod common;

use common::DevProcess;

#[test]
fn cli_finds_failed_runs_bulk_dry_runs_and_rewinds() {
    let dev = DevProcess::start();
    let failing = r#"{"demo": {"fail_step": "configure"}}"#;

    // start --wait: a run that stops FAILED exits 3, with the run printed.
    let (code, out, err) = dev.cli(
        "dev-crm",
        &[
            "workflow",
            "start",
            "demo_saga",
            "--input",
            failing,
            "--idempotency-key",
            "order-7",
            "--wait",
            "-o",
            "json",
        ],
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("FAILED"), "{err}");
    let started: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(started["workflow"]["state"], "FAILED");
    let id = started["workflow"]["id"].as_str().unwrap().to_owned();

    let listed = dev.json(
        "dev-crm",
        &[
            "workflow",
            "list",
            "--failed-step",
            "configure",
            "--idempotency-key",
            "order-7",
            "--state",
            "failed",
            "--created-after",
            "2020-01-01T00:00:00Z",
        ],
    );
    let runs = listed["workflows"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{listed}");
    assert_eq!(runs[0]["id"], id.as_str());
    assert!(
        runs[0]["input"].is_object(),
        "-o json asks for the FULL view"
    );

    // A dry run: the count and the ids; the run's history is unchanged.
    let before = dev.json("dev-crm", &["workflow", "history", &id]);
    let dry = dev.json(
        "dev-operator",
        &[
            "workflow",
            "bulk",
            "retry",
            "--failed-step",
            "configure",
            "--dry-run",
        ],
    );
    assert_eq!(dry["matched"], 1, "{dry}");
    assert_eq!(dry["workflow_ids"][0], id.as_str());
    assert_eq!(dry["applied"], 0);
    assert_eq!(dev.json("dev-crm", &["workflow", "history", &id]), before);
    // Without a terminal, acting needs --yes.
    let (code, _, err) = dev.cli(
        "dev-operator",
        &["workflow", "bulk", "retry", "--failed-step", "configure"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--yes"), "{err}");
    // Bad filter flags are usage errors.
    let (code, _, err) = dev.cli(
        "dev-crm",
        &["workflow", "list", "--created-before", "yesterday"],
    );
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = dev.cli("dev-crm", &["workflow", "list", "--search", "x"]);
    assert_eq!(code, 2, "{err}");

    // Rewind to reserve with the failure patched away; watch exits 0.
    let (code, _, err) = dev.cli(
        "dev-crm",
        &[
            "workflow",
            "rewind",
            &id,
            "--to-step",
            "reserve",
            "--reason",
            "r",
        ],
    );
    assert_eq!(code, 1, "a crm token may not rewind: {err}");
    let w = dev.json(
        "dev-operator",
        &[
            "workflow",
            "rewind",
            &id,
            "--to-step",
            "reserve",
            "--reason",
            "ticket 7",
            "--patch",
            r#"{"demo": {}}"#,
        ],
    );
    assert_ne!(w["state"], "FAILED", "{w}");
    let (code, out, err) = dev.cli("dev-crm", &["workflow", "watch", &id, "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("operator_rewind"), "{out}");
    assert!(out.contains("run_rewound"), "{out}");

    // A run that ends COMPENSATED: watch exits 3.
    let c = dev.json(
        "dev-crm",
        &["workflow", "start", "demo_saga", "--input", failing],
    );
    let cid = c["workflow"]["id"].as_str().unwrap().to_owned();
    dev.wait_state(&cid, "FAILED");
    dev.json(
        "dev-operator",
        &["workflow", "compensate", &cid, "--reason", "undo"],
    );
    let (code, _, err) = dev.cli("dev-crm", &["workflow", "watch", &cid]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("COMPENSATED"), "{err}");
}
