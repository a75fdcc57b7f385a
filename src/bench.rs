//! `sagaflow bench <scenario>`: the performance harness. It prints figures;
//! it asserts nothing. Method and results: docs/performance.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sagaflow_engine::Engine;
use sagaflow_engine::api::auth::{Role, TokenEntry, hash_token};
use sagaflow_engine::clock::SystemClock;
use sagaflow_engine::definition::{self, Definitions};
use sagaflow_engine::engine::StartRequest;
use sagaflow_engine::executor::ExecutorOptions;
use sagaflow_engine::ids::{RunId, TenantId};
use sagaflow_engine::state::RunState;
use sagaflow_engine::store::{EventKind, RunFilter, Store, StoreError};
use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::workflow_service_client::WorkflowServiceClient;
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

/// The recovery scenario's saga: three steps that each take `sleep_ms`
/// from the input (`builtin.demo`), so runs stay in flight long enough to
/// kill the engine under them.
pub fn sleep_definition() -> String {
    let mut t = String::from(
        "name = \"bench_sleep\"\nversion = 1\ndescription = \"Three slow no-op steps\"\n\
         [defaults]\ntimeout_ms = 600000\n[defaults.retry]\nmax_attempts = 5\ninitial_interval_ms = 10\nmax_interval_ms = 100\n",
    );
    for i in 1..=3 {
        t.push_str(&format!(
            "[[steps]]\nname = \"sleep{i}\"\nhandler = \"builtin.demo\"\n"
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
    /// gRPC StartWorkflow at a fixed offered rate (open loop).
    Start {
        /// Starts per second; default: half the throughput measured first
        /// with `--calibrate-runs` runs.
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 4_000)]
        calibrate_runs: usize,
    },
    /// Seed finished runs in bulk, then time GetWorkflow, ListWorkflows
    /// with each filter and the claim query; print their plans.
    Scale {
        #[arg(long, default_value_t = 1_000_000)]
        runs: u64,
        /// Calls timed per query.
        #[arg(long, default_value_t = 300)]
        queries: usize,
    },
    /// Two engine processes; SIGKILL one with runs in flight and time
    /// until the other has resumed them all.
    Recovery {
        #[arg(long, default_value_t = 600)]
        runs: usize,
        #[arg(long, default_value_t = 5_000)]
        lease_ms: u64,
        /// How long each of the saga's three steps takes.
        #[arg(long, default_value_t = 4_000)]
        step_ms: u64,
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
    url: String,
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
    for (text, name) in [
        (bench_definition(), "bench_noop (built in)"),
        (sleep_definition(), "bench_sleep (built in)"),
    ] {
        defs.add(definition::parse(&text, name)?, name, &registry)?;
    }
    let engine = Engine::new(
        store.clone(),
        Arc::new(registry),
        defs,
        Arc::new(SystemClock),
    )
    .await?;
    Ok(Setup {
        url,
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

const BENCH_TOKEN: &str = "bench-admin";

/// The real server (gRPC API, executor) on the bench's database, with one
/// admin token for tenant `tenant` and the bench workflows.
struct BenchServer {
    server: crate::server::Server,
    client: WorkflowServiceClient<tonic::transport::Channel>,
    _dir: tempfile::TempDir,
}

async fn bench_server(s: &Setup, args: &BenchArgs, tenant: &str) -> anyhow::Result<BenchServer> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("bench_noop.v1.toml"), bench_definition())?;
    std::fs::write(dir.path().join("bench_sleep.v1.toml"), sleep_definition())?;
    let mut config = crate::config::Config::default();
    config.database.url = s.url.clone();
    config.database.max_connections = args.connections;
    config.grpc.addr = "127.0.0.1:0".into();
    config.http.addr = "127.0.0.1:0".into();
    config.engine.workflows = dir.path().to_path_buf();
    config.engine.owner = "bench-server".into();
    config.schedules.enabled = false;
    config.auth.tokens = vec![TokenEntry {
        name: "bench".into(),
        tenant: tenant.into(),
        role: Role::Admin,
        sha256: hash_token(BENCH_TOKEN),
    }];
    let server = crate::server::Server::start(&config, false).await?;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc_addr))?
        .connect()
        .await?;
    Ok(BenchServer {
        server,
        client: WorkflowServiceClient::new(channel),
        _dir: dir,
    })
}

fn authed<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Ok(v) = format!("Bearer {BENCH_TOKEN}").parse() {
        r.metadata_mut().insert("authorization", v);
    }
    r
}

/// p50/p99/p99.9 and the count of `samples` (milliseconds), as JSON.
fn summary(mut samples: Vec<f64>) -> Value {
    samples.sort_by(|a, b| a.total_cmp(b));
    json!({
        "n": samples.len(),
        "p50_ms": percentile(&samples, 0.50),
        "p99_ms": percentile(&samples, 0.99),
        "p999_ms": percentile(&samples, 0.999),
        "max_ms": samples.last().copied().unwrap_or(0.0),
    })
}

