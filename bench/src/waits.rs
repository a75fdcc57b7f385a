//! Waiting runs at scale: N runs waiting at once on one engine (timers,
//! then signals). The engine's memory (RSS) and the database connections
//! its pool holds are read with nothing waiting and again while all N
//! wait; then the time to wake them all: timers due in the same second,
//! and N signals sent at once (in process, `Engine::signal`) by
//! `signal_callers` concurrent callers, as a fleet of CRM clients would.

use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use sagaflow_engine::engine::{SignalRequest, StartRequest};
use sagaflow_engine::ids::{RunId, TenantId};
use sagaflow_engine::state::{RunState, StepState};
use serde_json::{Value, json};

use crate::setup::{Setup, all_runs, count, executor, rss_mib, until_none_active};

/// The built-in waiting sagas: a sleep until `/wake_at`, or the signal
/// `go`, then one no-op step.
pub fn wait_definitions() -> [(String, &'static str); 2] {
    let head = |name: &str| {
        format!(
            "name = \"{name}\"\nversion = 1\n\
             [defaults]\ntimeout_ms = 10000\n[defaults.retry]\nmax_attempts = 3\ninitial_interval_ms = 10\nmax_interval_ms = 100\n"
        )
    };
    let done = "[[steps]]\nname = \"done\"\nhandler = \"builtin.noop\"\n";
    [
        (
            format!(
                "{}[[steps]]\nname = \"sleep\"\nkind = \"sleep\"\nuntil = \"/wake_at\"\n{done}",
                head("bench_wait_timer")
            ),
            "bench_wait_timer (built in)",
        ),
        (
            format!(
                "{}[[steps]]\nname = \"go\"\nkind = \"signal\"\nsignal = \"go\"\n{done}",
                head("bench_wait_signal")
            ),
            "bench_wait_signal (built in)",
        ),
    ]
}

/// Connections the store's pool holds open, and of those the ones in use.
fn connections(s: &Setup) -> (u32, u32) {
    s.pg.as_ref().map_or((0, 0), |p| {
        let open = p.size();
        (open, open.saturating_sub(p.num_idle() as u32))
    })
}

/// RSS, open and busy connections, sampled `n` times 200 ms apart: the
/// largest of each.
async fn sample(s: &Setup, n: usize) -> (f64, u32, u32) {
    let (mut rss, mut open, mut busy) = (0.0_f64, 0, 0);
    for _ in 0..n {
        let (o, b) = connections(s);
        rss = rss.max(rss_mib());
        (open, busy) = (open.max(o), busy.max(b));
        tokio::time::sleep(Duration::from_millis(200)).await; // sampling interval
    }
    (rss, open, busy)
}

/// Starts `runs` runs of `workflow` with `input` from 8 tasks; their ids.
async fn start_all(
    s: &Setup,
    tenant: &TenantId,
    workflow: &'static str,
    runs: usize,
    input: Value,
) -> anyhow::Result<Vec<RunId>> {
    let starters = 8;
    let mut tasks = Vec::new();
    for k in 0..starters {
        let (engine, tenant, input) = (s.engine.clone(), tenant.clone(), input.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in (k..runs).step_by(starters) {
                let req = StartRequest {
                    tenant_id: tenant.clone(),
                    ..StartRequest::new("", workflow, input.clone())
                };
                ids.push(engine.start(req).await?.run.id);
            }
            Ok::<_, sagaflow_engine::Error>(ids)
        }));
    }
    let mut ids = Vec::with_capacity(runs);
    for t in tasks {
        ids.extend(t.await??);
    }
    Ok(ids)
}

/// Waits until every run of `ids` has a WAITING step (a waiting run stays
/// so until its timer or signal: each is read until it is seen waiting).
async fn all_waiting(
    s: &Setup,
    tenant: &TenantId,
    ids: &[RunId],
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    let mut left: Vec<RunId> = ids.to_vec();
    loop {
        let mut still = Vec::new();
        for id in left {
            let run = s.engine.get(tenant, id).await?;
            if !run.steps.iter().any(|st| st.state == StepState::Waiting) {
                still.push(id);
            }
        }
        if still.is_empty() {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} of {} runs not waiting yet",
            still.len(),
            ids.len()
        );
        left = still;
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
    }
}

