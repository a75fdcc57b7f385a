//! Test support: both backends, a scriptable step handler, and polling with
//! a deadline (no fixed sleeps).
#![allow(clippy::unwrap_used, dead_code)] // tests fail loudly on purpose

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sagaflow_engine::Engine;
use sagaflow_engine::clock::{Clock, ManualClock, SystemClock};
use sagaflow_engine::definition::{self, Definitions};
use sagaflow_engine::engine::{StartRequest, Started};
use sagaflow_engine::executor::{ExecutorHandle, ExecutorOptions};
use sagaflow_engine::handler::{CallKind, Registry, StepError, StepOutput, StepRequest};
use sagaflow_engine::ids::{RunId, TenantId};
use sagaflow_engine::state::RunState;
use sagaflow_engine::store::postgres::PgStore;
use sagaflow_engine::store::sqlite::SqliteStore;
use sagaflow_engine::store::{RunRecord, Store};
use serde_json::{Value, json};

pub mod proxy;
pub mod receiver;

pub const TENANT: &str = "t1";

pub fn tenant() -> TenantId {
    TenantId::new(TENANT)
}

/// A fresh SQLite store in a temporary directory (kept alive by the guard).
pub async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let store = SqliteStore::connect(&url).await.expect("open sqlite");
    store.migrate().await.expect("migrate sqlite");
    (Arc::new(store), dir)
}

/// The store of a `#[sqlx::test]` database (migrations already applied).
pub fn postgres(pool: sqlx::PgPool) -> Arc<dyn Store> {
    Arc::new(PgStore::from_pool(pool))
}

/// A store on the `#[sqlx::test]` database of `pool`, connected through
/// `proxy` (a pool of `max` connections).
pub async fn proxied(pool: &sqlx::PgPool, proxy: &proxy::Proxy, max: u32) -> Arc<dyn Store> {
    let opts = (*pool.connect_options())
        .clone()
        .host("127.0.0.1")
        .port(proxy.port)
        .ssl_mode(sqlx::postgres::PgSslMode::Disable);
    let p = sqlx::postgres::PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(1))
        .connect_with(opts)
        .await
        .unwrap();
    Arc::new(PgStore::from_pool(p))
}

/// One call a test handler saw.
#[derive(Debug, Clone)]
pub struct Call {
    pub run: RunId,
    pub step: String,
    pub kind: CallKind,
    pub attempt: u32,
    pub key: String,
    pub started: Instant,
    pub ended: Instant,
    pub instance: String,
}

/// A step handler scripted by the run's input:
/// - `fail.<step>`: the first N forward attempts fail (retryable), not to be
///   retried before `retry_after_ms.<step>` when that is set;
/// - `fatal.<step>`: every forward attempt fails (non-retryable) while true;
/// - `comp_fail.<step>`: the first N compensation attempts fail;
/// - `hang.<step>`: the first N forward attempts wait until cancelled;
/// - `sleep_ms.<step>`: each attempt takes this long;
/// - `not_ready.<step>`: the first N forward calls answer "not ready yet,
///   look again in 1 s".
///
/// Every call is recorded; `flip` lets a test make fatal steps succeed later.
#[derive(Clone, Default)]
pub struct Script {
    pub calls: Arc<Mutex<Vec<Call>>>,
    pub counts: Arc<Mutex<HashMap<String, u64>>>,
    pub healed: Arc<Mutex<bool>>,
    pub cancelled_seen: Arc<Mutex<u32>>,
    pub instance: String,
}

