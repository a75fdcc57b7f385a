//! `sagaflow bench <scenario>`: the performance harness. It prints figures;
//! it asserts nothing. Method and results: docs/performance.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sagaflow_engine::Engine;
use sagaflow_engine::clock::SystemClock;
use sagaflow_engine::definition::{self, Definitions};
use sagaflow_engine::engine::StartRequest;
use sagaflow_engine::executor::ExecutorOptions;
use sagaflow_engine::ids::{RunId, TenantId};
use sagaflow_engine::state::RunState;
use sagaflow_engine::store::{EventKind, RunFilter, Store, StoreError};
use serde_json::{Value, json};

use crate::app;

/// The built-in benchmark saga: ten no-op steps.
pub fn bench_definition() -> String {
    let mut t = String::from(
        "name = \"bench_noop\"\nversion = 1\ndescription = \"Ten no-op steps\"\n\
         [defaults]\ntimeout_ms = 10000\n[defaults.retry]\nmax_attempts = 3\ninitial_interval_ms = 10\nmax_interval_ms = 100\n",
    );
    for i in 1..=10 {
        t.push_str(&format!(
            "[[steps]]\nname = \"step{i}\"\nhandler = \"builtin.noop\"\n"
        ));
    }
    t
}

#[derive(Debug, clap::Subcommand)]
pub enum Scenario {
    /// N runs of the 10-step no-op saga at concurrency C.
    Throughput {
        #[arg(long, default_value_t = 20_000)]
        runs: usize,
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
    },
    /// One run at a time: end-to-end and per-step latency.
    Latency {
        #[arg(long, default_value_t = 500)]
        runs: usize,
        #[arg(long, default_value_t = 50)]
        warmup: usize,
    },
    /// Raw PostgreSQL checkpoint rates next to sagaflow's, in one run.
    Ceiling {
        #[arg(long, default_value_t = 10_000)]
        runs: usize,
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        /// Seconds per raw measurement.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The store to measure: postgres://… or sqlite://… (default: a fresh
    /// SQLite file in a temporary directory).
    #[arg(long, env = "SAGAFLOW_DATABASE_URL")]
    pub database_url: Option<String>,
    /// PostgreSQL connections.
    #[arg(long, default_value_t = 16)]
    pub connections: u32,
    #[arg(long, short = 'o', default_value = "table")]
    pub output: crate::client::Output,
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// CPU seconds used so far by processes whose `comm` is `name` (or by this
/// process when `None`), from /proc. Zero where /proc is not available.
fn cpu_seconds(name: Option<&str>) -> f64 {
    const TICKS: f64 = 100.0; // USER_HZ on Linux
    let read = |path: &std::path::Path| -> Option<f64> {
        let stat = std::fs::read_to_string(path.join("stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / TICKS)
    };
    match name {
        None => read(std::path::Path::new("/proc/self")).unwrap_or(0.0),
        Some(n) => std::fs::read_dir("/proc")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| {
                        std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == n)
                    })
                    .filter_map(|e| read(&e.path()))
                    .sum()
            })
            .unwrap_or(0.0),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Setup {
    engine: Engine,
    store: Arc<dyn Store>,
    pg: Option<sqlx::PgPool>,
    backend: &'static str,
    _dir: Option<tempfile::TempDir>,
}

async fn setup(args: &BenchArgs) -> anyhow::Result<Setup> {
    let (url, dir) = match &args.database_url {
        Some(u) => (u.clone(), None),
        None => {
            let d = tempfile::tempdir()?;
            (
                format!("sqlite://{}", d.path().join("bench.db").display()),
                Some(d),
            )
        }
    };
    let (store, deps) = app::open_store(&url, args.connections).await?;
    let registry = app::registry(&deps);
    let mut defs = Definitions::default();
    let def = definition::parse(&bench_definition(), "bench_noop (built in)")?;
    defs.add(def, "bench_noop (built in)", &registry)?;
    let engine = Engine::new(
        store.clone(),
        Arc::new(registry),
        defs,
        Arc::new(SystemClock),
    )
    .await?;
    Ok(Setup {
        engine,
        backend: if deps.postgres.is_some() {
            "postgres"
        } else {
            "sqlite"
        },
        pg: deps.postgres,
        store,
        _dir: dir,
    })
}

fn executor(concurrency: usize) -> ExecutorOptions {
    ExecutorOptions {
        owner: "bench".into(),
        max_in_flight: concurrency,
        claim_batch: 128,
        poll_interval: Duration::from_millis(100),
        ..ExecutorOptions::default()
    }
}

async fn count(
    store: &Arc<dyn Store>,
    tenant: &TenantId,
    state: RunState,
) -> Result<u64, StoreError> {
    Ok(store
        .count_by_state(Some(tenant))
        .await?
        .into_iter()
        .find(|(s, _)| *s == state)
        .map(|(_, n)| n)
        .unwrap_or(0))
}

/// Runs `runs` sagas at `concurrency`; returns the figures.
async fn throughput(s: &Setup, runs: usize, concurrency: usize) -> anyhow::Result<Value> {
    let tenant = TenantId::new(format!("bench-{}", RunId::new()));
    let exec = s.engine.start_executor(executor(concurrency));
    let (cpu0, pg0) = (cpu_seconds(None), cpu_seconds(Some("postgres")));
    let t0 = Instant::now();
    // Start the runs from a few tasks, as CRM calls would arrive.
    let starters = 8;
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
    loop {
        if count(&s.store, &tenant, RunState::Completed).await? as usize >= runs {
            break;
        }
        // Poll gently: the count is a query on the same database.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
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
    Ok(json!({
        "scenario": "throughput",
        "backend": s.backend,
        "runs": runs,
        "concurrency": concurrency,
        "elapsed_s": elapsed,
        "start_phase_s": started.as_secs_f64(),
        "sagas_per_s": runs as f64 / elapsed,
        "step_checkpoints_per_s": steps / elapsed,
        "e2e_p50_ms": percentile(&lat, 0.50),
        "e2e_p99_ms": percentile(&lat, 0.99),
        "engine_cpu_s_per_1000_steps": cpu / steps * 1000.0,
        "engine_cpu_s": cpu,
        "postgres_cpu_s": pg,
    }))
}

async fn latency(s: &Setup, runs: usize, warmup: usize) -> anyhow::Result<Value> {
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

async fn ceiling(
    s: &Setup,
    runs: usize,
    concurrency: usize,
    seconds: u64,
    connections: u32,
) -> anyhow::Result<Value> {
    use sagaflow_engine::store::postgres::ceiling as raw;
    let pool =
        s.pg.clone()
            .context("the ceiling scenario needs a postgres:// database")?;
    let engine = throughput(s, runs, concurrency).await?;
    let ours = engine["step_checkpoints_per_s"].as_f64().unwrap_or(0.0);
    let ids = raw::create_tables(&pool, 10_000).await?;
    let d = Duration::from_secs(seconds);
    let workers = connections as usize;
    let single = raw::single(&pool, &ids, workers, d).await? as f64 / d.as_secs_f64();
    let batched = raw::batched(&pool, &ids, workers, d).await? as f64 / d.as_secs_f64();
    raw::drop_tables(&pool).await?;
    Ok(json!({
        "scenario": "ceiling",
        "backend": "postgres",
        "connections": connections,
        "sagaflow_step_checkpoints_per_s": ours,
        "raw_single_statement_per_s": single,
        "raw_10x10_per_tx_per_s": batched,
        "ratio_to_single": ours / single.max(1.0),
        "ratio_to_batched": ours / batched.max(1.0),
        "sagaflow": engine,
    }))
}

fn print(v: &Value, out: crate::client::Output) {
    if out == crate::client::Output::Json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        return;
    }
    if let Value::Object(m) = v {
        for (k, val) in m {
            match val {
                Value::Number(n) if n.is_f64() => {
                    println!("{k:<32} {:>12.3}", n.as_f64().unwrap_or(0.0))
                }
                Value::Object(_) => {
                    println!("{k}:");
                    print(val, out);
                }
                other => println!("{k:<32} {:>12}", other.to_string().trim_matches('"')),
            }
        }
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let s = setup(&args).await?;
    let v = match args.scenario {
        Scenario::Throughput { runs, concurrency } => throughput(&s, runs, concurrency).await?,
        Scenario::Latency { runs, warmup } => latency(&s, runs, warmup).await?,
        Scenario::Ceiling {
            runs,
            concurrency,
            seconds,
        } => ceiling(&s, runs, concurrency, seconds, args.connections).await?,
    };
    print(&v, args.output);
    Ok(())
}
