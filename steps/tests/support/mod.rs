//! Test support: an engine on either backend with the ISP handlers, the
//! simulators, stand-in RADIUS handlers, and polling with a deadline.
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sagaflow_engine::Engine;
use sagaflow_engine::clock::SystemClock;
use sagaflow_engine::definition::{self, Definitions};
use sagaflow_engine::engine::StartRequest;
use sagaflow_engine::executor::{ExecutorHandle, ExecutorOptions};
use sagaflow_engine::handler::{CallKind, Registry, StepError, StepOutput, StepRequest};
use sagaflow_engine::ids::{RunId, TenantId};
use sagaflow_engine::retry::RetryPolicy;
use sagaflow_engine::state::RunState;
use sagaflow_engine::store::postgres::PgStore;
use sagaflow_engine::store::sqlite::SqliteStore;
use sagaflow_engine::store::{RunRecord, Store};
use sagaflow_steps::ipam::{IpamConfig, PoolConfig, repo as ipam};
use sagaflow_steps::lifecycle::AddressState;
use sagaflow_steps::lifecycle::repo as lifecycle;
use sagaflow_steps::maintenance::MaintenanceConfig;
use sagaflow_steps::notify::NotifyConfig;
use sagaflow_steps::sim::{Devices, EngineInform, SimHandle, SimSnapshot};
use sagaflow_steps::subscriber::{SubscriberState, repo as subscribers};
use sagaflow_steps::{Deps, DomainConfig, DomainDb, DomainRuntime};
use serde_json::{Value, json};

pub mod sims;
pub mod undo;

pub const TENANT: &str = "t1";
/// A second tenant with pools of its own, for isolation tests.
pub const OTHER_TENANT: &str = "t2";

/// The states that hold an address.
pub const HELD: [AddressState; 5] = [
    AddressState::Pending,
    AddressState::Allocated,
    AddressState::Active,
    AddressState::Suspended,
    AddressState::Revoking,
];
pub const V4_POOL: &str = "v4";
pub const V6_POOL: &str = "v6";

pub fn tenant() -> TenantId {
    TenantId::new(TENANT)
}

/// A fresh SQLite store in a temporary directory, and its writer pool.
pub async fn sqlite() -> (Arc<dyn Store>, DomainDb, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let store = SqliteStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    sagaflow_steps::migrations::SQLITE
        .run(store.pool())
        .await
        .unwrap();
    let db = DomainDb::Sqlite(store.pool().clone());
    (Arc::new(store), db, dir)
}

/// The store of a `#[sqlx::test]` database.
pub fn postgres(pool: sqlx::PgPool) -> (Arc<dyn Store>, DomainDb) {
    (
        Arc::new(PgStore::from_pool(pool.clone())),
        DomainDb::Postgres(pool),
    )
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

/// A RADIUS account as the stand-in handlers keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub group: String,
    pub framed_ip: Option<String>,
}

/// (kind, subscriber, framed ip) of a CoA or Disconnect-Request.
pub type Packet = (String, String, Option<String>);

/// Stand-ins for the `radius.*` handlers: they keep accounts and the
/// packets "sent" in memory, and fail at a configurable rate.
#[derive(Clone, Default)]
pub struct Radius {
    pub accounts: Arc<Mutex<BTreeMap<String, Account>>>,
    /// (kind, subscriber, framed ip) of every CoA / Disconnect sent.
    pub packets: Arc<Mutex<Vec<Packet>>>,
    pub failure_rate: Arc<Mutex<f64>>,
}

impl Radius {
    pub fn accounts(&self) -> BTreeMap<String, Account> {
        self.accounts.lock().unwrap().clone()
    }

    pub fn packets(&self) -> Vec<Packet> {
        self.packets.lock().unwrap().clone()
    }

    fn call(&self, name: &str, req: &StepRequest) -> Result<StepOutput, StepError> {
        let rate = *self.failure_rate.lock().unwrap();
        if rate > 0.0 && fastrand::f64() < rate {
            return Err(StepError::retryable(
                "unavailable",
                "radius stand-in failure",
            ));
        }
        let sub = req.context_str("/subscriber_id")?.to_owned();
        let ip = req
            .context
            .pointer("/ipv4_address")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let plan = req
            .context
            .pointer("/plan")
            .and_then(Value::as_str)
            .unwrap_or("none")
            .to_owned();
        let mut accounts = self.accounts.lock().unwrap();
        match name {
            "radius.create_account" => {
                accounts.insert(
                    sub,
                    Account {
                        group: plan,
                        framed_ip: ip,
                    },
                );
            }
            "radius.delete_account" => {
                accounts.remove(&sub);
            }
            "radius.suspend" | "radius.resume" => {
                let group = if name == "radius.suspend" {
                    "suspended".to_owned()
                } else {
                    plan
                };
                if let Some(a) = accounts.get_mut(&sub) {
                    a.group = group;
                }
            }
            "radius.coa" | "radius.disconnect" => {
                self.packets.lock().unwrap().push((
                    name.trim_start_matches("radius.").to_owned(),
                    sub,
                    ip,
                ));
            }
            _ => unreachable!("{name}"),
        }
        Ok(StepOutput::new())
    }

