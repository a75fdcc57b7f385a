//! Scenario 5, adapter faults: provisioning sagas while the ONU, CPE and
//! billing simulators answer 30 % of requests 503, hold 10 % past the
//! adapters' timeout, answer slowly, lose 10 % of their acknowledgements
//! (effect applied, then 504), answer 5 % with a 500 after applying them,
//! and reset 5 % of connections after applying the request, without an
//! answer. Retries must follow the workflow's policy and every effect must
//! stay once per idempotency key; runs end in the policy's terminal states
//! with nothing left behind by compensated runs (a step that gave up after
//! an uncertain answer is compensated, and its undo changes nothing unless
//! its own request took effect).

use std::collections::BTreeMap;
use std::time::Duration;

use sagaflow_steps::sim::{Fault, SimConfig, Simulators};

use super::{Stage, domain, subscriber};
use crate::client::{Api, start_all};
use crate::process::{Engine, EngineConfig, TENANT};
use crate::{ChaosError, Options, Report, Result, check, db, workflows};

const TAG: &str = "faults";
/// The adapters' request timeout; stalled requests are held longer.
const TIMEOUT_MS: u64 = 300;

pub async fn run(opts: &Options) -> Result<Report> {
    let n = opts.counts.fault_runs;
    let st = Stage::new(opts, "faults", &workflows::provision()).await?;
    let mut report = Report::new("faults");
    let fault = Fault {
        failure_rate: 0.3,
        latency_ms: 20,
        stall_rate: 0.1,
        stall_ms: 2 * TIMEOUT_MS,
        lost_ack_rate: 0.1,
        applied_then_500_rate: 0.05,
        applied_then_reset_rate: 0.05,
    };
    let sims = Simulators::start(SimConfig {
        default_fault: fault,
        ..SimConfig::default()
    })
    .await
    .map_err(ChaosError::io("simulators"))?;
    report.fact(
        "faults on every simulator operation",
        format!(
            "503 {:.0} %, stalled {} ms (adapter timeout {TIMEOUT_MS} ms) {:.0} %, applied-then-504 {:.0} %, applied-then-500 {:.0} %, applied-then-reset {:.0} %, latency {} ms",
            fault.failure_rate * 100.0,
            fault.stall_ms,
            fault.stall_rate * 100.0,
            fault.lost_ack_rate * 100.0,
            fault.applied_then_500_rate * 100.0,
            fault.applied_then_reset_rate * 100.0,
            fault.latency_ms
        ),
    );
    let mut cfg = EngineConfig::new(&st.db.url, &st.workflows(), 5_000, 16);
    cfg.domain = domain(&sims, TIMEOUT_MS)?;
    let config = cfg.write(&st.dir, "engine")?;
    let mut engine = Engine::start(&opts.bin, &config, "faults", &st.log("faults")).await?;
    super::informs_to(&sims, &engine.grpc)?;
    let api = Api::new(&engine.grpc, "chaos-crm", st.codes.clone())?;
    let inputs: Vec<_> = (0..n).map(|i| subscriber(TAG, i)).collect();
    start_all(&api, "provision_subscriber", &inputs).await?;
    let open = db::wait_terminal(&st.pool, TENANT, Duration::from_secs(900)).await?;
    report.fact("runs not terminal after the wait", open);
    report.bar("the engine is still running", engine.alive(), "");
    engine.kill();

    let snap = sims.snapshot();
    report.fact(
        "injected 503s",
        snap.injected_failures.values().sum::<u64>(),
    );
    report.fact("stalled requests", snap.stalls.values().sum::<u64>());
    report.fact(
        "lost acknowledgements",
        snap.lost_acks.values().sum::<u64>(),
    );
    let applied_500 = snap.applied_then_500.values().sum::<u64>();
    let resets = snap.applied_then_reset.values().sum::<u64>();
    report.fact("applied, then 500", applied_500);
    report.fact("applied, then connection reset", resets);
    report.bar(
        "the new faults were exercised (applied-then-500 and applied-then-reset)",
        n < 50 || (applied_500 > 0 && resets > 0),
        format!("{applied_500} × 500, {resets} resets"),
    );

    // The policy: at most max_attempts forward attempts (5) and
    // compensation attempts (10) per step; a step that gave up with
    // attempts left did so on a non-retryable error.
    let stored: Vec<String> = sqlx::query_scalar("SELECT steps FROM runs WHERE tenant_id = $1")
        .bind(TENANT)
        .fetch_all(&st.pool)
        .await?;
    let mut steps = Vec::new();
    for text in &stored {
        steps.extend(
            sagaflow_engine::store::decode_steps(text)
                .map_err(|e| ChaosError::Setup(format!("reading stored steps: {e}")))?,
        );
    }
    let attempts: Vec<(i32, i32)> = steps
        .iter()
        .map(|s| (s.attempts as i32, s.compensation_attempts as i32))
        .collect();
    let mut histogram: BTreeMap<i32, u64> = BTreeMap::new();
    let mut over = 0;
    for (a, c) in &attempts {
        *histogram.entry(*a).or_default() += 1;
        if *a > 5 || *c > 10 {
            over += 1;
        }
    }
    report.fact(
        "forward attempts per step (attempts -> steps)",
        format!("{histogram:?}"),
    );
    report.bar(
        "attempts within the policy (<= 5 forward, <= 10 compensation)",
        over == 0,
        format!("{over} steps over"),
    );
    let retryable = |e: &str| {
        ["unavailable", "timed out", "uncertain", "500", "503", "504"]
            .iter()
            .any(|k| e.contains(k))
    };
    let early = steps
        .iter()
        .filter(|s| {
            s.state == sagaflow_engine::state::StepState::Failed
                && s.attempts < 5
                && retryable(s.last_error.as_deref().unwrap_or_default())
        })
        .count();
    report.bar(
        "no step gave up on a retryable error with attempts left",
        early == 0,
        format!("{early}"),
    );
    super::provisioning_bar(&mut report, &st.pool, &snap, TAG, n).await?;
    st.finish(&mut report, &check::sim_effects(&snap)).await?;
    sims.shutdown().await;
    Ok(report)
}
