//! Cron schedules: cron arithmetic on an injected clock (UTC and
//! Europe/Berlin across both 2026 DST changes), exactly-once firing with
//! three schedulers on one PostgreSQL database while they are stopped,
//! crashed and restarted, the overlap and catch-up policies, the schedule
//! API, and seeding of the default schedules.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

#[macro_use]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sagaflow_engine::Engine;
use sagaflow_engine::clock::ManualClock;
use sagaflow_engine::error::Error;
use sagaflow_engine::executor::{ExecutorHandle, ExecutorOptions};
use sagaflow_engine::handler::{Registry, StepOutput};
use sagaflow_engine::ids::TenantId;
use sagaflow_engine::schedule::{
    CatchupPolicy, FireOutcome, FireRecord, NewSchedule, OverlapPolicy, Schedule, ScheduleId,
    SchedulerHandle, SchedulerOptions, SeedSchedule, fire_key,
};
use sagaflow_engine::state::RunState;
use sagaflow_engine::store::{RunFilter, Store};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use support::*;
use tokio::sync::Semaphore;

on_both_backends!(
    cron_arithmetic_on_an_injected_clock,
    invalid_schedules_are_refused,
    overlap_skip_never_runs_two_at_once,
    overlap_buffer_one_starts_the_buffered_fire_after_the_run,
    catchup_policies_after_downtime,
    pause_resume_trigger_delete,
);

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A one-step workflow on the built-in no-op handler.
fn noop_toml(name: &str) -> String {
    format!(
        "name = \"{name}\"\nversion = 1\n[[steps]]\nname = \"s1\"\nhandler = \"builtin.noop\"\n"
    )
}

/// A one-step workflow whose step waits for a permit of the test's gate.
fn gated_toml(name: &str) -> String {
    format!(
        "name = \"{name}\"\nversion = 1\n[defaults]\ntimeout_ms = 60000\n\
         [[steps]]\nname = \"slow\"\nhandler = \"test.gate\"\n"
    )
}

/// A step handler that blocks until the test releases it, and records the
/// most calls it ever saw at once.
#[derive(Clone)]
struct Gate {
    permits: Arc<Semaphore>,
    running: Arc<AtomicUsize>,
    max_running: Arc<AtomicUsize>,
}

impl Gate {
    fn new() -> Self {
        Self {
            permits: Arc::new(Semaphore::new(0)),
            running: Arc::default(),
            max_running: Arc::default(),
        }
    }

    fn release(&self, n: usize) {
        self.permits.add_permits(n);
    }

    fn register(&self, r: &mut Registry) {
        let g = self.clone();
        r.register_fn("test.gate", move |_req| {
            let g = g.clone();
            async move {
                let now = g.running.fetch_add(1, Ordering::SeqCst) + 1;
                g.max_running.fetch_max(now, Ordering::SeqCst);
                let permit = g.permits.acquire().await;
                if let Ok(p) = permit {
                    p.forget();
                }
                g.running.fetch_sub(1, Ordering::SeqCst);
                Ok(StepOutput::new())
            }
        });
    }
}

async fn engine_with(
    store: Arc<dyn Store>,
    tomls: &[String],
    clock: &ManualClock,
    gate: Option<&Gate>,
) -> Engine {
    let mut registry = Registry::new().with_builtins();
    if let Some(g) = gate {
        g.register(&mut registry);
    }
    let defs = definitions(&registry, tomls);
    Engine::new(store, Arc::new(registry), defs, Arc::new(clock.clone()))
        .await
        .unwrap()
}

/// A scheduler that only runs when the test ticks it (its own poll is an
/// hour of real time away).
fn ticked(engine: &Engine) -> SchedulerHandle {
    engine.start_scheduler(SchedulerOptions {
        poll_interval: Duration::from_secs(3600),
        ..SchedulerOptions::default()
    })
}

/// An executor whose leases outlive the manual clock's jumps.
fn executor(engine: &Engine) -> ExecutorHandle {
    engine.start_executor(ExecutorOptions {
        lease: Duration::from_secs(86_400),
        ..fast("x")
    })
}

fn new_schedule(name: &str, cron: &str, zone: &str, workflow: &str) -> NewSchedule {
    NewSchedule {
        timezone: zone.into(),
        ..NewSchedule::new(&tenant(), name, cron, workflow)
    }
}

async fn fires(engine: &Engine, id: ScheduleId) -> Vec<FireRecord> {
    engine
        .schedule_fires(&tenant(), id, None, 100_000)
        .await
        .unwrap()
}

