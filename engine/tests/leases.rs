//! Leases against real failures: an executor cut off from the database, a
//! paused one, clocks that disagree. Every handler invocation is logged
//! with monotonic timestamps, and the log proves that no attempt of a step
//! overlaps another and no stale attempt lands an effect.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sagaflow_engine::Engine;
use sagaflow_engine::clock::{Clock, SystemClock};
use sagaflow_engine::handler::{CallKind, Registry, StepError, StepOutput, StepRequest};
use sagaflow_engine::ids::RunId;
use sagaflow_engine::state::RunState;
use sagaflow_engine::store::Store;
use serde_json::{Value, json};
use support::proxy::Proxy;
use support::*;

/// One handler invocation.
#[derive(Debug, Clone)]
struct Invocation {
    instance: String,
    run: RunId,
    step: String,
    kind: CallKind,
    started: Instant,
    /// When its effect landed (the end of the handler).
    effect: Option<Instant>,
    /// When its future was dropped without landing the effect.
    dropped: Option<Instant>,
}

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Invocation>>>);

impl Log {
    fn all(&self) -> Vec<Invocation> {
        self.0.lock().unwrap().clone()
    }
}

/// Marks an invocation dropped unless its effect landed first.
struct DropMark(Log, usize);

impl Drop for DropMark {
    fn drop(&mut self) {
        let mut l = (self.0).0.lock().unwrap();
        if l[self.1].effect.is_none() {
            l[self.1].dropped = Some(Instant::now());
        }
    }
}

/// How an instance's handler behaves for one request: how long it works
/// (ignoring cancellation, as a careless handler would), or a fatal error.
type Behaviour = Arc<dyn Fn(&str, &StepRequest) -> Result<Duration, StepError> + Send + Sync>;

fn registry(instance: &str, log: &Log, behave: Behaviour) -> Registry {
    let mut r = Registry::new().with_builtins();
    for name in ["test.do", "test.undo"] {
        let (log, behave, instance) = (log.clone(), behave.clone(), instance.to_owned());
        r.register_fn(name, move |req: StepRequest| {
            let (log, behave, instance) = (log.clone(), behave.clone(), instance.clone());
            async move {
                let idx = {
                    let mut l = log.0.lock().unwrap();
                    l.push(Invocation {
                        instance: instance.clone(),
                        run: req.run_id,
                        step: req.step.clone(),
                        kind: req.kind,
                        started: Instant::now(),
                        effect: None,
                        dropped: None,
                    });
                    l.len() - 1
                };
                let _mark = DropMark(log.clone(), idx);
                let work = behave(&instance, &req)?;
                tokio::time::sleep(work).await; // the handler's own work
                log.0.lock().unwrap()[idx].effect = Some(Instant::now());
                Ok(StepOutput::new())
            }
        });
    }
    r
}

async fn engine(
    store: Arc<dyn Store>,
    instance: &str,
    log: &Log,
    behave: Behaviour,
    clock: Arc<dyn Clock>,
) -> Engine {
    let registry = registry(instance, log, behave);
    let defs = definitions(&registry, &[saga_toml("lease", 1, 2, "")]);
    Engine::new(store, Arc::new(registry), defs, clock)
        .await
        .unwrap()
}

fn opts(owner: &str, lease_ms: u64) -> sagaflow_engine::executor::ExecutorOptions {
    sagaflow_engine::executor::ExecutorOptions {
        lease: Duration::from_millis(lease_ms),
        ..fast(owner)
    }
}

/// For every step attempt (run, step, kind): an invocation that landed its
/// effect did so before any later invocation of the same step began.
fn assert_no_overlap(log: &[Invocation]) {
    for a in log {
        for b in log {
            if (a.run, &a.step, a.kind) != (b.run, &b.step, b.kind) || a.started >= b.started {
                continue;
            }
            if let Some(effect) = a.effect {
                assert!(
                    effect <= b.started,
                    "{} {} {:?} on {}: effect landed {:?} after {} began an attempt",
                    a.run,
                    a.step,
                    a.kind,
                    a.instance,
                    effect - b.started,
                    b.instance
                );
            }
        }
    }
}

