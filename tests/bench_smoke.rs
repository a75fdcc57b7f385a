//! `sagaflow bench` at tiny sizes: each scenario runs and prints well-formed
//! figures. No timing is asserted: speed is measured by the harness, not by
//! tests.
#![allow(clippy::unwrap_used)]

mod common;

use serde_json::Value;

fn bench(url: Option<&str>, args: &[&str]) -> Value {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sagaflow"));
    cmd.arg("bench").args(["-o", "json"]);
    if let Some(u) = url {
        cmd.args(["--database-url", u, "--connections", "4"]);
    }
    let out = cmd.args(args).env("RUST_LOG", "warn").output().unwrap();
    assert!(
        out.status.success(),
        "bench {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bench {args:?} printed no JSON: {e}"))
}

fn positive(v: &Value, key: &str) -> f64 {
    let n = v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"));
    assert!(n.is_finite() && n > 0.0, "{key} = {n}");
    n
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn every_scenario_prints_its_figures(pool: sqlx::PgPool) {
    let url = common::database_url(&pool);
    let t = bench(
        Some(&url),
        &["throughput", "--runs", "30", "--concurrency", "8"],
    );
    assert_eq!(
        (
            t["scenario"].as_str(),
            t["backend"].as_str(),
            t["runs"].as_u64()
        ),
        (Some("throughput"), Some("postgres"), Some(30))
    );
    for k in [
        "sagas_per_s",
        "step_checkpoints_per_s",
        "e2e_p50_ms",
        "e2e_p99_ms",
        "elapsed_s",
    ] {
        positive(&t, k);
    }
    assert!(t["e2e_p99_ms"].as_f64() >= t["e2e_p50_ms"].as_f64());
    // The engine's memory idle and with runs in flight.
    positive(&t, "rss_mib_idle");
    assert!(t["rss_mib_in_flight"].as_f64() >= t["rss_mib_idle"].as_f64());
    assert!(t["rss_kib_per_in_flight_run"].as_f64() >= Some(0.0));

    let l = bench(Some(&url), &["latency", "--runs", "5", "--warmup", "1"]);
    for k in ["e2e_p50_ms", "e2e_p99_ms", "step_p50_ms", "step_p99_ms"] {
        positive(&l, k);
    }

    let c = bench(
        Some(&url),
        &[
            "ceiling",
            "--runs",
            "20",
            "--concurrency",
            "4",
            "--seconds",
            "1",
        ],
    );
    for k in [
        "sagaflow_step_checkpoints_per_s",
        "raw_single_statement_per_s",
        "raw_10x10_per_tx_per_s",
        "ratio_to_single",
        "ratio_to_batched",
    ] {
        positive(&c, k);
    }

    // Open-loop starts over gRPC at a given rate.
    let st = bench(Some(&url), &["start", "--rate", "40", "--seconds", "1"]);
    assert_eq!(st["calls"].as_u64(), Some(40), "{st}");
    assert_eq!(st["ok"].as_u64(), Some(40), "every start answered OK: {st}");
    assert_eq!(st["errors"], serde_json::json!({}));
    for k in ["p50_ms", "p99_ms", "p999_ms"] {
        positive(&st["latency"], k);
    }

    // Finished runs seeded in bulk; reads and the claim timed, plans shown.
    let sc = bench(Some(&url), &["scale", "--runs", "2000", "--queries", "5"]);
    assert_eq!(sc["runs_seeded"].as_u64(), Some(2000));
    for k in [
        "get_workflow",
        "list_all",
        "list_next_page",
        "list_by_workflow",
        "list_by_state",
        "list_by_two_states",
        "list_by_concurrency_key",
        "list_by_created_window",
        "claim_before_seeding",
        "claim_after_seeding",
    ] {
        assert_eq!(sc[k]["n"].as_u64(), Some(5), "{k}: {sc}");
        positive(&sc[k], "p99_ms");
    }
    for k in ["get_workflow", "list_by_state", "claim"] {
        let plan = sc["plans"][k].as_str().unwrap_or_default();
        assert!(plan.contains("Index"), "{k} plan: {plan}");
    }

    // Two engine processes; one is killed with runs in flight.
    let r = bench(
        Some(&url),
        &[
            "recovery",
            "--runs",
            "6",
            "--lease-ms",
            "1000",
            "--step-ms",
            "1500",
        ],
    );
    assert_eq!(r["runs_resumed"].as_u64(), Some(6), "{r}");
    positive(&r["resumed_after_kill"], "p50_ms");

    // The embedded store too.
    let s = bench(None, &["throughput", "--runs", "10", "--concurrency", "4"]);
    assert_eq!(s["backend"], "sqlite");
    positive(&s, "sagas_per_s");
}

/// Runs waiting at once: the figures are there, on both backends.
#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn the_waits_scenario_prints_its_figures(pool: sqlx::PgPool) {
    let url = common::database_url(&pool);
    for (url, backend) in [(Some(url.as_str()), "postgres"), (None, "sqlite")] {
        let w = bench(url, &["waits", "--runs", "20", "--wake-in-s", "10"]);
        assert_eq!(
            (
                w["scenario"].as_str(),
                w["backend"].as_str(),
                w["runs"].as_u64()
            ),
            (Some("waits"), Some(backend), Some(20)),
            "{w}"
        );
        for k in [
            "rss_mib_none_waiting",
            "rss_mib_timers_waiting",
            "rss_mib_signals_waiting",
            "signals_send_s",
        ] {
            positive(&w, k);
        }
        for k in [
            "timers_all_woken_after_due_s",
            "signals_all_completed_s",
            "db_connections_timers_waiting",
        ] {
            assert!(w[k].as_f64().is_some_and(|n| n >= 0.0), "{k}: {w}");
        }
    }
}
