//! Recovery: two engine processes share the database; one is killed with
//! runs in flight and the other's takeover is timed.

use std::time::{Duration, Instant};

use anyhow::Context;
use sagaflow_engine::engine::StartRequest;
use sagaflow_engine::ids::{RunId, TenantId};
use sagaflow_engine::state::RunState;
use serde_json::{Value, json};

use crate::Options;
use crate::setup::{Setup, all_runs, poll_until, sleep_definition, summary};

/// Kills a child process when dropped, however the scenario ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_engine(
    url: &str,
    dir: &std::path::Path,
    owner: &str,
    lease_ms: u64,
    max_in_flight: usize,
) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("locating the sagaflow binary")?;
    let child = std::process::Command::new(exe)
        .args(["serve", "--database-url", url, "--workflows"])
        .arg(dir)
        .args([
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--poll-ms",
            "100",
        ])
        .args(["--owner", owner])
        .args(["--lease-ms", &lease_ms.to_string()])
        .args(["--max-in-flight", &max_in_flight.to_string()])
        // The bench's engines talk to no NAS; serve refuses the default
        // secret, so each bench run gets one of its own.
        .env(
            "SAGAFLOW_RADIUS_SECRET",
            format!("bench-{}", uuid::Uuid::now_v7().simple()),
        )
        // Nor to an ONU, CPE or billing system: the simulators, asked for.
        .env("SAGAFLOW_SIMULATORS", "true")
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .context("starting an engine process")?;
    Ok(Child(child))
}

pub(crate) async fn recovery(
    s: &Setup,
    _args: &Options,
    runs: usize,
    lease_ms: u64,
    step_ms: u64,
) -> anyhow::Result<Value> {
    anyhow::ensure!(
        s.backend == "postgres",
        "the recovery scenario needs a postgres:// database (two processes share it)"
    );
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("bench_sleep.v1.toml"), sleep_definition())?;
    let tenant = TenantId::new(format!("bench-{}", RunId::new()));
    let mut a = spawn_engine(&s.url, dir.path(), "bench-a", lease_ms, runs + 64)?;
    for i in 0..runs {
        let req = StartRequest {
            tenant_id: tenant.clone(),
            ..StartRequest::new(
                "",
                "bench_sleep",
                json!({"i": i, "demo": {"sleep_ms": step_ms}}),
            )
        };
        s.engine.start(req).await?;
    }
    poll_until(
        Duration::from_secs(60),
        "engine A holds every run",
        || async {
            let rs = all_runs(s, &tenant).await?;
            Ok(rs.iter().all(|r| {
                r.state == RunState::Running && r.lease_owner.as_deref() == Some("bench-a")
            }))
        },
    )
    .await?;
    let _b = spawn_engine(&s.url, dir.path(), "bench-b", lease_ms, runs + 64)?;
    a.0.kill().context("killing engine A")?;
    let _ = a.0.wait();
    let killed_at = chrono::Utc::now();
    let killed = Instant::now();
    poll_until(
        Duration::from_millis(lease_ms * 3 + 30_000),
        "engine B has resumed every run",
        || async {
            let rs = all_runs(s, &tenant).await?;
            Ok(rs
                .iter()
                .all(|r| r.lease_owner.as_deref() == Some("bench-b") || r.state.is_terminal()))
        },
    )
    .await?;
    let all_resumed_s = killed.elapsed().as_secs_f64();
    // Per run: when engine B first wrote to it (the `step_interrupted`
    // event of the attempt engine A was killed in). B's claim names it the
    // holder a moment before that checkpoint is written: wait for them all.
    let mut resumed = Vec::with_capacity(runs);
    let deadline = Instant::now() + Duration::from_secs(30);
    for r in all_runs(s, &tenant).await? {
        loop {
            let events = s.engine.events(&tenant, r.id, 0).await?;
            if let Some(e) = events.iter().find(|e| e.at > killed_at) {
                resumed.push((e.at - killed_at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "run {} has no event from engine B",
                r.id
            );
            tokio::time::sleep(Duration::from_millis(20)).await; // poll interval
        }
    }
    let n = resumed.len();
    let target_s = lease_ms as f64 / 1000.0 + 1.0;
    let figures = summary(resumed);
    let max_s = figures["max_ms"].as_f64().unwrap_or(0.0) / 1000.0;
    Ok(json!({
        "scenario": "recovery",
        "backend": "postgres",
        "runs_in_flight_at_kill": runs,
        "runs_resumed": n,
        "lease_ms": lease_ms,
        "resumed_after_kill": figures,
        "all_resumed_s": all_resumed_s,
        "target_s": target_s,
        "within_target": max_s <= target_s,
    }))
}