/// A replica cut off from the database mid-attempt (forward, and
/// compensation) stops its handlers before its lease expires: the replica
/// that takes the runs over never sees an effect of the old attempt land
/// after it began its own.
#[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
async fn a_cut_off_replica_lands_no_effect_after_the_takeover(pool: sqlx::PgPool) {
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let log = Log::default();
    let slow = Duration::from_secs(3);
    let behave: Behaviour = Arc::new(move |instance, req| {
        let mode = req.context["mode"].as_str().unwrap_or("").to_owned();
        let slow_here = match (req.kind, req.step.as_str(), mode.as_str()) {
            (CallKind::Forward, "s2", "forward") => true,
            (CallKind::Forward, "s2", "compensate") => {
                return Err(StepError::fatal("broken", "s2 is broken"));
            }
            (CallKind::Compensate, "s1", "compensate") => true,
            _ => false,
        };
        Ok(if slow_here && instance == "a" {
            slow
        } else {
            Duration::ZERO
        })
    });
    let a = engine(
        proxied(&pool, &proxy, 4).await,
        "a",
        &log,
        behave.clone(),
        Arc::new(SystemClock),
    )
    .await;
    let exec_a = a.start_executor(opts("a", 2000));
    let fwd = start(&a, json!({"mode": "forward"})).await;
    let comp = start(&a, json!({"mode": "compensate"})).await;
    poll(
        "a's slow attempts to start",
        Duration::from_secs(10),
        || {
            let log = log.clone();
            async move {
                let l = log.all();
                let slow_started = |run, step: &str, kind| {
                    l.iter()
                        .any(|i| i.run == run && i.step == step && i.kind == kind)
                };
                (slow_started(fwd, "s2", CallKind::Forward)
                    && slow_started(comp, "s1", CallKind::Compensate))
                .then_some(())
            }
        },
    )
    .await;
    proxy.freeze();
    let b = engine(
        postgres(pool.clone()),
        "b",
        &log,
        behave,
        Arc::new(SystemClock),
    )
    .await;
    let exec_b = b.start_executor(opts("b", 2000));
    for (id, state) in [(fwd, RunState::Completed), (comp, RunState::Compensated)] {
        wait_for(&b, id, state).await;
    }
    // Every attempt of `a` has ended one way or the other.
    poll("a's attempts to end", slow * 2, || {
        let log = log.clone();
        async move {
            log.all()
                .iter()
                .filter(|i| i.instance == "a")
                .all(|i| i.effect.is_some() || i.dropped.is_some())
                .then_some(())
        }
    })
    .await;
    let l = log.all();
    assert!(
        l.iter()
            .any(|i| i.instance == "b" && i.step == "s2" && i.run == fwd),
        "b took the forward attempt over"
    );
    assert!(
        l.iter()
            .any(|i| i.instance == "b" && i.kind == CallKind::Compensate && i.run == comp),
        "b took the compensation over"
    );
    assert_no_overlap(&l);
    exec_a.abort();
    exec_b.shutdown().await;
}

async fn start(engine: &Engine, input: Value) -> RunId {
    engine
        .start(sagaflow_engine::engine::StartRequest::new(
            TENANT, "lease", input,
        ))
        .await
        .unwrap()
        .run
        .id
}

async fn wait_for(engine: &Engine, id: RunId, state: RunState) {
    poll(
        &format!("run {id} to reach {state}"),
        Duration::from_secs(20),
        || {
            let engine = engine.clone();
            async move {
                let r = engine.get(&tenant(), id).await.unwrap();
                (r.state == state).then_some(())
            }
        },
    )
    .await;
}

/// An engine clock `offset` away from the real one.
struct Skewed(chrono::Duration);

impl Clock for Skewed {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        SystemClock.now() + self.0
    }
}