/// Open loop: StartWorkflow calls are sent on a fixed schedule whatever
/// the answers take, and each latency counts from the moment its call was
/// due, so a stall shows in the figures instead of slowing the load.
async fn start(
    s: &Setup,
    args: &BenchArgs,
    rate: Option<f64>,
    seconds: u64,
    calibrate_runs: usize,
) -> anyhow::Result<Value> {
    let (rate, calibration) = match rate {
        Some(r) if r > 0.0 => (r, Value::Null),
        Some(_) => anyhow::bail!("--rate must be above 0"),
        None => {
            let t = throughput(s, calibrate_runs, 256).await?;
            let measured = t["sagas_per_s"].as_f64().unwrap_or(0.0);
            ((measured / 2.0).max(1.0), t)
        }
    };
    let tenant = format!("bench-{}", RunId::new());
    let b = bench_server(s, args, &tenant).await?;
    let total = (rate * seconds as f64).round().max(1.0) as usize;
    let every = Duration::from_secs_f64(1.0 / rate);
    let t0 = tokio::time::Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = t0 + every.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        let mut client = b.client.clone();
        calls.spawn(async move {
            let req = pb::StartWorkflowRequest {
                workflow_name: "bench_noop".into(),
                input: Some(prost_types::Struct {
                    fields: [(
                        "i".to_string(),
                        prost_types::Value {
                            kind: Some(prost_types::value::Kind::NumberValue(i as f64)),
                        },
                    )]
                    .into(),
                }),
                ..Default::default()
            };
            let r = client.start_workflow(authed(req)).await;
            (
                due.elapsed().as_secs_f64() * 1000.0,
                r.err().map(|e| e.code()),
            )
        });
    }
    let offered_s = t0.elapsed().as_secs_f64();
    let mut ok = Vec::with_capacity(total);
    let mut errors: std::collections::BTreeMap<String, u64> = Default::default();
    while let Some(j) = calls.join_next().await {
        let (ms, code) = j?;
        match code {
            None => ok.push(ms),
            Some(c) => *errors.entry(format!("{c:?}")).or_default() += 1,
        }
    }
    b.server.shutdown().await;
    Ok(json!({
        "scenario": "start",
        "backend": s.backend,
        "offered_per_s": rate,
        "calls": total,
        "offered_over_s": offered_s,
        "ok": ok.len(),
        "errors": errors,
        "latency": summary(ok),
        "calibration": calibration,
    }))
}

/// Times `n` calls of `f` (milliseconds each).
async fn time_calls<F, Fut>(n: usize, mut f: F) -> anyhow::Result<Value>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        f(i).await?;
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(summary(samples))
}