fn outcomes(fires: &[FireRecord]) -> Vec<FireOutcome> {
    fires.iter().map(|f| f.outcome).collect()
}

#[track_caller]
fn assert_not_found<T: std::fmt::Debug>(r: Result<T, Error>) {
    assert!(
        matches!(r, Err(Error::ScheduleNotFound(_))),
        "expected ScheduleNotFound, got {r:?}"
    );
}

async fn tick(s: &SchedulerHandle) {
    s.tick_now().await.expect("scheduler running");
}

async fn runs_of(engine: &Engine, id: ScheduleId) -> Vec<sagaflow_engine::store::RunRecord> {
    let all = engine
        .list(
            &tenant(),
            &RunFilter {
                limit: 100_000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    all.into_iter()
        .filter(|r| r.schedule_id == Some(id))
        .collect()
}

// ---------------------------------------------------------------------------
// Cron arithmetic with an injected clock
// ---------------------------------------------------------------------------

/// Walks the clock to each expected fire: one second before it nothing
/// fires, at it exactly one run starts for exactly that time.
async fn walk(
    engine: &Engine,
    s: &SchedulerHandle,
    clock: &ManualClock,
    id: ScheduleId,
    expected: &[&str],
) {
    let before = fires(engine, id).await.len();
    for (i, want) in expected.iter().enumerate() {
        let want = at(want);
        clock.set(want - chrono::Duration::seconds(1));
        tick(s).await;
        assert_eq!(
            fires(engine, id).await.len(),
            before + i,
            "nothing fires before {want}"
        );
        clock.set(want);
        tick(s).await;
        let got = fires(engine, id).await;
        assert_eq!(got.len(), before + i + 1, "one fire at {want}");
        let last = got.last().unwrap();
        assert_eq!(last.scheduled_time, want);
        assert_eq!(last.outcome, FireOutcome::Started);
        let run = engine.get(&tenant(), last.run_id.unwrap()).await.unwrap();
        assert_eq!(
            run.idempotency_key.as_deref(),
            Some(fire_key(id, want).as_str())
        );
        assert_eq!(run.schedule_id, Some(id));
    }
}

async fn cron_arithmetic_on_an_injected_clock(store: Arc<dyn Store>) {
    let clock = ManualClock::new(at("2026-03-27T12:00:00Z"));
    let engine = engine_with(store, &[noop_toml("tick")], &clock, None).await;
    let s = ticked(&engine);
    let mk = |name: &str, cron: &str, zone: &str| NewSchedule {
        overlap_policy: OverlapPolicy::Allow,
        catchup_policy: CatchupPolicy::All,
        ..new_schedule(name, cron, zone, "tick")
    };
    let utc = engine
        .create_schedule(mk("daily-utc", "0 2 * * *", ""))
        .await
        .unwrap();
    let berlin = engine
        .create_schedule(mk("daily-berlin", "0 2 * * *", "Europe/Berlin"))
        .await
        .unwrap();
    assert_eq!(utc.timezone, "UTC");
    assert_eq!(utc.next_fire_at, Some(at("2026-03-28T02:00:00Z")));
    assert_eq!(berlin.next_fire_at, Some(at("2026-03-28T01:00:00Z")));

    // Spring forward (2026-03-29: 02:00 CET does not exist; it fires once
    // at 03:00 CEST = 01:00 UTC). The two schedules are walked one after
    // the other, so each walk steps over the other's fires: walk the
    // earlier one of each day first.
    for (id, times) in [
        (berlin.id, vec!["2026-03-28T01:00:00Z"]),
        (utc.id, vec!["2026-03-28T02:00:00Z"]),
        (berlin.id, vec!["2026-03-29T01:00:00Z"]),
        (utc.id, vec!["2026-03-29T02:00:00Z"]),
        (berlin.id, vec!["2026-03-30T00:00:00Z"]),
        (utc.id, vec!["2026-03-30T02:00:00Z"]),
    ] {
        walk(&engine, &s, &clock, id, &times).await;
    }
    // Fall back (2026-10-25: 02:00 happens twice; it fires once, at 02:00
    // CEST = 00:00 UTC). Pause both over the summer so nothing is due.
    for id in [utc.id, berlin.id] {
        engine
            .pause_schedule(&tenant(), id, "summer")
            .await
            .unwrap();
    }
    clock.set(at("2026-10-24T12:00:00Z"));
    for id in [utc.id, berlin.id] {
        let r = engine.resume_schedule(&tenant(), id).await.unwrap();
        assert!(!r.paused);
    }
    for (id, times) in [
        (berlin.id, vec!["2026-10-25T00:00:00Z"]),
        (utc.id, vec!["2026-10-25T02:00:00Z"]),
        (berlin.id, vec!["2026-10-26T01:00:00Z"]),
        (utc.id, vec!["2026-10-26T02:00:00Z"]),
    ] {
        walk(&engine, &s, &clock, id, &times).await;
    }
    // Nothing else fired in the repeated hour of 2026-10-25.
    clock.set(at("2026-10-26T02:00:00Z"));
    tick(&s).await;
    let berlin_fires: Vec<_> = fires(&engine, berlin.id)
        .await
        .into_iter()
        .map(|f| f.scheduled_time.to_rfc3339())
        .collect();
    assert_eq!(
        berlin_fires,
        [
            "2026-03-28T01:00:00+00:00",
            "2026-03-29T01:00:00+00:00",
            "2026-03-30T00:00:00+00:00",
            "2026-10-25T00:00:00+00:00",
            "2026-10-26T01:00:00+00:00"
        ]
    );

    // Every five minutes, in Berlin across the fall-back hour: every five
    // real minutes, none twice, none left out.
    clock.set(at("2026-10-24T23:58:00Z"));
    let five = engine
        .create_schedule(mk("five", "*/5 * * * *", "Europe/Berlin"))
        .await
        .unwrap();
    assert_eq!(five.next_fire_at, Some(at("2026-10-25T00:00:00Z")));
    let expected: Vec<String> = (0..36)
        .map(|i| (at("2026-10-25T00:00:00Z") + chrono::Duration::minutes(5 * i)).to_rfc3339())
        .collect();
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    walk(&engine, &s, &clock, five.id, &expected).await;
    s.shutdown().await;
}

async fn invalid_schedules_are_refused(store: Arc<dyn Store>) {
    let clock = ManualClock::new(at("2026-01-01T00:00:00Z"));
    let conc = "name = \"keyed\"\nversion = 1\n[concurrency]\nkey = \"/subscriber_id\"\n\
                [[steps]]\nname = \"s1\"\nhandler = \"builtin.noop\"\n"
        .to_string();
    let engine = engine_with(store, &[noop_toml("tick"), conc], &clock, None).await;
    let cases = [
        (new_schedule("a", "0 2 * *", "", "tick"), "five fields"),
        (new_schedule("a", "0 0 2 * * *", "", "tick"), "five fields"),
        (
            new_schedule("a", "99 * * * *", "", "tick"),
            "invalid cron expression \"99 * * * *\"",
        ),
        (
            new_schedule("a", "0 0 31 2 *", "", "tick"),
            "matches no date",
        ),
        (
            new_schedule("a", "0 2 * * *", "Europe/Atlantis", "tick"),
            "Europe/Atlantis",
        ),
        (
            new_schedule("a", "0 2 * * *", "", "nope"),
            "unknown workflow \"nope\"",
        ),
        (
            new_schedule("", "0 2 * * *", "", "tick"),
            "invalid schedule name",
        ),
        (
            NewSchedule {
                input: json!([1]),
                ..new_schedule("a", "0 2 * * *", "", "tick")
            },
            "input must be a JSON object",
        ),
        (
            new_schedule("a", "0 2 * * *", "", "keyed"),
            "/subscriber_id",
        ),
    ];
    for (req, needle) in cases {
        let shown = format!("{} {:?} {:?}", req.cron, req.timezone, req.workflow_name);
        match engine.create_schedule(req).await {
            Err(Error::InvalidArgument(m)) => assert!(m.contains(needle), "{shown}: {m}"),
            other => panic!("{shown}: expected InvalidArgument, got {other:?}"),
        }
    }
    assert!(
        engine.list_schedules(&tenant()).await.unwrap().is_empty(),
        "nothing stored"
    );
    engine
        .create_schedule(new_schedule("a", "0 2 * * *", "", "tick"))
        .await
        .unwrap();
    match engine
        .create_schedule(new_schedule("a", "0 3 * * *", "", "tick"))
        .await
    {
        Err(Error::ScheduleExists(n)) => assert_eq!(n, "a"),
        other => panic!("expected ScheduleExists, got {other:?}"),
    }
    // The same name in another tenant is another schedule.
    engine
        .create_schedule(NewSchedule {
            tenant_id: TenantId::new("t2"),
            ..new_schedule("a", "0 3 * * *", "", "tick")
        })
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------
// Exactly once with three schedulers
// ---------------------------------------------------------------------------

struct Replica {
    engine: Engine,
    scheduler: Option<SchedulerHandle>,
}

async fn replica(pool: &sqlx::PgPool, clock: &ManualClock) -> Replica {
    let own = PgPoolOptions::new()
        .max_connections(3)
        .connect_with((*pool.connect_options()).clone())
        .await
        .unwrap();
    let engine = engine_with(postgres(own), &[noop_toml("tick")], clock, None).await;
    // A short real poll on top of the test's ticks: passes overlap and
    // race each other all the time.
    let scheduler = Some(engine.start_scheduler(SchedulerOptions {
        poll_interval: Duration::from_millis(20),
        ..SchedulerOptions::default()
    }));
    Replica { engine, scheduler }
}

/// Three schedulers on one database fire an every-minute schedule for 660
/// ticks of the manual clock (one tick: the clock moves one period, then
/// every live scheduler is ticked at once). Along the way schedulers are
/// shut down, crashed (aborted, possibly mid-transaction), and restarted as
/// new engine instances with new pools, and for a while none runs at all.
/// Every tick produced exactly one run: no duplicates, no misses
/// (catch-up ALL).
#[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
async fn three_schedulers_fire_every_tick_exactly_once(pool: sqlx::PgPool) {
    const TICKS: usize = 660;
    let start = at("2026-01-01T00:00:20Z");
    let clock = ManualClock::new(start);
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(replica(&pool, &clock).await);
    }
    let schedule = replicas[0]
        .engine
        .create_schedule(NewSchedule {
            overlap_policy: OverlapPolicy::Allow,
            catchup_policy: CatchupPolicy::All,
            ..new_schedule("every-minute", "* * * * *", "", "tick")
        })
        .await
        .unwrap();
    let mut rng = fastrand::Rng::with_seed(5);
    let (mut stops, mut crashes, mut restarts, mut conflicts) = (0, 0, 0, 0);
    for i in 1..=TICKS {
        clock.advance(Duration::from_secs(60));
        let outage = (300..310).contains(&i);
        for r in replicas.iter_mut() {
            match r.scheduler.take() {
                Some(h) if outage || rng.u8(..) < 8 => {
                    if rng.bool() {
                        h.shutdown().await;
                        stops += 1;
                    } else {
                        h.abort();
                        crashes += 1;
                    }
                }
                Some(h) => r.scheduler = Some(h),
                None if !outage && rng.u8(..) < 64 => {
                    *r = replica(&pool, &clock).await;
                    restarts += 1;
                }
                None => {}
            }
        }
        let live: Vec<&SchedulerHandle> = replicas
            .iter()
            .filter_map(|r| r.scheduler.as_ref())
            .collect();
        for report in futures::future::join_all(live.iter().map(|s| s.tick_now())).await {
            conflicts += report.map_or(0, |r| r.conflicts);
        }
    }
    // Make sure one replica is up and has caught up.
    if replicas[0].scheduler.is_none() {
        replicas[0] = replica(&pool, &clock).await;
    }
    replicas[0]
        .scheduler
        .as_ref()
        .unwrap()
        .tick_now()
        .await
        .unwrap();
    for r in replicas.iter_mut() {
        if let Some(s) = r.scheduler.take() {
            s.shutdown().await;
        }
    }
    assert!(
        stops > 10 && crashes > 10 && restarts > 20,
        "{stops} {crashes} {restarts}"
    );
    // The replicas did race for the same fires (and lost without writing).
    assert!(conflicts > 0, "no scheduler ever lost a race");

    let expected: BTreeSet<String> = (1..=TICKS as i64)
        .map(|k| {
            fire_key(
                schedule.id,
                at("2026-01-01T00:00:00Z") + chrono::Duration::minutes(k),
            )
        })
        .collect();
    let per_key: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT idempotency_key, count(*) FROM runs WHERE schedule_id = $1 GROUP BY idempotency_key",
    )
    .bind(schedule.id.to_string())
    .fetch_all(&pool)
    .await
    .unwrap();
    let duplicates: Vec<_> = per_key.iter().filter(|(_, n)| *n > 1).collect();
    assert!(duplicates.is_empty(), "duplicate runs: {duplicates:?}");
    let got: BTreeSet<String> = per_key.into_iter().filter_map(|(k, _)| k).collect();
    let missing: Vec<_> = expected.difference(&got).collect();
    let extra: Vec<_> = got.difference(&expected).collect();
    assert!(
        missing.is_empty(),
        "{} ticks without a run: {missing:?}",
        missing.len()
    );
    assert!(extra.is_empty(), "runs for no tick: {extra:?}");

    let engine = &replicas[0].engine;
    let recorded = fires(engine, schedule.id).await;
    assert_eq!(recorded.len(), TICKS);
    assert!(
        recorded
            .iter()
            .all(|f| f.outcome == FireOutcome::Started && f.run_id.is_some())
    );
    let runs: BTreeMap<_, _> = runs_of(engine, schedule.id)
        .await
        .into_iter()
        .map(|r| (r.id, r))
        .collect();
    for f in &recorded {
        let run = &runs[&f.run_id.unwrap()];
        assert_eq!(
            run.idempotency_key,
            Some(fire_key(schedule.id, f.scheduled_time))
        );
    }
    let s = engine.get_schedule(&tenant(), schedule.id).await.unwrap();
    assert_eq!(
        s.next_fire_at,
        Some(at("2026-01-01T00:00:00Z") + chrono::Duration::minutes(TICKS as i64 + 1))
    );
    assert_eq!(
        s.last_fire_at,
        Some(at("2026-01-01T00:00:00Z") + chrono::Duration::minutes(TICKS as i64))
    );
}

// ---------------------------------------------------------------------------
// Overlap
// ---------------------------------------------------------------------------

async fn active_runs(engine: &Engine, id: ScheduleId) -> usize {
    runs_of(engine, id)
        .await
        .iter()
        .filter(|r| !r.state.is_terminal())
        .count()
}

async fn wait_completed(engine: &Engine, id: sagaflow_engine::ids::RunId) {
    let e = engine.clone();
    poll("the run to complete", Duration::from_secs(20), || {
        let e = e.clone();
        async move {
            (e.get(&tenant(), id).await.unwrap().state == RunState::Completed).then_some(())
        }
    })
    .await;
}

/// Waits until the gate's handler is running the schedule's active run, so
/// the next tick sees a run that is slower than the interval.
async fn wait_running(gate: &Gate) {
    let g = gate.clone();
    poll("the slow step to start", Duration::from_secs(20), || {
        let g = g.clone();
        async move { (g.running.load(Ordering::SeqCst) == 1).then_some(()) }
    })
    .await;
}

/// An every-minute schedule of the gated workflow, with an executor and a
/// ticked scheduler.
struct Slow {
    clock: ManualClock,
    gate: Gate,
    engine: Engine,
    exec: ExecutorHandle,
    s: SchedulerHandle,
    sched: Schedule,
}

impl Slow {
    async fn new(store: Arc<dyn Store>, overlap: OverlapPolicy) -> Self {
        let clock = ManualClock::new(at("2026-01-01T00:00:30Z"));
        let gate = Gate::new();
        let engine = engine_with(store, &[gated_toml("slow")], &clock, Some(&gate)).await;
        let exec = executor(&engine);
        let s = ticked(&engine);
        let sched = engine
            .create_schedule(NewSchedule {
                overlap_policy: overlap,
                catchup_policy: CatchupPolicy::All,
                ..new_schedule("slow", "* * * * *", "", "slow")
            })
            .await
            .unwrap();
        Self {
            clock,
            gate,
            engine,
            exec,
            s,
            sched,
        }
    }

    async fn shutdown(self) {
        assert_eq!(
            self.gate.max_running.load(Ordering::SeqCst),
            1,
            "never two runs at once"
        );
        self.s.shutdown().await;
        self.exec.shutdown().await;
    }
}

async fn overlap_skip_never_runs_two_at_once(store: Arc<dyn Store>) {
    let t = Slow::new(store, OverlapPolicy::Skip).await;
    let Slow {
        clock,
        gate,
        engine,
        s,
        sched,
        ..
    } = &t;
    // Each run takes three intervals: it is released after the third tick
    // that finds it still running.
    let mut want = Vec::new();
    for i in 0..12 {
        clock.advance(Duration::from_secs(60));
        tick(s).await;
        want.push(if i % 3 == 0 {
            FireOutcome::Started
        } else {
            FireOutcome::Skipped
        });
        assert!(
            active_runs(engine, sched.id).await <= 1,
            "tick {i}: two active runs"
        );
        wait_running(gate).await;
        if i % 3 == 2 {
            let last = engine.get_schedule(&tenant(), sched.id).await.unwrap();
            gate.release(1);
            wait_completed(engine, last.last_workflow_id.unwrap()).await;
        }
    }
    let got = fires(engine, sched.id).await;
    assert_eq!(outcomes(&got), want);
    for f in got.iter().filter(|f| f.outcome == FireOutcome::Skipped) {
        assert!(
            f.detail.as_deref().unwrap().contains("still active"),
            "{f:?}"
        );
        assert!(f.run_id.is_none());
    }
    assert_eq!(runs_of(engine, sched.id).await.len(), 4);
    t.shutdown().await;
}

async fn overlap_buffer_one_starts_the_buffered_fire_after_the_run(store: Arc<dyn Store>) {
    let t = Slow::new(store, OverlapPolicy::BufferOne).await;
    let Slow {
        clock,
        gate,
        engine,
        s,
        sched,
        ..
    } = &t;
    for _ in 0..3 {
        clock.advance(Duration::from_secs(60));
        tick(s).await;
        wait_running(gate).await;
    }
    let got = fires(engine, sched.id).await;
    assert_eq!(
        outcomes(&got),
        [
            FireOutcome::Started,
            FireOutcome::Buffered,
            FireOutcome::Skipped
        ]
    );
    let buffered_time = got[1].scheduled_time;
    let first = got[0].run_id.unwrap();
    let s1 = engine.get_schedule(&tenant(), sched.id).await.unwrap();
    assert_eq!(s1.buffered_fire_at, Some(buffered_time));
    assert_eq!(active_runs(engine, sched.id).await, 1);

    // The active run ends: the next pass starts the buffered fire, for its
    // own scheduled time, without the clock moving.
    gate.release(1);
    wait_completed(engine, first).await;
    tick(s).await;
    let got = fires(engine, sched.id).await;
    assert_eq!(
        outcomes(&got),
        [
            FireOutcome::Started,
            FireOutcome::Started,
            FireOutcome::Skipped
        ]
    );
    let second = got[1].run_id.unwrap();
    let run = engine.get(&tenant(), second).await.unwrap();
    assert_eq!(run.idempotency_key, Some(fire_key(sched.id, buffered_time)));
    let s2 = engine.get_schedule(&tenant(), sched.id).await.unwrap();
    assert_eq!(s2.buffered_fire_at, None);
    assert_eq!(s2.last_workflow_id, Some(second));
    assert_eq!(
        s2.next_fire_at, s1.next_fire_at,
        "the cron rhythm is unchanged"
    );
    assert_eq!(active_runs(engine, sched.id).await, 1);
    gate.release(1);
    wait_completed(engine, second).await;
    t.shutdown().await;
}

// ---------------------------------------------------------------------------
// Catch-up
// ---------------------------------------------------------------------------

async fn catchup_policies_after_downtime(store: Arc<dyn Store>) {
    let clock = ManualClock::new(at("2026-01-01T00:00:30Z"));
    let engine = engine_with(store, &[noop_toml("tick")], &clock, None).await;
    let mut ids = BTreeMap::new();
    for policy in CatchupPolicy::ALL {
        let s = engine
            .create_schedule(NewSchedule {
                overlap_policy: OverlapPolicy::Allow,
                catchup_policy: policy,
                ..new_schedule(policy.as_str(), "*/5 * * * *", "", "tick")
            })
            .await
            .unwrap();
        ids.insert(policy.as_str(), s.id);
    }
    // No scheduler ran for an hour: 12 fires (00:05 … 01:00) are overdue
    // by more than the grace when one starts.
    clock.set(at("2026-01-01T01:02:30Z"));
    let s = engine.start_scheduler(SchedulerOptions {
        poll_interval: Duration::from_secs(3600),
        catchup_grace: Duration::from_secs(60),
        ..SchedulerOptions::default()
    });
    // (Its first poll runs at once; the tick makes sure a pass has run.)
    s.tick_now().await.unwrap();
    let times: Vec<_> = (1..=12)
        .map(|k| at("2026-01-01T00:00:00Z") + chrono::Duration::minutes(5 * k))
        .collect();

    let all = fires(&engine, ids["ALL"]).await;
    assert_eq!(outcomes(&all), vec![FireOutcome::Started; 12]);
    assert_eq!(
        all.iter().map(|f| f.scheduled_time).collect::<Vec<_>>(),
        times
    );

    let one = fires(&engine, ids["ONE"]).await;
    let mut want = vec![FireOutcome::Missed; 11];
    want.push(FireOutcome::Started);
    assert_eq!(outcomes(&one), want);
    assert_eq!(one[11].scheduled_time, at("2026-01-01T01:00:00Z"));
    assert_eq!(runs_of(&engine, ids["ONE"]).await.len(), 1);

    let none = fires(&engine, ids["NONE"]).await;
    assert_eq!(outcomes(&none), vec![FireOutcome::Missed; 12]);
    assert!(
        none[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("catch-up policy NONE")
    );
    assert!(runs_of(&engine, ids["NONE"]).await.is_empty());

    // Back to normal: the next fire is on time and runs under every policy.
    clock.set(at("2026-01-01T01:05:10Z"));
    s.tick_now().await.unwrap();
    for id in ids.values() {
        let f = fires(&engine, *id).await;
        let last = f.last().unwrap();
        assert_eq!(
            (last.scheduled_time, last.outcome),
            (at("2026-01-01T01:05:00Z"), FireOutcome::Started)
        );
        let sc = engine.get_schedule(&tenant(), *id).await.unwrap();
        assert_eq!(sc.next_fire_at, Some(at("2026-01-01T01:10:00Z")));
    }
    s.shutdown().await;
}

// ---------------------------------------------------------------------------
// Pause, resume, trigger, delete; tenants
// ---------------------------------------------------------------------------

async fn pause_resume_trigger_delete(store: Arc<dyn Store>) {
    let clock = ManualClock::new(at("2026-01-01T00:00:30Z"));
    let gate = Gate::new();
    let engine = engine_with(
        store,
        &[noop_toml("tick"), gated_toml("slow")],
        &clock,
        Some(&gate),
    )
    .await;
    let s = ticked(&engine);
    let sched = engine
        .create_schedule(new_schedule("hourly", "0 * * * *", "", "tick"))
        .await
        .unwrap();
    assert_eq!(sched.next_fire_at, Some(at("2026-01-01T01:00:00Z")));
    assert_eq!(sched.overlap_policy, OverlapPolicy::Skip);
    assert_eq!(sched.catchup_policy, CatchupPolicy::One);

    // Paused: nothing fires, not even after resuming (no catch-up).
    let p = engine
        .pause_schedule(&tenant(), sched.id, "maintenance window")
        .await
        .unwrap();
    assert!(p.paused);
    assert_eq!(p.pause_reason.as_deref(), Some("maintenance window"));
    clock.set(at("2026-01-01T03:30:00Z"));
    tick(&s).await;
    assert!(fires(&engine, sched.id).await.is_empty());
    let r = engine.resume_schedule(&tenant(), sched.id).await.unwrap();
    assert!(!r.paused && r.pause_reason.is_none());
    assert_eq!(r.next_fire_at, Some(at("2026-01-01T04:00:00Z")));
    tick(&s).await;
    assert!(fires(&engine, sched.id).await.is_empty());

    // Trigger: a run now; the next regular fire is unchanged.
    let started = engine
        .trigger_schedule(&tenant(), sched.id, "alice")
        .await
        .unwrap();
    assert!(started.created);
    assert_eq!(started.run.schedule_id, Some(sched.id));
    assert_eq!(started.run.workflow_name, "tick");
    let after = engine.get_schedule(&tenant(), sched.id).await.unwrap();
    assert_eq!(after.next_fire_at, Some(at("2026-01-01T04:00:00Z")));
    assert_eq!(after.last_workflow_id, Some(started.run.id));
    assert_eq!(after.last_fire_at, Some(at("2026-01-01T03:30:00Z")));
    // The triggered run is still active (no executor): SKIP refuses
    // another trigger and skips the next regular fire.
    match engine.trigger_schedule(&tenant(), sched.id, "alice").await {
        Err(Error::FailedPrecondition(m)) => assert!(m.contains("SKIP"), "{m}"),
        other => panic!("expected FailedPrecondition, got {other:?}"),
    }
    clock.set(at("2026-01-01T04:00:01Z"));
    tick(&s).await;
    assert_eq!(
        outcomes(&fires(&engine, sched.id).await),
        [FireOutcome::Skipped]
    );

    // Tenants: another tenant sees nothing.
    let other = TenantId::new("t2");
    assert_not_found(engine.get_schedule(&other, sched.id).await);
    assert_not_found(engine.pause_schedule(&other, sched.id, "x").await);
    assert_not_found(engine.resume_schedule(&other, sched.id).await);
    assert_not_found(engine.trigger_schedule(&other, sched.id, "x").await);
    assert_not_found(engine.delete_schedule(&other, sched.id).await);
    assert_not_found(engine.schedule_fires(&other, sched.id, None, 10).await);
    assert!(engine.list_schedules(&other).await.unwrap().is_empty());
    let listed: Vec<Schedule> = engine.list_schedules(&tenant()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_run_state, Some(RunState::Pending));

    // Delete: gone with its fire records; its runs stay.
    engine.delete_schedule(&tenant(), sched.id).await.unwrap();
    assert_not_found(engine.get_schedule(&tenant(), sched.id).await);
    assert_not_found(engine.delete_schedule(&tenant(), sched.id).await);
    engine.get(&tenant(), started.run.id).await.unwrap();
    s.shutdown().await;
}

// ---------------------------------------------------------------------------
// Seeding
// ---------------------------------------------------------------------------

/// Seeds are created once per name, only for loaded workflows, by one of
/// several replicas starting together, and never undo an operator's pause
/// or deletion.
#[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
async fn default_schedules_are_seeded_once(pool: sqlx::PgPool) {
    let clock = ManualClock::new(at("2026-01-01T00:00:30Z"));
    let tomls = [noop_toml("lifecycle_cleanup"), noop_toml("capacity_check")];
    let a = engine_with(postgres(pool.clone()), &tomls, &clock, None).await;
    let b = engine_with(postgres(pool.clone()), &tomls, &clock, None).await;
    let seeds = SeedSchedule::defaults(&tenant());
    assert_eq!(seeds.len(), 5);
    let (ra, rb) = tokio::join!(a.seed_schedules(&seeds), b.seed_schedules(&seeds));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.created.len() + rb.created.len(), 2, "{ra:?} {rb:?}");
    assert_eq!(
        ra.not_loaded,
        ["lifecycle_metrics", "reservation_expiry", "run_retention"]
    );
    let listed = a.list_schedules(&tenant()).await.unwrap();
    let by_name: BTreeMap<_, _> = listed.iter().map(|s| (s.name.as_str(), s)).collect();
    assert_eq!(
        by_name.keys().copied().collect::<Vec<_>>(),
        ["capacity_check", "lifecycle_cleanup"]
    );
    let cleanup = by_name["lifecycle_cleanup"];
    assert_eq!(
        (cleanup.cron.as_str(), cleanup.timezone.as_str()),
        ("0 2 * * *", "UTC")
    );
    assert_eq!(cleanup.next_fire_at, Some(at("2026-01-01T02:00:00Z")));
    assert_eq!(by_name["capacity_check"].cron, "*/15 * * * *");

    // The operator pauses one and deletes the other; a restart re-seeds.
    a.pause_schedule(&tenant(), cleanup.id, "not yet")
        .await
        .unwrap();
    a.delete_schedule(&tenant(), by_name["capacity_check"].id)
        .await
        .unwrap();
    let again = engine_with(postgres(pool), &tomls, &clock, None).await;
    let r = again.seed_schedules(&seeds).await.unwrap();
    assert!(r.created.is_empty(), "{r:?}");
    assert_eq!(r.kept, ["lifecycle_cleanup", "capacity_check"]);
    let listed = again.list_schedules(&tenant()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].paused, "the operator's pause stands");
    assert_eq!(listed[0].pause_reason.as_deref(), Some("not yet"));
}

#[tokio::test]
async fn default_schedules_are_seeded_once_sqlite() {
    let (store, _dir) = sqlite().await;
    let clock = ManualClock::new(at("2026-01-01T00:00:30Z"));
    let tomls = [
        noop_toml("lifecycle_metrics"),
        noop_toml("reservation_expiry"),
    ];
    let e = engine_with(store, &tomls, &clock, None).await;
    let seeds = SeedSchedule::defaults(&tenant());
    let r = e.seed_schedules(&seeds).await.unwrap();
    assert_eq!(r.created, ["lifecycle_metrics", "reservation_expiry"]);
    let r = e.seed_schedules(&seeds).await.unwrap();
    assert_eq!(r.kept, ["lifecycle_metrics", "reservation_expiry"]);
    let listed = e.list_schedules(&tenant()).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|s| (s.name.as_str(), s.cron.as_str()))
            .collect::<Vec<_>>(),
        [
            ("lifecycle_metrics", "*/5 * * * *"),
            ("reservation_expiry", "0 * * * *")
        ]
    );
}
