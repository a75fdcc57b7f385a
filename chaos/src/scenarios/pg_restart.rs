//! Scenario 3, PostgreSQL restarts: the engine runs on a private throwaway
//! cluster (never the shared server) which is crashed
//! (`pg_ctl stop -m immediate`) and started again, cycle after cycle, while
//! clients start and read runs. The engine must stay up, answer
//! UNAVAILABLE (never INTERNAL, never hang) while the store is down,
//! reconnect, and never hold more connections than its two pools allow.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Mutex;

use crate::client::{Api, Codes};
use crate::db::{self, PrivateCluster};
use crate::process::{API_POOL, Engine, EngineConfig, HOT_POOL, TENANT};
use crate::report::percentile;
use crate::scenarios::finish_report;
use crate::{ChaosError, Options, Report, Result, check, workflows};

const POOL: u32 = 6;
const CLIENTS: usize = 4;

pub async fn run(opts: &Options) -> Result<Report> {
    let mut report = Report::new("pg-restart");
    let dir = opts.work_dir.join("pg-restart");
    std::fs::create_dir_all(dir.join("workflows"))
        .map_err(ChaosError::io(dir.display().to_string()))?;
    let cluster = Arc::new(
        tokio::task::spawn_blocking(PrivateCluster::init)
            .await
            .map_err(|e| ChaosError::Cluster(e.to_string()))??,
    );
    blocking(&cluster, PrivateCluster::start).await?;
    report.fact(
        "private cluster",
        format!("port {} in {}", cluster.port, cluster.dir().display()),
    );
    workflows::write(
        &dir.join("workflows"),
        &[(
            "ledger_saga.toml",
            workflows::ledger("ledger_saga", 3, "compensate", 20_000, 1_000),
        )],
    )?;
    let config = EngineConfig::new(&cluster.url(), &dir.join("workflows"), 2_000, POOL)
        .write(&dir, "engine")?;
    let mut engine = Engine::start(
        &opts.bin,
        &config,
        "pg-restart",
        &dir.join("pg-restart.log"),
    )
    .await?;

    // Codes while the store is up, and while it is down.
    let up_codes = Codes::default();
    let down_codes = Codes::default();
    let store_up = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicU64::new(0));
    // The first successful start after each restart.
    let restarted_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let recoveries: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(Vec::new()));
    // How long StartWorkflow took to answer when called with the store down.
    let down_latency: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let up = Api::new(&engine.grpc, "chaos-crm", up_codes.clone())?;
        let down = Api::new(&engine.grpc, "chaos-crm", down_codes.clone())?;
        let (store_up, stop, started) = (store_up.clone(), stop.clone(), started.clone());
        let (restarted_at, recoveries) = (restarted_at.clone(), recoveries.clone());
        let down_latency = down_latency.clone();
        clients.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let was_up = store_up.load(Ordering::Relaxed);
                let api = if was_up { &up } else { &down };
                let input = json!({"c": c, "i": i, "ledger": {"sleep_ms": 10, "fail_step": if i.is_multiple_of(5) { "l3" } else { "" }}});
                let t = Instant::now();
                let res = api.start("ledger_saga", &input, &format!("pg-{c}-{i}")).await;
                if !was_up {
                    down_latency.lock().await.push(t.elapsed().as_millis() as u64);
                }
                if let Ok(id) = &res {
                    started.fetch_add(1, Ordering::Relaxed);
                    if let Some(t) = restarted_at.lock().await.take() {
                        recoveries.lock().await.push(t.elapsed().as_millis() as u64);
                    }
                    let api = if store_up.load(Ordering::Relaxed) { &up } else { &down };
                    let _ = api.get(id).await;
                }
                tokio::time::sleep(Duration::from_millis(20)).await; // the clients' pace
            }
        }));
    }

    // Peak connections of the engine, sampled while the store is up.
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (peak, stop, store_up, url) =
            (peak.clone(), stop.clone(), store_up.clone(), cluster.url());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if store_up.load(Ordering::Relaxed)
                    && let Ok(mut conn) =
                        <sqlx::PgConnection as sqlx::Connection>::connect(&url).await
                {
                    while store_up.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                        let n: Result<i64, _> = sqlx::query_scalar(
                            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' \
                             AND pid <> pg_backend_pid()",
                        )
                        .fetch_one(&mut conn)
                        .await;
                        match n {
                            Ok(n) => {
                                peak.fetch_max(n as u64, Ordering::Relaxed);
                            }
                            Err(_) => break,
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await; // sampling interval
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await; // sampling interval
            }
        })
    };

    let (lo, hi) = opts.counts.pg_up_ms;
    let mut outage_ms = Vec::new();
    for _ in 0..opts.counts.pg_cycles {
        super::random_pause(lo, hi).await; // the store stays up this long
        store_up.store(false, Ordering::Relaxed);
        let t = Instant::now();
        blocking(&cluster, PrivateCluster::crash).await?;
        super::random_pause(1_000, 3_000).await; // the store stays down this long
        blocking(&cluster, PrivateCluster::start).await?;
        outage_ms.push(t.elapsed().as_millis() as u64);
        *restarted_at.lock().await = Some(Instant::now());
        store_up.store(true, Ordering::Relaxed);
    }
    // One more stretch with the store up, so that runs started late can end.
    super::random_pause(lo, lo).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    let _ = sampler.await;
    report.recovery_ms = recoveries.lock().await.clone();
    report.fact(
        "recovery",
        "from PostgreSQL accepting connections again to the engine's next successful StartWorkflow",
    );
    report.kills = opts.counts.pg_cycles;
    report.fact(
        "PostgreSQL crashes (pg_ctl stop -m immediate)",
        opts.counts.pg_cycles,
    );
    report.fact(
        "outage lengths ms (crash to started again)",
        format!("{outage_ms:?}"),
    );
    report.fact("runs started (OK answers)", started.load(Ordering::Relaxed));
    let up = up_codes.snapshot();
    let down = down_codes.snapshot();
    report.fact("codes while the store was up", format!("{up:?}"));
    report.fact("codes while the store was down", format!("{down:?}"));
    let lat = down_latency.lock().await.clone();
    report.fact(
        "StartWorkflow answer time with the store down (ms)",
        format!(
            "p50 {:?}, p99 {:?}, max {:?} ({} calls; the client deadline is 10 s)",
            percentile(&lat, 50.0),
            percentile(&lat, 99.0),
            lat.iter().max(),
            lat.len()
        ),
    );
    let bad_down: BTreeMap<_, _> = down
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "Ok" | "Unavailable"))
        .collect();
    report.bar(
        "while the store is down: only UNAVAILABLE (or OK), no INTERNAL, no hang",
        bad_down.is_empty(),
        format!("{bad_down:?}"),
    );
    let peak = peak.load(Ordering::Relaxed);
    report.fact("peak engine connections (pg_stat_activity)", peak);
    report.bar(
        &format!("peak connections <= pool sizes ({POOL} + {HOT_POOL} + {API_POOL})"),
        peak <= u64::from(POOL + HOT_POOL + API_POOL),
        format!("{peak}"),
    );
    let alive = engine.alive();
    report.bar(
        "the engine never crashed (same process throughout)",
        alive,
        "",
    );

    let pool = db::connect(&cluster.url()).await?;
    let open = db::wait_terminal(&pool, TENANT, Duration::from_secs(300)).await?;
    report.fact("runs not terminal after the wait", open);
    engine.kill();
    let effects = check::ledger_effects(&pool).await?;
    let findings = check::check(&pool, TENANT, &effects).await?;
    let all = Codes::default();
    for (k, v) in up.iter().chain(down.iter()) {
        all.add_n(k, *v);
    }
    finish_report(&mut report, &findings, &dir, &all);
    pool.close().await;
    drop(cluster);
    Ok(report)
}

/// Runs a cluster command (which waits for the server) off the runtime.
async fn blocking(
    cluster: &Arc<PrivateCluster>,
    f: fn(&PrivateCluster) -> Result<()>,
) -> Result<()> {
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || f(&c))
        .await
        .map_err(|e| ChaosError::Cluster(e.to_string()))?
}