    pub fn register(&self, registry: &mut Registry) {
        for name in [
            "radius.create_account",
            "radius.delete_account",
            "radius.suspend",
            "radius.resume",
            "radius.coa",
            "radius.disconnect",
        ] {
            let me = self.clone();
            registry.register_fn(name, move |req| {
                let r = me.call(name, &req);
                async move { r }
            });
        }
    }
}

/// Options of a test world.
#[derive(Clone)]
pub struct Options {
    /// Forward attempts per step.
    pub max_attempts: u32,
    pub v4_cidr: String,
    pub v6_cidr: String,
    /// Which IPAM backend each tenant uses.
    pub ipam: IpamConfig,
    pub max_in_flight: usize,
    /// The limit of one step attempt.
    pub step_timeout_ms: u64,
    pub maintenance: MaintenanceConfig,
    pub notify: NotifyConfig,
    /// Tenants besides [`TENANT`] that get the same pools.
    pub other_tenants: Vec<&'static str>,
    /// The real `radius.*` handlers on the engine's database instead of the
    /// in-memory stand-ins.
    pub real_radius: bool,
    /// How the simulated ONUs and CPEs behave (quick ranging and informs).
    pub devices: Devices,
    /// Replaces the `wait_timeout_ms` of every step that has one.
    pub wait_timeout_ms: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            v4_cidr: "10.20.0.0/24".into(),
            v6_cidr: "2001:db8:1000::/40".into(),
            ipam: IpamConfig::default(),
            max_in_flight: 64,
            step_timeout_ms: 10_000,
            maintenance: MaintenanceConfig::default(),
            notify: NotifyConfig::default(),
            other_tenants: Vec::new(),
            real_radius: false,
            devices: Devices {
                onu_ranging_ms: 50,
                cpe_inform_delay_ms: 10,
                ..Devices::default()
            },
            wait_timeout_ms: None,
        }
    }
}

/// An engine running the shipped workflows with the ISP handlers.
pub struct World {
    pub engine: Engine,
    pub executor: Option<ExecutorHandle>,
    pub db: DomainDb,
    pub domain: Option<DomainRuntime>,
    pub radius: Radius,
    breaker: Arc<Mutex<BTreeSet<String>>>,
    _dir: Option<tempfile::TempDir>,
}

fn fast(max_attempts: u32, non_retryable: Vec<String>) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_interval_ms: 2,
        backoff_coefficient: 1.5,
        max_interval_ms: 10,
        jitter: 0.0,
        non_retryable,
    }
}

/// The workflows of `workflows/`, with fast retries.
pub fn definitions(registry: &Registry, max_attempts: u32, timeout_ms: u64) -> Definitions {
    definitions_with(registry, max_attempts, timeout_ms, None)
}

