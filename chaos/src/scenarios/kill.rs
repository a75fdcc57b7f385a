//! Scenario 1, kill -9: provisioning sagas (the shipped
//! `provision_subscriber` workflow; 20 % meet a billing conflict and
//! compensate) while the engine is SIGKILLed at random moments and
//! restarted after random delays. The ONU, CPE and billing simulators run
//! in the harness, so they outlive every engine and keep the effect ledger.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sagaflow_steps::sim::{Fault, SimConfig, Simulators};

use super::{Stage, domain, event_count, preexisting_service, subscriber};
use crate::client::Api;
use crate::process::{Engine, EngineConfig};
use crate::{ChaosError, Options, Report, Result, check, db, workflows};

const TAG: &str = "kill";

pub async fn run(opts: &Options) -> Result<Report> {
    let n = opts.counts.kill_runs;
    let kills = opts.counts.kills;
    let st = Stage::new(opts, "kill", &workflows::provision()).await?;
    let mut report = Report::new("kill");
    // Slow answers (100 ms) keep attempts in flight when the kills strike.
    let sims = Simulators::start(SimConfig {
        default_fault: Fault {
            latency_ms: 100,
            ..Fault::default()
        },
        ..SimConfig::default()
    })
    .await
    .map_err(ChaosError::io("simulators"))?;
    let mut cfg = EngineConfig::new(&st.db.url, &st.workflows(), 1_500, 16);
    cfg.domain = domain(&sims, 5_000)?;
    let config = cfg.write(&st.dir, "engine")?;
    let start = |k: usize| {
        let config = config.clone();
        let log = st.log(&format!("kill-{k}"));
        async move { Engine::start(&opts.bin, &config, &format!("kill-{k}"), &log).await }
    };
    let mut engine = start(0).await?;
    let informs = super::informs_to(&sims, &engine.grpc)?;

    // Every fifth subscriber already has a billing service: its run's last
    // step meets a conflict and the run compensates.
    let inputs: Vec<_> = (0..n).map(|i| subscriber(TAG, i)).collect();
    let forced = |i: usize| i.is_multiple_of(5);
    for (i, (sub, _)) in inputs.iter().enumerate() {
        if forced(i) {
            preexisting_service(&sims, sub).await?;
        }
    }
    // Runs are started through whichever engine is up, at a pace that
    // spreads them over the kills (about 2.5 s per kill cycle).
    let current = Arc::new(Mutex::new(engine.grpc.clone()));
    let starter = {
        let (current, codes) = (current.clone(), st.codes.clone());
        let inputs = inputs.clone();
        let pace = Duration::from_millis((kills as u64 * 2_500 / n.max(1) as u64).clamp(5, 1_000));
        tokio::spawn(async move {
            for (key, input) in &inputs {
                let deadline = Instant::now() + Duration::from_secs(120);
                loop {
                    let addr = current.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    let api = Api::new(&addr, "chaos-crm", codes.clone())?;
                    match api.start("provision_subscriber", input, key).await {
                        Ok(_) => break,
                        Err(e) if Instant::now() > deadline => {
                            return Err(ChaosError::Grpc(format!("starting {key}: {e}")));
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await, // retry interval (loop has a deadline)
                    }
                }
                tokio::time::sleep(pace).await; // the starters' pace
            }
            Ok(())
        })
    };

    let mut recovery = Vec::new();
    let mut done_kills = 0;
    for k in 1..=kills {
        // Let it run for a random while, then kill it without warning.
        super::random_pause(200, 2_000).await;
        let before = event_count(&st.pool).await?;
        engine.kill();
        let killed_at = Instant::now();
        done_kills += 1;
        super::random_pause(0, 1_000).await; // the restart delay
        engine = start(k).await?;
        *current.lock().unwrap_or_else(|e| e.into_inner()) = engine.grpc.clone();
        informs.set_url(&engine.grpc).map_err(ChaosError::Setup)?;
        // Recovery: from the kill to the first new event in the history
        // (no sample when there was nothing left to do).
        let r = db::poll(
            "progress after a restart",
            Duration::from_secs(120),
            Duration::from_millis(10),
            || async {
                if event_count(&st.pool).await? > before {
                    return Ok(Some(Some(Instant::now())));
                }
                let open =
                    db::wait_terminal(&st.pool, crate::process::TENANT, Duration::ZERO).await?;
                Ok((open == 0 && starter.is_finished()).then_some(None))
            },
        )
        .await?;
        if let Some(r) = r {
            recovery.push(r.duration_since(killed_at).as_millis() as u64);
        }
    }
    starter
        .await
        .map_err(|e| ChaosError::Setup(format!("the starter: {e}")))??;
    report.fact("runs started", n);
    report.bar(
        "every planned SIGKILL done",
        done_kills == kills,
        format!("{done_kills}/{kills}"),
    );
    report.kills = done_kills;
    report.recovery_ms = recovery;
    report.fact(
        "recovery",
        "from the SIGKILL to the next event committed (restart delay 0-1 s, start-up, lease expiry 1.5 s)",
    );
    let open =
        db::wait_terminal(&st.pool, crate::process::TENANT, Duration::from_secs(600)).await?;
    report.fact("runs not terminal after the wait", open);
    let alive = engine.alive();
    drop(engine);

    let interrupted = super::events_of_kind(&st.pool, "step_interrupted").await?;
    report.fact("attempts interrupted by the kills", interrupted);
    let snap = sims.snapshot();
    let ended = super::provisioning_bar(&mut report, &st.pool, &snap, TAG, n).await?;
    let unexpected: Vec<String> = inputs
        .iter()
        .enumerate()
        .filter_map(|(i, (sub, _))| {
            let want = if forced(i) {
                "COMPENSATED"
            } else {
                "COMPLETED"
            };
            let got = ended.get(sub).map(String::as_str).unwrap_or("missing");
            (got != want).then(|| format!("{sub}: {got}, expected {want}"))
        })
        .collect();
    report.bar_list(
        "every run in its expected end state (80 % COMPLETED, 20 % COMPENSATED)",
        &unexpected,
    );
    report.fact("simulator effects", snap.effects.len());
    report.fact("CPE informs delivered", snap.informs.len());
    // Every run reaches its cpe_inform step alive (the billing conflict
    // comes after it), so no inform may be refused or given up.
    let lost: Vec<String> = snap
        .informs_lost
        .iter()
        .map(|l| format!("run {}: {}", l.inform.run_id, l.reason))
        .collect();
    report.bar_list(
        "every CPE inform delivered (none refused or given up)",
        &lost,
    );
    report.bar("the last engine is still running", alive, "");
    st.finish(&mut report, &check::sim_effects(&snap)).await?;
    sims.shutdown().await;
    Ok(report)
}
