//! Throughput (many runs at a concurrency) and latency (one run at a time)
//! of the in-process engine. Throughput also reads the engine's memory
//! (RSS) idle and with its `concurrency` runs in flight (see
//! [`MemorySampler`]).

use std::time::{Duration, Instant};

use sagaflow_engine::engine::StartRequest;
use sagaflow_engine::ids::{RunId, TenantId};
use sagaflow_engine::state::RunState;
use sagaflow_engine::store::{EventKind, RunFilter};
use serde_json::{Value, json};

use crate::setup::{Setup, count, cpu_seconds, executor, percentile, rss_mib, until_none_active};

/// Tasks that start the runs by default.
pub(crate) const STARTERS: usize = 32;

/// Runs `runs` sagas at `concurrency`, started from `starters` tasks;
/// returns the figures.
pub(crate) async fn throughput(
    s: &Setup,
    runs: usize,
    concurrency: usize,
    starters: usize,
) -> anyhow::Result<Value> {
    let tenant = TenantId::new(format!("bench-{}", RunId::new()));
    let exec = s.engine.start_executor(executor(concurrency));
    let rss_idle = rss_mib();
    let memory = MemorySampler::start(s);
    let (cpu0, pg0) = (cpu_seconds(None), cpu_seconds(Some("postgres")));
    let t0 = Instant::now();
    // Start the runs from several tasks, as CRM calls would arrive.
    let starters = starters.max(1);
    let mut tasks = Vec::new();
    for k in 0..starters {
        let engine = s.engine.clone();
        let tenant = tenant.clone();
        tasks.push(tokio::spawn(async move {
            for i in (k..runs).step_by(starters) {
                let req = StartRequest {
                    tenant_id: tenant.clone(),
                    ..StartRequest::new("", "bench_noop", json!({"i": i}))
                };
                engine.start(req).await?;
            }
            Ok::<(), sagaflow_engine::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let started = t0.elapsed();
    until_none_active(s, Duration::from_secs(3600)).await?;
    let samples = memory.stop().await;
    let completed = count(&s.store, &tenant, RunState::Completed).await? as usize;
    anyhow::ensure!(completed == runs, "{completed} of {runs} runs completed");
    let elapsed = t0.elapsed().as_secs_f64();
    let (cpu, pg) = (
        cpu_seconds(None) - cpu0,
        cpu_seconds(Some("postgres")) - pg0,
    );
    exec.shutdown().await;
    // End-to-end latencies from the stored timestamps.
    let mut lat = Vec::with_capacity(runs);
    let mut before = None;
    loop {
        let page = s
            .engine
            .list(
                &tenant,
                &RunFilter {
                    before,
                    limit: 1000,
                    ..Default::default()
                },
            )
            .await?;
        for r in &page {
            if let Some(f) = r.finished_at {
                lat.push((f - r.created_at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
            }
        }
        match page.last() {
            Some(r) if page.len() == 1000 => before = Some((r.created_at, r.id)),
            _ => break,
        }
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let steps = runs as f64 * 10.0;
    // The highest RSS while every slot was taken (the runs still to
    // finish at least the concurrency), else the highest of all.
    let full: Vec<f64> = samples
        .iter()
        .filter(|(_, active)| *active >= concurrency as u64)
        .map(|(rss, _)| *rss)
        .collect();
    let busy = if full.is_empty() {
        samples.iter().map(|(rss, _)| *rss).collect()
    } else {
        full.clone()
    };
    let rss_busy = busy.iter().fold(rss_idle, |m, r| m.max(*r));
    let per_run_kib = (rss_busy - rss_idle) * 1024.0 / concurrency.max(1) as f64;
    Ok(json!({
        "scenario": "throughput",
        "backend": s.backend,
        "runs": runs,
        "concurrency": concurrency,
        "starters": starters,
        "elapsed_s": elapsed,
        "start_phase_s": started.as_secs_f64(),
        "sagas_per_s": runs as f64 / elapsed,
        "step_checkpoints_per_s": steps / elapsed,
        "e2e_p50_ms": percentile(&lat, 0.50),
        "e2e_p99_ms": percentile(&lat, 0.99),
        "engine_cpu_s_per_1000_steps": cpu / steps * 1000.0,
        "engine_cpu_s": cpu,
        "postgres_cpu_s": pg,
        "rss_mib_idle": rss_idle,
        "rss_mib_in_flight": rss_busy,
        "rss_samples_all_slots_taken": full.len(),
        "rss_kib_per_in_flight_run": per_run_kib,
    }))
}

/// Samples the engine's RSS every [`MemorySampler::EVERY`] with the number
/// of runs still active (started, not finished): while that is at least
/// the concurrency, every executor slot holds a run.
struct MemorySampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<(f64, u64)>>,
}

impl MemorySampler {
    const EVERY: Duration = Duration::from_millis(200);

    fn start(s: &Setup) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let store = s.store.clone();
        let task = tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => return samples,
                    () = tokio::time::sleep(Self::EVERY) => {} // sampling interval
                }
                let rss = rss_mib();
                // A failed count skips the sample (the figures say how
                // many were taken).
                if let Ok(active) = store.count_active().await {
                    samples.push((rss, active.iter().map(|(_, n)| n).sum()));
                }
            }
        });
        Self { stop, task }
    }

    /// The samples: (RSS in MiB, runs active).
    async fn stop(self) -> Vec<(f64, u64)> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

pub(crate) async fn latency(s: &Setup, runs: usize, warmup: usize) -> anyhow::Result<Value> {
    let tenant = TenantId::new(format!("bench-{}", RunId::new()));
    let exec = s.engine.start_executor(executor(16));
    let mut changes = s.engine.subscribe_changes();
    let mut e2e = Vec::new();
    let mut per_step = Vec::new();
    for i in 0..warmup + runs {
        let t = Instant::now();
        let req = StartRequest {
            tenant_id: tenant.clone(),
            ..StartRequest::new("", "bench_noop", json!({"i": i}))
        };
        let id = s.engine.start(req).await?.run.id;
        loop {
            match changes.recv().await {
                Ok(changed) if changed == id => {
                    if s.engine.get(&tenant, id).await?.state.is_terminal() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    if s.engine.get(&tenant, id).await?.state.is_terminal() {
                        break;
                    }
                }
            }
        }
        let took = t.elapsed().as_secs_f64() * 1000.0;
        if i >= warmup {
            e2e.push(took);
            let events = s.engine.events(&tenant, id, 0).await?;
            let mut started = None;
            for e in &events {
                match e.kind {
                    EventKind::StepStarted => started = Some(e.at),
                    EventKind::StepSucceeded => {
                        if let Some(st) = started.take() {
                            per_step
                                .push((e.at - st).num_microseconds().unwrap_or(0) as f64 / 1000.0);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    exec.shutdown().await;
    e2e.sort_by(|a, b| a.total_cmp(b));
    per_step.sort_by(|a, b| a.total_cmp(b));
    Ok(json!({
        "scenario": "latency",
        "backend": s.backend,
        "runs": runs,
        "warmup": warmup,
        "e2e_p50_ms": percentile(&e2e, 0.50),
        "e2e_p99_ms": percentile(&e2e, 0.99),
        "step_p50_ms": percentile(&per_step, 0.50),
        "step_p99_ms": percentile(&per_step, 0.99),
    }))
}