/// [`definitions`], with every step's `wait_timeout_ms` replaced when
/// `wait_timeout_ms` is set.
pub fn definitions_with(
    registry: &Registry,
    max_attempts: u32,
    timeout_ms: u64,
    wait_timeout_ms: Option<u64>,
) -> Definitions {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../workflows");
    let mut defs = Definitions::default();
    for name in [
        "provision_subscriber",
        "suspend_subscriber",
        "reactivate_subscriber",
        "deprovision_subscriber",
        "lifecycle_cleanup",
        "lifecycle_metrics",
        "capacity_check",
        "reservation_expiry",
        "run_retention",
    ] {
        let path = dir.join(format!("{name}.v1.toml"));
        let text = std::fs::read_to_string(&path).unwrap();
        let mut def = definition::parse(&text, &path.display().to_string()).unwrap();
        def.defaults.retry = fast(max_attempts, def.defaults.retry.non_retryable.clone());
        def.defaults.compensation_retry = fast(40, Vec::new());
        def.defaults.timeout_ms = timeout_ms;
        for s in &mut def.steps {
            assert!(
                s.retry.is_none(),
                "{name}: step policies would override the test's"
            );
            if let Some(t) = wait_timeout_ms {
                s.wait_timeout_ms = s.wait_timeout_ms.map(|_| t);
            }
        }
        defs.add(def, name, registry)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    defs
}

impl World {
    pub async fn postgres(pool: sqlx::PgPool, opts: Options) -> Self {
        let (store, db) = postgres(pool.clone());
        let deps = Deps {
            postgres: Some(pool),
            ..Deps::default()
        };
        Self::build(store, db, deps, opts, None).await
    }

    pub async fn sqlite(opts: Options) -> Self {
        let (store, db, dir) = sqlite().await;
        let DomainDb::Sqlite(lite) = &db else {
            unreachable!()
        };
        let deps = Deps {
            sqlite: Some(lite.clone()),
            ..Deps::default()
        };
        Self::build(store, db, deps, opts, Some(dir)).await
    }

    async fn build(
        store: Arc<dyn Store>,
        db: DomainDb,
        mut deps: Deps,
        opts: Options,
        dir: Option<tempfile::TempDir>,
    ) -> Self {
        let mut cfg = DomainConfig {
            maintenance: opts.maintenance.clone(),
            notify: opts.notify.clone(),
            ipam: opts.ipam.clone(),
            onu_online_poll_ms: 100,
            ..DomainConfig::default()
        };
        cfg.simulators.devices = opts.devices.clone();
        cfg.pools = Vec::new();
        let mut tenants = vec![TENANT, OTHER_TENANT];
        for t in &opts.other_tenants {
            if !tenants.contains(t) {
                tenants.push(t);
            }
        }
        for tenant in tenants {
            let mut v6 = PoolConfig::new(tenant, V6_POOL, opts.v6_cidr.parse().unwrap());
            v6.prefix_length = Some(56);
            cfg.pools.push(PoolConfig::new(
                tenant,
                V4_POOL,
                opts.v4_cidr.parse().unwrap(),
            ));
            cfg.pools.push(v6);
        }
        let domain = DomainRuntime::start(&db, &cfg, Arc::new(SystemClock))
            .await
            .unwrap();
        deps.domain = Some(domain.deps.clone());
        let runs: Arc<dyn sagaflow_engine::store::RetentionStore> = store.clone();
        deps.runs = Some(runs);
        let mut registry = Registry::new().with_builtins();
        sagaflow_steps::register(&mut registry, &deps);
        let radius = Radius::default();
        if !opts.real_radius {
            radius.register(&mut registry);
        }
        // Every handler can be made to fail for good (forward calls only).
        let breaker: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let mut wrapped = Registry::new();
        for name in registry.names() {
            let handler = registry.get(name).unwrap();
            let b = breaker.clone();
            let n = name.to_owned();
            wrapped.register_fn(name, move |req: StepRequest| {
                let handler = handler.clone();
                let broken = req.kind == CallKind::Forward && b.lock().unwrap().contains(&n);
                let n = n.clone();
                async move {
                    if broken {
                        return Err(StepError::fatal("broken", format!("{n} is broken")));
                    }
                    handler.call(req).await
                }
            });
        }
        let registry = wrapped;
        let defs = definitions_with(
            &registry,
            opts.max_attempts,
            opts.step_timeout_ms,
            opts.wait_timeout_ms,
        );
        let engine = Engine::new(store, Arc::new(registry), defs, Arc::new(SystemClock))
            .await
            .unwrap();
        // The ACS simulator signals CPE informs to this engine.
        if let Some(sims) = &domain.simulators {
            sims.set_inform_hook(Arc::new(EngineInform(engine.clone())));
        }
        let executor = Some(engine.start_executor(ExecutorOptions {
            owner: "test".into(),
            poll_interval: Duration::from_millis(20),
            lease: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
            max_in_flight: opts.max_in_flight,
            ..ExecutorOptions::default()
        }));
        Self {
            engine,
            executor,
            db,
            domain: Some(domain),
            radius,
            breaker,
            _dir: dir,
        }
    }

    /// Makes forward calls of `handler` fail for good (or work again).
    pub fn set_broken(&self, handler: &str, broken: bool) {
        let mut b = self.breaker.lock().unwrap();
        if broken {
            b.insert(handler.to_owned());
        } else {
            b.remove(handler);
        }
    }

    pub fn sims(&self) -> &SimHandle {
        self.domain.as_ref().unwrap().simulators.as_ref().unwrap()
    }

    pub async fn start(&self, workflow: &str, input: Value) -> RunId {
        self.start_as(TENANT, workflow, input).await
    }

    pub async fn start_as(&self, tenant: &str, workflow: &str, input: Value) -> RunId {
        self.engine
            .start(StartRequest::new(tenant, workflow, input))
            .await
            .unwrap()
            .run
            .id
    }

    pub async fn get(&self, id: RunId) -> RunRecord {
        self.engine.get(&tenant(), id).await.unwrap()
    }

    /// Waits until the run stops: a terminal state, or one that waits for
    /// an operator.
    pub async fn finish(&self, id: RunId, deadline: Duration) -> RunRecord {
        self.finish_as(TENANT, id, deadline).await
    }

    pub async fn finish_as(&self, tenant: &str, id: RunId, deadline: Duration) -> RunRecord {
        let engine = self.engine.clone();
        let tenant = TenantId::new(tenant);
        poll(&format!("run {id} to finish"), deadline, || {
            let (engine, tenant) = (engine.clone(), tenant.clone());
            async move {
                let r = engine.get(&tenant, id).await.unwrap();
                (r.state.is_terminal()
                    || matches!(r.state, RunState::Failed | RunState::CompensationFailed))
                .then_some(r)
            }
        })
        .await
    }

    /// Runs a workflow to its end and returns the run.
    pub async fn run(&self, workflow: &str, input: Value) -> RunRecord {
        self.run_as(TENANT, workflow, input).await
    }

    /// Runs a workflow of `tenant` to its end and returns the run.
    pub async fn run_as(&self, tenant: &str, workflow: &str, input: Value) -> RunRecord {
        let id = self.start_as(tenant, workflow, input).await;
        self.finish_as(tenant, id, Duration::from_secs(30)).await
    }

    /// Everything provisioning can leave behind.
    pub async fn state(&self) -> SystemState {
        let held = lifecycle::list(&self.db, TENANT, &HELD)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.subscriber_id, r.address, r.state))
            .collect();
        let usage = ipam::utilization(&self.db, Some(TENANT))
            .await
            .unwrap()
            .into_iter()
            .map(|u| (u.pool.name.clone(), u.in_use))
            .collect();
        SystemState {
            held,
            usage,
            customers: subscribers::list_customers(&self.db, TENANT)
                .await
                .unwrap()
                .into_iter()
                .map(|c| c.id)
                .collect(),
            subscribers: subscribers::list_subscribers(&self.db, TENANT)
                .await
                .unwrap()
                .into_iter()
                .map(|s| (s.subscriber_id, s.state))
                .collect(),
            profiles: subscribers::list_profiles(&self.db, TENANT)
                .await
                .unwrap()
                .into_iter()
                .map(|p| (p.subscriber_id, p.archived_at.is_some()))
                .collect(),
            sim: strip(self.sims().snapshot()),
            radius: self.radius.accounts(),
        }
    }

    pub async fn shutdown(mut self) {
        if let Some(e) = self.executor.take() {
            e.shutdown().await;
        }
        if let Some(d) = self.domain.take() {
            d.shutdown().await;
        }
    }
}

