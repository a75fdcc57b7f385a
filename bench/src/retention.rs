//! Retention under load (PostgreSQL): finished runs seeded over past days
//! with their events (one daily partition of `run_events` per day), then
//! the same open-loop load of sagas twice: alone, and while retention
//! deletes those runs in batches and drops their days of events, as the
//! `run_retention` workflow does (after a warm-up load alone, not
//! compared). Prints the runs deleted per second, each
//! day's drop and its exclusive lock, the longest locks seen on `runs` and
//! `run_events`, and the load's end-to-end latency each time (and alone
//! once more after retention).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Days, Utc};
use sagaflow_engine::engine::StartRequest;
use sagaflow_engine::ids::{RunId, TenantId};
use sagaflow_engine::state::RunState;
use sagaflow_engine::store::postgres::{PgStore, scale as seed};
use sagaflow_engine::store::{EventRows, Pace, RetentionStore, RunPurge, WorkflowScope};
use serde_json::{Value, json};

use crate::setup::{Setup, all_runs, count, executor, poll_until, summary};

/// The sizes of the scenario.
pub(crate) struct Sizes {
    pub runs: u64,
    pub days: u32,
    pub events: u32,
    pub rate: f64,
    pub seconds: u64,
    pub batch: u32,
    pub busy_percent: u32,
}

/// The slowest sagas during retention listed with their start times.
const SLOWEST: usize = 20;

/// The longest warm-up load, in seconds.
const WARMUP_S: u64 = 30;

/// The age retention keeps runs for, as the default configuration.
const AGE_DAYS: u64 = 90;