/// Two replicas whose clocks are 30 s ahead of and behind the database's
/// (a minute apart from each other), and a third that is paused (its whole
/// runtime stops, as under SIGSTOP) past its lease while it works: no
/// attempt of any step overlaps another, and every run completes with a
/// gapless history.
#[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
async fn skewed_clocks_and_a_paused_replica_never_overlap(pool: sqlx::PgPool) {
    let log = Log::default();
    let behave: Behaviour = Arc::new(|_, _| Ok(Duration::from_millis(100)));
    let lease_ms = 1500;
    let mut engines = Vec::new();
    let mut executors = Vec::new();
    for (name, secs) in [("ahead", 30), ("behind", -30)] {
        let e = engine(
            postgres(pool.clone()),
            name,
            &log,
            behave.clone(),
            Arc::new(Skewed(chrono::Duration::seconds(secs))),
        )
        .await;
        executors.push(e.start_executor(spread(opts(name, lease_ms))));
        engines.push(e);
    }
    let paused = PausableReplica::start(&pool, &log, behave, lease_ms);
    // Started by the replica that is behind, so every replica finds the
    // runs due at once.
    let mut ids = Vec::new();
    for i in 0..60 {
        ids.push(start(&engines[1], json!({"i": i})).await);
    }
    let frozen = poll(
        "the paused replica to be mid-attempt",
        Duration::from_secs(20),
        || {
            let log = log.clone();
            async move {
                log.all().iter().position(|i| {
                    i.instance == "paused" && i.effect.is_none() && i.dropped.is_none()
                })
            }
        },
    )
    .await;
    paused.pause(Duration::from_millis(lease_ms * 3));
    for id in &ids {
        wait_for(&engines[0], *id, RunState::Completed).await;
    }
    // Once it runs again, the paused replica drops the attempt it was in
    // instead of finishing it.
    let attempt = poll("the paused attempt to end", Duration::from_secs(20), || {
        let log = log.clone();
        async move {
            let i = log.all()[frozen].clone();
            (i.effect.is_some() || i.dropped.is_some()).then_some(i)
        }
    })
    .await;
    paused.stop();
    assert!(
        attempt.effect.is_none(),
        "the paused replica finished an attempt after its lease ended"
    );
    let l = log.all();
    for name in ["ahead", "behind"] {
        assert!(
            l.iter().any(|i| i.instance == name && i.effect.is_some()),
            "{name} did some of the work"
        );
    }
    assert_no_overlap(&l);
    for id in &ids {
        let events = engines[0].events(&tenant(), *id, 0).await.unwrap();
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    }
    for e in executors {
        e.shutdown().await;
    }
}

/// Small claims, so every replica gets a share of the work.
fn spread(
    o: sagaflow_engine::executor::ExecutorOptions,
) -> sagaflow_engine::executor::ExecutorOptions {
    sagaflow_engine::executor::ExecutorOptions {
        max_in_flight: 8,
        claim_batch: 2,
        ..o
    }
}

/// A replica on a runtime of its own, on its own thread, which the test can
/// stop dead for a while (every task, timer and connection of it).
struct PausableReplica {
    commands: tokio::sync::mpsc::UnboundedSender<Option<Duration>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PausableReplica {
    fn start(pool: &sqlx::PgPool, log: &Log, behave: Behaviour, lease_ms: u64) -> Self {
        let opts_pg = (*pool.connect_options()).clone();
        let log = log.clone();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Option<Duration>>();
        let (ready, started) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let p = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(4)
                    .connect_with(opts_pg)
                    .await
                    .unwrap();
                let store: Arc<dyn Store> =
                    Arc::new(sagaflow_engine::store::postgres::PgStore::from_pool(p));
                let e = engine(store, "paused", &log, behave, Arc::new(SystemClock)).await;
                let exec = e.start_executor(spread(opts("paused", lease_ms)));
                let _ = ready.send(());
                while let Some(Some(pause)) = rx.recv().await {
                    std::thread::sleep(pause); // the injected fault: the whole runtime frozen, as SIGSTOP freezes a process
                }
                exec.abort();
            });
        });
        started.recv().unwrap();
        Self {
            commands: tx,
            thread: Some(thread),
        }
    }

    fn pause(&self, for_: Duration) {
        self.commands.send(Some(for_)).unwrap();
    }

    fn stop(mut self) {
        let _ = self.commands.send(None);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// An aborted executor (a crash, as far as the database can tell) renews
/// nothing any more: the lease of the run it was driving runs out, so
/// another replica can take the run over.
#[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
async fn an_aborted_executor_stops_renewing_its_leases(pool: sqlx::PgPool) {
    let store = postgres(pool);
    let log = Log::default();
    let behave: Behaviour = Arc::new(|_, _| Ok(Duration::from_secs(60)));
    let a = engine(store.clone(), "a", &log, behave, Arc::new(SystemClock)).await;
    let exec = a.start_executor(opts("a", 600));
    let id = start(&a, json!({})).await;
    poll("the first step to start", Duration::from_secs(10), || {
        let log = log.clone();
        async move { (!log.all().is_empty()).then_some(()) }
    })
    .await;
    exec.abort();
    let aborted = chrono::Utc::now();
    // Renewed every 200 ms while the executor lived; the lease must run out.
    let expired = poll("the lease to run out", Duration::from_secs(10), || {
        let store = store.clone();
        async move {
            let run = store.get_run(&tenant(), id).await.unwrap().unwrap();
            let until = run.lease_expires_at?;
            (until < chrono::Utc::now()).then_some(until)
        }
    })
    .await;
    assert!(
        expired < aborted + chrono::Duration::milliseconds(1_000),
        "renewed after the abort: the lease ran to {expired}, aborted at {aborted}"
    );
}