/// Waits until the tenant has `runs` completed runs; the time it took and
/// the last run's finish as stored.
async fn all_completed(
    s: &Setup,
    tenant: &TenantId,
    runs: usize,
) -> anyhow::Result<(Duration, Option<DateTime<Utc>>)> {
    let t = Instant::now();
    until_none_active(s, Duration::from_secs(600)).await?;
    let took = t.elapsed();
    let completed = count(&s.store, tenant, RunState::Completed).await? as usize;
    anyhow::ensure!(completed == runs, "{completed} of {runs} runs completed");
    let last = all_runs(s, tenant)
        .await?
        .iter()
        .filter_map(|r| r.finished_at)
        .max();
    Ok((took, last))
}

fn secs(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

pub(crate) async fn waits(
    s: &Setup,
    runs: usize,
    wake_in_s: u64,
    signal_callers: usize,
) -> anyhow::Result<Value> {
    let exec = s.engine.start_executor(executor(256));
    let (rss_idle, conns_idle, busy_idle) = sample(s, 5).await;

    // Timers, all due in the same second.
    let timers = TenantId::new(format!("bench-{}", RunId::new()));
    let due = (Utc::now() + chrono::Duration::seconds(wake_in_s as i64)).trunc_subsecs(0);
    let t0 = Instant::now();
    let timer_ids = start_all(
        s,
        &timers,
        "bench_wait_timer",
        runs,
        json!({"wake_at": due.to_rfc3339()}),
    )
    .await?;
    let started_timers = t0.elapsed();
    let until_due = (due - Utc::now()).to_std().unwrap_or_default();
    all_waiting(s, &timers, &timer_ids, until_due)
        .await
        .map_err(|e| {
            anyhow::anyhow!("{e}: not every timer was set before it was due; raise --wake-in-s")
        })?;
    let (rss_timers, conns_timers, busy_timers) = sample(s, 5).await;
    anyhow::ensure!(
        Utc::now() < due,
        "the timers were due before they were measured; raise --wake-in-s"
    );
    tokio::time::sleep((due - Utc::now()).to_std().unwrap_or_default()).await; // until the timers are due
    let (_, last_timer) = all_completed(s, &timers, runs).await?;
    let timers_woken_s = last_timer.map_or(0.0, |l| secs(l - due));

    // Signals, all sent at once.
    let signals = TenantId::new(format!("bench-{}", RunId::new()));
    let ids = start_all(s, &signals, "bench_wait_signal", runs, json!({})).await?;
    all_waiting(s, &signals, &ids, Duration::from_secs(600)).await?;
    let (rss_signals, conns_signals, busy_signals) = sample(s, 5).await;
    let sent_at = Utc::now();
    let t1 = Instant::now();
    let senders = signal_callers.max(1);
    let mut tasks = Vec::new();
    for k in 0..senders {
        let (engine, tenant) = (s.engine.clone(), signals.clone());
        let mine: Vec<RunId> = ids.iter().skip(k).step_by(senders).copied().collect();
        tasks.push(tokio::spawn(async move {
            for run_id in mine {
                engine
                    .signal(SignalRequest {
                        tenant_id: tenant.clone(),
                        run_id,
                        name: "go".into(),
                        payload: json!({}),
                        idempotency_key: String::new(),
                        actor: "bench".into(),
                    })
                    .await?;
            }
            Ok::<(), sagaflow_engine::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let signals_sent = t1.elapsed();
    let (_, last_signalled) = all_completed(s, &signals, runs).await?;
    exec.shutdown().await;
    Ok(json!({
        "scenario": "waits",
        "backend": s.backend,
        "runs": runs,
        "signal_callers": senders,
        "rss_mib_none_waiting": rss_idle,
        "rss_mib_timers_waiting": rss_timers,
        "rss_mib_signals_waiting": rss_signals,
        "db_connections_none_waiting": conns_idle,
        "db_connections_timers_waiting": conns_timers,
        "db_connections_signals_waiting": conns_signals,
        "db_connections_busy_none_waiting": busy_idle,
        "db_connections_busy_timers_waiting": busy_timers,
        "db_connections_busy_signals_waiting": busy_signals,
        "timers_start_phase_s": started_timers.as_secs_f64(),
        "timers_all_woken_after_due_s": timers_woken_s,
        "signals_send_s": signals_sent.as_secs_f64(),
        "signals_all_completed_s": last_signalled.map_or(0.0, |l| secs(l - sent_at)),
    }))
}