pub(crate) async fn retention(s: &Setup, z: Sizes) -> anyhow::Result<Value> {
    let pool =
        s.pg.clone()
            .context("the retention scenario needs a postgres:// database")?;
    let pg = PgStore::from_pool(pool.clone());
    let tenant = format!("bench-{}", RunId::new());
    let def = s.engine.resolve("bench_noop", 1)?;

    // Runs finished over `days` days ending 92 days ago (past the age and
    // the day of margin before their days of events are dropped).
    let today = Utc::now().date_naive();
    let last = today - Days::new(AGE_DAYS + 2);
    let first = last - Days::new(u64::from(z.days.max(1)));
    let until = last.and_hms_opt(23, 59, 0).unwrap_or_default().and_utc();
    let t = Instant::now();
    pg.add_event_days(first, z.days.max(1)).await?;
    seed::seed_finished(
        &pool,
        &tenant,
        &def.id,
        &["bench_noop".to_owned()],
        z.runs,
        100_000,
        until,
        z.days.max(1),
        |done| eprintln!("seeded {done} of {} runs", z.runs),
    )
    .await?;
    let mut events = 0;
    for d in 0..=u64::from(z.days.max(1)) {
        let day = (first + Days::new(d))
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc();
        events += seed::seed_events(
            &pool,
            &tenant,
            day,
            day + chrono::Duration::days(1),
            i64::from(z.events),
        )
        .await?;
        eprintln!("seeded {events} events");
    }
    // As months-old rows are: visited by (auto)vacuum.
    seed::vacuum_seeded(&pool).await?;
    let seed_s = t.elapsed().as_secs_f64();
    // Write the seeded pages out now, not under the first load.
    seed::checkpoint(&pool).await?;

    let exec = s.engine.start_executor(executor(256));
    // A first load alone, not compared: the seeded pages are still being
    // read into the cache and the first checkpoints after seeding written.
    let (warmup, _) = load(s, z.rate, z.seconds.min(WARMUP_S), None).await?;
    // The lock sampler (a query of pg_locks every 5 ms, not free on two
    // cores) runs through every compared load, not only during retention.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample_locks(pool.clone(), stop.clone()));
    let (alone, _) = load(s, z.rate, z.seconds, None).await?;

    let done = Arc::new(AtomicBool::new(false));
    let store = Arc::new(pg);
    let pace = Pace::new(z.busy_percent);
    let deleting = tokio::spawn(delete(
        store,
        TenantId::new(tenant),
        z.batch.max(1),
        pace,
        done.clone(),
    ));
    let (under, samples) = load(s, z.rate, z.seconds, Some(done)).await?;
    let (deleted, purged_at, dropped_at) = deleting.await??;
    // The sagas started while runs were deleted, and while days were dropped.
    let window = |from: Option<DateTime<Utc>>, to: DateTime<Utc>| {
        summary(
            samples
                .iter()
                .filter(|(at, _)| from.is_none_or(|f| *at >= f) && *at < to)
                .map(|(_, ms)| *ms)
                .collect(),
        )
    };
    // The slowest sagas of the load during retention, by start: set
    // against the days' `from`/`to` they show which part of a drop was
    // running when they were slowed.
    let mut slowest: Vec<&(DateTime<Utc>, f64)> = samples.iter().collect();
    slowest.sort_by(|a, b| b.1.total_cmp(&a.1));
    let slowest: Vec<Value> = slowest
        .iter()
        .take(SLOWEST)
        .map(|(at, ms)| json!({ "started": at, "ms": ms }))
        .collect();
    let purging = window(None, purged_at);
    let dropping = window(Some(purged_at), dropped_at);
    // The load alone again, so a baseline disturbed by the machine shows.
    seed::checkpoint(&pool).await?;
    let (after, _) = load(s, z.rate, z.seconds, None).await?;
    stop.store(true, Ordering::SeqCst);
    let (longest_any_s, longest_exclusive_s) = sampler.await??;
    exec.shutdown().await;

    let p99 = |v: &Value| v["p99_ms"].as_f64().unwrap_or(0.0);
    let change = |v: &Value| (p99(v) / p99(&alone["latency"]).max(f64::MIN_POSITIVE) - 1.0) * 100.0;
    Ok(json!({
        "scenario": "retention",
        "backend": "postgres",
        "runs_seeded": z.runs,
        "events_seeded": events,
        "days": z.days,
        "batch": z.batch,
        "busy_percent": pace.busy_percent(),
        "seed_s": seed_s,
        "load_warmup": warmup,
        "load_alone": alone,
        "load_alone_after": after,
        "load_during_retention": under,
        "p99_change_pct": change(&under["latency"]),
        "latency_while_deleting_runs": purging,
        "p99_change_while_deleting_runs_pct": change(&purging),
        "latency_while_dropping_days": dropping,
        "slowest_during_retention": slowest,
        "purged_at": purged_at,
        "p99_change_while_dropping_days_pct": change(&dropping),
        "retention": deleted,
        "longest_lock_any_s": longest_any_s,
        "longest_lock_exclusive_s": longest_exclusive_s,
    }))
}

/// Deletes the seeded runs in batches, then drops their days of events,
/// paced as `run_retention` paces them; sets `done` when finished.
/// Returns the figures, and when each part ended.
async fn delete(
    store: Arc<PgStore>,
    tenant: TenantId,
    batch: u32,
    pace: Pace,
    done: Arc<AtomicBool>,
) -> anyhow::Result<(Value, DateTime<Utc>, DateTime<Utc>)> {
    let now = Utc::now();
    let mut purge = RunPurge {
        tenant,
        scope: WorkflowScope::AllExcept(Vec::new()),
        finished_before: now - chrono::Duration::days(AGE_DAYS as i64),
        from: None,
        limit: batch,
        events: EventRows::OutsideDailyPartitions,
    };
    let t = Instant::now();
    let (mut runs, mut events, mut batches, mut longest_batch) = (0, 0, 0, 0.0f64);
    let mut busy_s = 0.0;
    loop {
        let b = Instant::now();
        let p = store.purge_runs(&purge).await?;
        purge.from = p.last_finished;
        let took = b.elapsed();
        busy_s += took.as_secs_f64();
        longest_batch = longest_batch.max(took.as_secs_f64() * 1000.0);
        (runs, events, batches) = (runs + p.runs, events + p.events, batches + 1);
        if p.runs < u64::from(batch) {
            break;
        }
        pace.rest(took).await;
    }
    let purge_s = t.elapsed().as_secs_f64();
    let purged_at = Utc::now();
    let before = now - chrono::Duration::days(AGE_DAYS as i64 + 1);
    let mut drops = Vec::new();
    loop {
        let (d, from) = (Instant::now(), Utc::now());
        let Some(day) = store.drop_event_day(before, pace).await? else {
            break;
        };
        drops.push(json!({
            "partition": day.partition, "events": day.events, "kept": day.moved,
            "locked_ms": day.locked_ms, "copy_ms": day.copy_ms,
            "index_ms": day.index_ms, "drop_ms": day.drop_ms, "took_ms": d.elapsed().as_millis() as u64,
            "from": from, "to": Utc::now(),
        }));
    }
    let total_s = t.elapsed().as_secs_f64();
    let dropped_at = Utc::now();
    done.store(true, Ordering::SeqCst);
    let v = json!({
        "runs_deleted": runs,
        "events_deleted_by_row": events,
        "batches": batches,
        "longest_batch_ms": longest_batch,
        "purge_s": purge_s,
        "runs_per_s": runs as f64 / purge_s.max(f64::MIN_POSITIVE),
        "runs_per_busy_s": runs as f64 / busy_s.max(f64::MIN_POSITIVE),
        "days_dropped": drops,
        "total_s": total_s,
    });
    Ok((v, purged_at, dropped_at))
}

