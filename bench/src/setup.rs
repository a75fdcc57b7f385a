//! What every scenario shares: the built-in bench workflows, the engine on
//! the measured store, executor options, counting and the figures' summary.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sagaflow_engine::Engine;
use sagaflow_engine::clock::SystemClock;
use sagaflow_engine::definition::{self, Definitions};
use sagaflow_engine::executor::ExecutorOptions;
use sagaflow_engine::ids::TenantId;
use sagaflow_engine::state::RunState;
use sagaflow_engine::store::{RunFilter, Store, StoreError};
use serde_json::{Value, json};

use crate::{Host, Options};

/// The built-in benchmark saga: ten no-op steps.
pub fn bench_definition() -> String {
    let mut t = String::from(
        "name = \"bench_noop\"\nversion = 1\ndescription = \"Ten no-op steps\"\n\
         search_attributes = [\"subscriber_id\"]\n\
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

/// CPU seconds used so far by processes whose `comm` is `name` (or by this
/// process when `None`), from /proc. Zero where /proc is not available.
pub(crate) fn cpu_seconds(name: Option<&str>) -> f64 {
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

/// This process's resident memory, in MiB (0 where /proc is missing).
pub(crate) fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(crate) struct Setup {
    pub(crate) host: Arc<dyn Host>,
    pub(crate) url: String,
    pub(crate) engine: Engine,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) pg: Option<sqlx::PgPool>,
    pub(crate) backend: &'static str,
    _dir: Option<tempfile::TempDir>,
}

pub(crate) async fn setup(host: Arc<dyn Host>, args: &Options) -> anyhow::Result<Setup> {
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
    let (store, deps) = host.open_store(&url, args.connections).await?;
    let registry = host.registry(&deps);
    let mut defs = Definitions::default();
    let [timer, signal] = crate::waits::wait_definitions();
    for (text, name) in [
        (bench_definition(), "bench_noop (built in)"),
        (sleep_definition(), "bench_sleep (built in)"),
        timer,
        signal,
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
        host,
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

pub(crate) fn executor(concurrency: usize) -> ExecutorOptions {
    ExecutorOptions {
        owner: "bench".into(),
        max_in_flight: concurrency,
        claim_batch: 128,
        poll_interval: Duration::from_millis(100),
        ..ExecutorOptions::default()
    }
}

pub(crate) async fn count(
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

/// Waits until no run is active, polling the active runs' partial index
/// (its cost follows the runs still active, so the poll takes little from
/// the engine it measures).
pub(crate) async fn until_none_active(s: &Setup, limit: Duration) -> anyhow::Result<()> {
    poll_until(limit, "every run finishes", || async {
        Ok(s.store.count_active().await?.iter().all(|(_, n)| *n == 0))
    })
    .await
}

/// p50/p99/p99.9 and the count of `samples` (milliseconds), as JSON.
pub(crate) fn summary(mut samples: Vec<f64>) -> Value {
    samples.sort_by(|a, b| a.total_cmp(b));
    json!({
        "n": samples.len(),
        "p50_ms": percentile(&samples, 0.50),
        "p99_ms": percentile(&samples, 0.99),
        "p999_ms": percentile(&samples, 0.999),
        "max_ms": samples.last().copied().unwrap_or(0.0),
    })
}

/// Calls made before each timed series.
const WARMUP_CALLS: usize = 20;

/// Times `n` calls of `f` (milliseconds each), after up to
/// [`WARMUP_CALLS`] untimed ones.
pub(crate) async fn time_calls<F, Fut>(n: usize, mut f: F) -> anyhow::Result<Value>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    // Untimed calls first: the first calls open the pools' connections and
    // fill the server's caches, which is not what the figures describe.
    for i in 0..WARMUP_CALLS.min(n) {
        f(i).await?;
    }
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        f(i).await?;
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(summary(samples))
}

/// Polls `check` every 50 ms until it holds, for at most `limit`.
pub(crate) async fn poll_until<F, Fut>(
    limit: Duration,
    what: &str,
    mut check: F,
) -> anyhow::Result<()>
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

/// The tenant's runs, all of them, in pages of 1,000.
pub(crate) async fn all_runs(
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