impl Script {
    pub fn named(instance: &str) -> Self {
        Self {
            instance: instance.into(),
            ..Self::default()
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn heal(&self) {
        *self.healed.lock().unwrap() = true;
    }

    async fn call(&self, req: StepRequest) -> Result<StepOutput, StepError> {
        let started = Instant::now();
        let n = {
            let mut c = self.counts.lock().unwrap();
            let e = c.entry(req.idempotency_key.clone()).or_default();
            *e += 1;
            *e
        };
        let get = |field: &str| {
            req.context
                .pointer(&format!("/{field}/{}", req.step))
                .cloned()
        };
        let num = |field: &str| get(field).and_then(|v| v.as_u64()).unwrap_or(0);
        if let Some(ms) = get("sleep_ms").and_then(|v| v.as_u64()) {
            tokio::time::sleep(Duration::from_millis(ms)).await; // simulated step work, not a wait
        }
        let result = match req.kind {
            CallKind::Forward => {
                if n <= num("not_ready") {
                    Err(StepError::not_ready(
                        Duration::from_secs(1),
                        format!("call {n}: not ready yet"),
                    ))
                } else if n <= num("hang") {
                    req.cancel.cancelled().await;
                    *self.cancelled_seen.lock().unwrap() += 1;
                    Err(StepError::retryable("cancelled", "hung"))
                } else if n <= num("fail") {
                    let message = format!("attempt {n} fails");
                    Err(match num("retry_after_ms") {
                        0 => StepError::retryable("flaky", message),
                        ms => {
                            StepError::retryable_after("flaky", message, Duration::from_millis(ms))
                        }
                    })
                } else if get("fatal").and_then(|v| v.as_bool()).unwrap_or(false)
                    && !*self.healed.lock().unwrap()
                {
                    Err(StepError::fatal(
                        "broken",
                        format!("{} is broken", req.step),
                    ))
                } else {
                    let mut out = StepOutput::new();
                    out.insert(format!("{}_done", req.step), json!(req.attempt));
                    Ok(out)
                }
            }
            CallKind::Compensate => {
                if n <= num("comp_fail") {
                    Err(StepError::retryable(
                        "flaky",
                        format!("compensation attempt {n} fails"),
                    ))
                } else {
                    Ok(StepOutput::new())
                }
            }
        };
        self.calls.lock().unwrap().push(Call {
            run: req.run_id,
            step: req.step.clone(),
            kind: req.kind,
            attempt: req.attempt,
            key: req.idempotency_key.clone(),
            started,
            ended: Instant::now(),
            instance: self.instance.clone(),
        });
        result
    }

    /// A registry with `test.do` and `test.undo` backed by this script.
    pub fn registry(&self) -> Registry {
        self.registry_with(&["test.do", "test.undo"])
    }

    /// A registry with the builtins and `names`, all backed by this script.
    pub fn registry_with(&self, names: &[&str]) -> Registry {
        let mut r = Registry::new().with_builtins();
        for &name in names {
            let s = self.clone();
            r.register_fn(name, move |req| {
                let s = s.clone();
                async move { s.call(req).await }
            });
        }
        r
    }
}

/// A workflow of `n` steps `s1..sn`, each with a compensation, fast retries.
pub fn saga_toml(name: &str, version: u32, n: usize, extra: &str) -> String {
    let mut t = format!(
        "name = \"{name}\"\nversion = {version}\n{extra}\n[defaults]\ntimeout_ms = 5000\n\
         [defaults.retry]\nmax_attempts = 3\ninitial_interval_ms = 5\nmax_interval_ms = 20\njitter = 0.0\n\
         [defaults.compensation_retry]\nmax_attempts = 3\ninitial_interval_ms = 5\nmax_interval_ms = 20\n"
    );
    for i in 1..=n {
        t.push_str(&format!(
            "[[steps]]\nname = \"s{i}\"\nhandler = \"test.do\"\ncompensation = \"test.undo\"\n"
        ));
    }
    t
}

pub fn definitions(registry: &Registry, tomls: &[String]) -> Definitions {
    let mut defs = Definitions::default();
    for (i, t) in tomls.iter().enumerate() {
        let file = format!("test{i}.toml");
        let d = definition::parse(t, &file).unwrap_or_else(|e| panic!("{e}"));
        defs.add(d, &file, registry)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    defs
}

/// Fast executor options for tests.
pub fn fast(owner: &str) -> ExecutorOptions {
    ExecutorOptions {
        owner: owner.into(),
        poll_interval: Duration::from_millis(50),
        lease: Duration::from_secs(10),
        shutdown_grace: Duration::from_secs(5),
        ..ExecutorOptions::default()
    }
}

pub struct Harness {
    pub engine: Engine,
    pub script: Script,
    pub executor: Option<ExecutorHandle>,
}

impl Harness {
    pub async fn new(store: Arc<dyn Store>, tomls: &[String]) -> Self {
        Self::with_clock(store, tomls, Arc::new(SystemClock)).await
    }

    pub async fn with_clock(
        store: Arc<dyn Store>,
        tomls: &[String],
        clock: Arc<dyn Clock>,
    ) -> Self {
        let script = Script::named("a");
        let registry = script.registry();
        let defs = definitions(&registry, tomls);
        let engine = Engine::new(store, Arc::new(registry), defs, clock)
            .await
            .expect("engine");
        let executor = Some(engine.start_executor(fast("a")));
        Self {
            engine,
            script,
            executor,
        }
    }

    /// A harness whose executor is not started.
    pub async fn idle(store: Arc<dyn Store>, tomls: &[String], clock: Arc<dyn Clock>) -> Self {
        let script = Script::named("a");
        let registry = script.registry();
        let defs = definitions(&registry, tomls);
        let engine = Engine::new(store, Arc::new(registry), defs, clock)
            .await
            .expect("engine");
        Self {
            engine,
            script,
            executor: None,
        }
    }

    pub async fn start(&self, workflow: &str, input: Value) -> Started {
        self.engine
            .start(StartRequest::new(TENANT, workflow, input))
            .await
            .expect("start")
    }

    pub async fn get(&self, id: RunId) -> RunRecord {
        self.engine.get(&tenant(), id).await.expect("get")
    }

    /// Polls until the run is in `state` (10 s deadline).
    pub async fn wait_state(&self, id: RunId, state: RunState) -> RunRecord {
        let engine = self.engine.clone();
        poll(
            &format!("run {id} to reach {state}"),
            Duration::from_secs(10),
            || {
                let engine = engine.clone();
                async move {
                    let r = engine.get(&tenant(), id).await.expect("get");
                    (r.state == state).then_some(r)
                }
            },
        )
        .await
    }

    pub async fn shutdown(mut self) {
        if let Some(e) = self.executor.take() {
            e.shutdown().await;
        }
    }
}

/// A workflow `name` of one step per `steps` that pauses on failure and
/// queues behind `/subscriber_id` for at most `ttl_ms`, run on a manual
/// clock; a run of it holds key `key`, FAILED (waiting for an operator).
/// Returns the harness, its clock and the holder.
pub async fn key_held_with_queue_ttl(
    store: Arc<dyn Store>,
    name: &str,
    steps: usize,
    ttl_ms: u64,
    key: &str,
) -> (Harness, ManualClock, RunId) {
    let extra = format!(
        "on_failure = \"pause\"\nconcurrency = {{ key = \"/subscriber_id\", policy = \"queue\", queue_ttl_ms = {ttl_ms} }}"
    );
    let clock = ManualClock::new(Utc::now());
    let h = Harness::with_clock(
        store,
        &[saga_toml(name, 1, steps, &extra)],
        Arc::new(clock.clone()),
    )
    .await;
    let holder = h
        .start(name, json!({"subscriber_id": key, "fatal": {"s1": true}}))
        .await
        .run
        .id;
    h.wait_state(holder, RunState::Failed).await;
    (h, clock, holder)
}

/// Polls `f` until it yields a value, or panics after `deadline`.
pub async fn poll<T, F, Fut>(what: &str, deadline: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await; // poll interval
    }
}

pub fn ms(a: DateTime<Utc>, b: DateTime<Utc>) -> i64 {
    (b - a).num_milliseconds()
}

/// Runs `$scenario(store)` on PostgreSQL and on SQLite (`#[macro_use] mod
/// support;` in the test file).
#[allow(unused_macros)] // not every test file runs scenarios
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
            async fn postgres(pool: sqlx::PgPool) {
                super::$scenario(super::support::postgres(pool)).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let (store, _dir) = super::support::sqlite().await;
                super::$scenario(store).await;
            }
        }
    )*};
}