/// The simulators' records without their counters and effect log.
fn strip(mut s: SimSnapshot) -> SimSnapshot {
    s.applied.clear();
    s.injected_failures.clear();
    s.stalls.clear();
    s.lost_acks.clear();
    s.effects.clear();
    s.informs.clear();
    s.informs_lost.clear();
    s
}

#[derive(Debug, Clone, PartialEq)]
pub struct SystemState {
    /// (subscriber, address, state) of every record holding an address.
    pub held: Vec<(String, String, AddressState)>,
    /// In use per pool.
    pub usage: Vec<(String, i64)>,
    pub customers: Vec<String>,
    pub subscribers: Vec<(String, SubscriberState)>,
    /// (subscriber, archived).
    pub profiles: Vec<(String, bool)>,
    pub sim: SimSnapshot,
    pub radius: BTreeMap<String, Account>,
}

/// A provisioning input.
pub fn provision_input(sub: &str, ipv6: bool) -> Value {
    json!({
        "subscriber_id": sub,
        "customer": { "id": format!("cust-{sub}"), "name": "Ada Lovelace", "email": "ada@example.net" },
        "plan": "fiber-500",
        "download_kbps": 500_000,
        "upload_kbps": 100_000,
        "service_vlan": 100,
        "nas": { "ip": "192.0.2.1" },
        "onu_serial": format!("ONU-{sub}"),
        "cpe_serial": format!("CPE-{sub}"),
        "enable_ipv6": ipv6,
        "ipv6_pd_size": 56,
    })
}