async fn scale(s: &Setup, args: &BenchArgs, runs: u64, queries: usize) -> anyhow::Result<Value> {
    use sagaflow_engine::store::postgres::{PgStore, scale as seed};
    let pool =
        s.pg.clone()
            .context("the scale scenario needs a postgres:// database")?;
    let pg = PgStore::from_pool(pool.clone());
    let tenant = format!("bench-{}", RunId::new());
    let tid = TenantId::new(tenant.clone());
    let claim = |store: Arc<dyn Store>| async move {
        let now = chrono::Utc::now();
        store
            .claim(
                "bench-scale",
                sagaflow_engine::ids::LeaseToken::new(),
                now,
                std::time::Duration::ZERO,
                64,
            )
            .await
            .map(|_| ())
            .map_err(anyhow::Error::from)
    };
    let claim_before = time_calls(queries, |_| claim(s.store.clone())).await?;
    let def = s.engine.resolve("bench_noop", 1)?;
    let workflows: Vec<String> = [
        "provision_subscriber",
        "suspend_subscriber",
        "reactivate_subscriber",
        "deprovision_subscriber",
    ]
    .map(String::from)
    .to_vec();
    let seeded = Instant::now();
    seed::seed_finished(
        &pool,
        &tenant,
        &def.id,
        &workflows,
        runs,
        100_000,
        chrono::Utc::now(),
        365,
        |done| eprintln!("seeded {done} of {runs} runs"),
    )
    .await?;
    let seed_s = seeded.elapsed().as_secs_f64();
    let claim_after = time_calls(queries, |_| claim(s.store.clone())).await?;
    let b = bench_server(s, args, &tenant).await?;
    let ids: Vec<String> = seed::sample_ids(&pool, &tenant, queries as i64)
        .await?
        .into_iter()
        .map(|u| u.to_string())
        .collect();
    anyhow::ensure!(!ids.is_empty(), "no seeded runs to read back");
    let get = time_calls(queries, |i| {
        let mut c = b.client.clone();
        let id = ids[i % ids.len()].clone();
        async move {
            c.get_workflow(authed(pb::GetWorkflowRequest { id }))
                .await?;
            Ok(())
        }
    })
    .await?;
    let mut out = json!({
        "scenario": "scale",
        "backend": "postgres",
        "runs_seeded": runs,
        "seed_s": seed_s,
        "get_workflow": get,
        "claim_before_seeding": claim_before,
        "claim_after_seeding": claim_after,
    });
    let cursor_page = b
        .client
        .clone()
        .list_workflows(authed(pb::ListWorkflowsRequest {
            page_size: 50,
            ..Default::default()
        }))
        .await?
        .into_inner()
        .next_page_token;
    let filters: Vec<(&str, pb::ListWorkflowsRequest, RunFilter)> = vec![
        (
            "list_all",
            pb::ListWorkflowsRequest::default(),
            RunFilter::default(),
        ),
        (
            "list_next_page",
            pb::ListWorkflowsRequest {
                page_token: cursor_page,
                ..Default::default()
            },
            RunFilter::default(),
        ),
        (
            "list_by_workflow",
            pb::ListWorkflowsRequest {
                workflow_name: "suspend_subscriber".into(),
                ..Default::default()
            },
            RunFilter {
                workflow_name: Some("suspend_subscriber".into()),
                ..Default::default()
            },
        ),
        (
            "list_by_state",
            pb::ListWorkflowsRequest {
                states: vec![pb::WorkflowState::Compensated as i32],
                ..Default::default()
            },
            RunFilter {
                states: vec![RunState::Compensated],
                ..Default::default()
            },
        ),
        (
            "list_by_two_states",
            pb::ListWorkflowsRequest {
                states: vec![
                    pb::WorkflowState::Failed as i32,
                    pb::WorkflowState::Cancelled as i32,
                ],
                ..Default::default()
            },
            RunFilter {
                states: vec![RunState::Failed, RunState::Cancelled],
                ..Default::default()
            },
        ),
        (
            "list_by_concurrency_key",
            pb::ListWorkflowsRequest {
                concurrency_key: "subscriber-4240".into(),
                ..Default::default()
            },
            RunFilter {
                concurrency_key: Some("subscriber-4240".into()),
                ..Default::default()
            },
        ),
        (
            "list_by_created_window",
            pb::ListWorkflowsRequest {
                created_after: Some(timestamp(chrono::Utc::now() - chrono::Duration::days(200))),
                created_before: Some(timestamp(chrono::Utc::now() - chrono::Duration::days(199))),
                ..Default::default()
            },
            RunFilter {
                created_after: Some(chrono::Utc::now() - chrono::Duration::days(200)),
                created_before: Some(chrono::Utc::now() - chrono::Duration::days(199)),
                ..Default::default()
            },
        ),
    ];
    let mut plans = serde_json::Map::new();
    for (name, req, filter) in filters {
        let figures = time_calls(queries, |_| {
            let mut c = b.client.clone();
            let req = pb::ListWorkflowsRequest {
                page_size: 50,
                ..req.clone()
            };
            async move {
                c.list_workflows(authed(req)).await?;
                Ok(())
            }
        })
        .await?;
        out[name] = figures;
        let filter = RunFilter {
            limit: 51,
            ..filter
        };
        plans.insert(
            name.into(),
            Value::String(pg.explain_list(&tid, &filter).await?),
        );
    }
    let some_id = RunId(ids[0].parse()?);
    plans.insert(
        "get_workflow".into(),
        Value::String(pg.explain_get(&tid, some_id).await?),
    );
    plans.insert(
        "claim".into(),
        Value::String(pg.explain_claim(chrono::Utc::now(), 64).await?),
    );
    out["plans"] = Value::Object(plans);
    b.server.shutdown().await;
    Ok(out)
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

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
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .context("starting an engine process")?;
    Ok(Child(child))
}

/// Polls `check` every 50 ms until it holds, for at most `limit`.
async fn poll_until<F, Fut>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + limit;
    while !check().await? {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
    }
    Ok(())
}

async fn all_runs(
    s: &Setup,
    tenant: &TenantId,
) -> anyhow::Result<Vec<sagaflow_engine::store::RunRecord>> {
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let page = s
            .engine
            .list(
                tenant,
                &RunFilter {
                    before,
                    limit: 1000,
                    ..Default::default()
                },
            )
            .await?;
        let more = page.len() == 1000;
        before = page.last().map(|r| (r.created_at, r.id));
        out.extend(page);
        if !more {
            return Ok(out);
        }
    }
}

async fn recovery(
    s: &Setup,
    _args: &BenchArgs,
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
        Scenario::Start {
            rate,
            seconds,
            calibrate_runs,
        } => start(&s, &args, rate, seconds, calibrate_runs).await?,
        Scenario::Scale { runs, queries } => scale(&s, &args, runs, queries).await?,
        Scenario::Recovery {
            runs,
            lease_ms,
            step_ms,
        } => recovery(&s, &args, runs, lease_ms, step_ms).await?,
    };
    print(&v, args.output);
    Ok(())
}