/// Starts `bench_noop` sagas at `rate` a second for `seconds` (and, with
/// `until`, on until it is set); waits for them all and returns their
/// end-to-end latencies, and each saga's (start, latency in ms).
async fn load(
    s: &Setup,
    rate: f64,
    seconds: u64,
    until: Option<Arc<AtomicBool>>,
) -> anyhow::Result<(Value, Vec<(DateTime<Utc>, f64)>)> {
    let tenant = TenantId::new(format!("bench-{}", RunId::new()));
    let every = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let t0 = tokio::time::Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    let mut i = 0u64;
    loop {
        let over = t0.elapsed() >= Duration::from_secs(seconds);
        if over && until.as_ref().is_none_or(|u| u.load(Ordering::SeqCst)) {
            break;
        }
        tokio::time::sleep_until(t0 + every.mul_f64(i as f64)).await;
        let engine = s.engine.clone();
        let req = StartRequest {
            tenant_id: tenant.clone(),
            ..StartRequest::new("", "bench_noop", json!({ "i": i }))
        };
        calls.spawn(async move { engine.start(req).await.map(|_| ()) });
        i += 1;
    }
    let offered_s = t0.elapsed().as_secs_f64();
    while let Some(r) = calls.join_next().await {
        r??;
    }
    let store = s.store.clone();
    let t = tenant.clone();
    poll_until(
        Duration::from_secs(600),
        "the load's runs completed",
        || {
            let (store, t) = (store.clone(), t.clone());
            async move { Ok(count(&store, &t, RunState::Completed).await? >= i) }
        },
    )
    .await?;
    let samples: Vec<(DateTime<Utc>, f64)> = all_runs(s, &tenant)
        .await?
        .iter()
        .filter_map(|r| r.finished_at.map(|f| (r.created_at, f - r.created_at)))
        .map(|(at, d)| (at, d.num_microseconds().unwrap_or(0) as f64 / 1000.0))
        .collect();
    let v = json!({
        "sagas": i,
        "offered_per_s": rate,
        "over_s": offered_s,
        "latency": summary(samples.iter().map(|(_, ms)| *ms).collect()),
    });
    Ok((v, samples))
}

/// Until `stop`: the longest any other transaction has held a lock on
/// `runs` or `run_events` (any mode), and the longest it has held one that
/// blocks writes (share modes and stronger), in seconds.
async fn sample_locks(pool: sqlx::PgPool, stop: Arc<AtomicBool>) -> anyhow::Result<(f64, f64)> {
    let (mut any, mut exclusive) = (0.0f64, 0.0f64);
    while !stop.load(Ordering::SeqCst) {
        let (a, e) = seed::held_locks(&pool).await?;
        (any, exclusive) = (any.max(a), exclusive.max(e));
        tokio::time::sleep(Duration::from_millis(5)).await; // lock-sampling poll interval
    }
    Ok((any, exclusive))
}
