//! Simulators of the ONU/OLT gateway, the TR-069 ACS and billing: one real
//! HTTP server (axum) serving the APIs the HTTP adapters call, under
//! `/onu`, `/cpe` and `/billing`. `sagaflow dev` starts it by default, and
//! tests start their own.
//!
//! State is kept in memory, per tenant: every record is keyed by (tenant,
//! serial or subscriber), and every request names its tenant in its path
//! (`…/tenants/{tenant}/…`), so one tenant's requests never see or change
//! another's records. A request with an `Idempotency-Key` that was
//! already answered gets the same answer again without a second effect.
//! Each operation has configurable faults, changeable while running: a
//! failure rate (an injected 503 before any effect), latency, stalls (the
//! effect is applied, the answer comes after the caller has given up), lost
//! acknowledgements (the effect is applied, then 504), "applied then 500"
//! and "applied then reset" (the effect is applied, then the connection is
//! reset without an answer, see [`conn`]). The devices also act on their
//! own (an ONU ranges, a CPE sends its inform, see [`devices`]). Every effect is
//! logged with its idempotency key ([`SimSnapshot::effects`]), so a harness
//! can count effects per key. The state can be read
//! in-process ([`SimHandle::snapshot`]) or over HTTP (`GET /_state`, and a
//! `GET` per record). This module keeps the shared state, the faults and
//! the server; each system's routes are in its own file (`onu.rs`,
//! `cpe.rs`, `billing.rs`), the listener in `conn.rs`.

mod billing;
mod conn;
mod cpe;
mod devices;
mod fault;
mod grpc_inform;
mod onu;

pub use devices::{Devices, EngineInform, Inform, InformError, InformHook, LostInform};
use fault::AfterApply;
pub use fault::Fault;
pub use grpc_inform::GrpcInform;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::adapters::EndpointConfig;
use crate::billing::BillingService;
use crate::cpe::CpeRecord;
use crate::onu::OnuStatus;
use conn::{ResetSwitch, ResettableListener};

/// Every operation a fault can be set on.
pub const OPERATIONS: [&str; 8] = [
    "onu.activate",
    "onu.deactivate",
    "cpe.configure",
    "cpe.unconfigure",
    "billing.create",
    "billing.suspend",
    "billing.resume",
    "billing.delete",
];

/// How to start the simulators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Whether `sagaflow serve` may stand the simulators in for an unset
    /// endpoint; without it, serve refuses to start (`dev` always may).
    pub enabled: bool,
    /// Where to listen; port 0 picks a free one.
    pub bind: SocketAddr,
    /// When set, requests must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Applies to operations without their own entry in `faults`.
    pub default_fault: Fault,
    /// Per operation (see [`OPERATIONS`]).
    pub faults: BTreeMap<String, Fault>,
    /// How the ONUs and CPEs behave on their own.
    pub devices: Devices,
    /// The gRPC address CPE informs are signalled to; `serve` and `dev`
    /// default it to their own.
    pub inform_url: Option<String>,
    /// Per tenant, the bearer token (crm role) informs are signalled with.
    pub inform_tokens: BTreeMap<String, String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: None,
            default_fault: Fault::default(),
            faults: BTreeMap::new(),
            devices: Devices::default(),
            inform_url: None,
            inform_tokens: BTreeMap::new(),
        }
    }
}

/// What the simulated systems hold for one tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TenantRecords {
    /// Active ONUs by serial.
    pub onus: BTreeMap<String, OnuStatus>,
    /// Configured CPEs by serial.
    pub cpes: BTreeMap<String, CpeRecord>,
    /// Billing services by subscriber.
    pub services: BTreeMap<String, BillingService>,
}

impl TenantRecords {
    pub fn is_empty(&self) -> bool {
        self.onus.is_empty() && self.cpes.is_empty() && self.services.is_empty()
    }
}

static NO_RECORDS: TenantRecords = TenantRecords {
    onus: BTreeMap::new(),
    cpes: BTreeMap::new(),
    services: BTreeMap::new(),
};

/// Everything the simulated systems hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SimSnapshot {
    /// The records, by tenant.
    pub tenants: BTreeMap<String, TenantRecords>,
    /// Effects applied, per operation (repeats of a key not counted).
    pub applied: BTreeMap<String, u64>,
    /// Requests answered 503 on purpose, per operation.
    pub injected_failures: BTreeMap<String, u64>,
    /// Requests held past their caller's patience, per operation.
    pub stalls: BTreeMap<String, u64>,
    /// Effects applied and then answered 504, per operation.
    pub lost_acks: BTreeMap<String, u64>,
    /// Effects applied and then answered 500, per operation.
    pub applied_then_500: BTreeMap<String, u64>,
    /// Effects applied and then left without an answer (connection
    /// reset), per operation.
    pub applied_then_reset: BTreeMap<String, u64>,
    /// Every effect in the order applied (repeats of a key not included).
    pub effects: Vec<SimEffect>,
    /// The CPE informs delivered, in order.
    pub informs: Vec<Inform>,
    /// The CPE informs refused or given up, in order.
    pub informs_lost: Vec<LostInform>,
}

/// One effect applied by a simulator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimEffect {
    /// The operation, e.g. `onu.activate`.
    pub operation: String,
    /// The tenant the request was made for.
    pub tenant: String,
    /// The request's `Idempotency-Key`, if it had one.
    pub key: Option<String>,
    /// Whether it changed anything: an undo of something absent, or of
    /// something another request made (answered `"changed": false`),
    /// changes nothing.
    pub changed: bool,
}

impl SimSnapshot {
    /// No ONU, CPE or billing state at all, for any tenant.
    pub fn is_empty(&self) -> bool {
        self.tenants.values().all(TenantRecords::is_empty)
    }

    /// The records of `tenant` (none when it has none).
    pub fn tenant(&self, tenant: &str) -> &TenantRecords {
        self.tenants.get(tenant).unwrap_or(&NO_RECORDS)
    }
}

#[derive(Default)]
struct Data {
    snap: SimSnapshot,
    /// (tenant, operation, key) → the answer given.
    answers: HashMap<(String, String, String), (StatusCode, Value)>,
    next_service: u64,
    devices: devices::DeviceState,
}

impl Data {
    /// The records of `tenant`, to change.
    fn records(&mut self, tenant: &str) -> &mut TenantRecords {
        self.snap.tenants.entry(tenant.to_owned()).or_default()
    }

    /// The answer given to `(tenant, op, key)`, if any.
    fn answer(&self, tenant: &str, op: &str, key: &str) -> Option<&(StatusCode, Value)> {
        self.answers
            .get(&(tenant.to_owned(), op.to_owned(), key.to_owned()))
    }
}

struct Inner {
    token: Option<String>,
    faults: Mutex<(Fault, BTreeMap<String, Fault>)>,
    data: Mutex<Data>,
    devices: Mutex<Devices>,
    hook: Mutex<Option<Arc<dyn InformHook>>>,
    stop: CancellationToken,
}

type Shared = Arc<Inner>;

/// A request's `Idempotency-Key`.
fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// How a request is answered: now, (a stall) after `stall_ms`, its effect
/// already applied, or not at all (the connection is reset).
enum Answer {
    Now(Response),
    Late(StatusCode, Value),
    Reset,
}

/// The simulators' entry point.
pub struct Simulators;

impl Simulators {
    /// Binds `cfg.bind` and serves until [`SimHandle::shutdown`].
    pub async fn start(cfg: SimConfig) -> std::io::Result<SimHandle> {
        let listener = tokio::net::TcpListener::bind(cfg.bind).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let inner: Shared = Arc::new(Inner {
            token: cfg.token.clone(),
            faults: Mutex::new((cfg.default_fault, cfg.faults.clone())),
            data: Mutex::new(Data::default()),
            devices: Mutex::new(cfg.devices.clone()),
            hook: Mutex::new(None),
            stop: stop.clone(),
        });
        let app = router(inner.clone()).into_make_service_with_connect_info::<ResetSwitch>();
        let shutdown = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(ResettableListener(listener), app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!(error = %e, "simulator server stopped");
            }
        });
        tracing::info!(%addr, "simulators listening");
        Ok(SimHandle {
            addr,
            token: cfg.token,
            inner,
            stop,
            task,
        })
    }
}

/// A running simulator server.
pub struct SimHandle {
    addr: SocketAddr,
    token: Option<String>,
    inner: Shared,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.addr)
            .finish()
    }
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn onu_url(&self) -> String {
        format!("http://{}/onu", self.addr)
    }

    pub fn cpe_url(&self) -> String {
        format!("http://{}/cpe", self.addr)
    }

    pub fn billing_url(&self) -> String {
        format!("http://{}/billing", self.addr)
    }

    fn endpoint(&self, url: String) -> EndpointConfig {
        EndpointConfig {
            token: self.token.clone(),
            ..EndpointConfig::new(url)
        }
    }

    /// Endpoint configs of the ONU, CPE and billing APIs.
    pub fn endpoints(&self) -> (EndpointConfig, EndpointConfig, EndpointConfig) {
        (
            self.endpoint(self.onu_url()),
            self.endpoint(self.cpe_url()),
            self.endpoint(self.billing_url()),
        )
    }

    /// Sets the fault of one operation (see [`OPERATIONS`]).
    pub fn set_fault(&self, operation: &str, fault: Fault) {
        let mut f = self.inner.faults.lock().unwrap_or_else(|e| e.into_inner());
        f.1.insert(operation.to_owned(), fault);
    }

    /// Sets the fault of every operation, dropping per-operation ones.
    pub fn set_all_faults(&self, fault: Fault) {
        let mut f = self.inner.faults.lock().unwrap_or_else(|e| e.into_inner());
        *f = (fault, BTreeMap::new());
    }

    /// Sets how the devices behave.
    pub fn set_devices(&self, devices: Devices) {
        *self.inner.devices.lock().unwrap_or_else(|e| e.into_inner()) = devices;
    }

    /// Sets where CPE informs go (none: they wait for one, then give up).
    pub fn set_inform_hook(&self, hook: Arc<dyn InformHook>) {
        *self.inner.hook.lock().unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    /// A copy of the simulated state.
    pub fn snapshot(&self) -> SimSnapshot {
        self.inner
            .data
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .snap
            .clone()
    }

    /// Stops serving and waits for the server to end.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> (StatusCode, Value) {
    (status, json!({ "error": message.into() }))
}

fn to_value(v: &impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

impl Inner {
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            == Some(token.as_str())
    }

    fn fault(&self, op: &str) -> Fault {
        let f = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        f.1.get(op).copied().unwrap_or(f.0)
    }

    /// Runs one operation: authorization, latency, injected failure, then
    /// the effect, once per idempotency key, then the fault's fate of the
    /// answer (`conn` resets the connection for "applied then reset").
    async fn serve(
        &self,
        (op, tenant): (&str, &str),
        headers: &HeaderMap,
        conn: &ResetSwitch,
        apply: impl FnOnce(&mut Data) -> (StatusCode, Value),
    ) -> Response {
        if !self.authorized(headers) {
            let (s, v) = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
            return (s, Json(v)).into_response();
        }
        let fault = self.fault(op);
        if fault.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(fault.latency_ms)).await;
        }
        let after = AfterApply::draw(&fault);
        // Decided under the lock, without awaiting.
        let decided = (|| {
            let mut data = self.data.lock().unwrap_or_else(|e| e.into_inner());
            if fault.failure_rate > 0.0 && fastrand::f64() < fault.failure_rate {
                *data
                    .snap
                    .injected_failures
                    .entry(op.to_owned())
                    .or_default() += 1;
                let (s, v) = error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{op}: injected failure"),
                );
                return Answer::Now((s, Json(v)).into_response());
            }
            let key = idempotency_key(headers).map(|k| (tenant.to_owned(), op.to_owned(), k));
            if let Some(k) = &key
                && let Some((s, v)) = data.answers.get(k)
            {
                return Answer::Now((*s, Json(v.clone())).into_response());
            }
            let (status, body) = apply(&mut data);
            if status.is_success() {
                *data.snap.applied.entry(op.to_owned()).or_default() += 1;
                let undid_nothing = body.get("changed") == Some(&Value::Bool(false));
                data.snap.effects.push(SimEffect {
                    operation: op.to_owned(),
                    tenant: tenant.to_owned(),
                    key: key.as_ref().map(|k| k.2.clone()),
                    changed: !undid_nothing,
                });
            }
            if let Some(k) = key {
                data.answers.insert(k, (status, body.clone()));
            }
            let count =
                |data: &mut Data, which: fn(&mut SimSnapshot) -> &mut BTreeMap<String, u64>| {
                    *which(&mut data.snap).entry(op.to_owned()).or_default() += 1;
                };
            match after {
                AfterApply::Stall => {
                    count(&mut data, |s| &mut s.stalls);
                    return Answer::Late(status, body);
                }
                // The answer-losing faults hit only requests that were
                // applied.
                _ if !status.is_success() => {}
                AfterApply::LoseAck => {
                    count(&mut data, |s| &mut s.lost_acks);
                    let (s, v) = error(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!("{op}: applied, answer lost"),
                    );
                    return Answer::Now((s, Json(v)).into_response());
                }
                AfterApply::Error500 => {
                    count(&mut data, |s| &mut s.applied_then_500);
                    let (s, v) = error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("{op}: applied, then failed"),
                    );
                    return Answer::Now((s, Json(v)).into_response());
                }
                AfterApply::Reset => {
                    count(&mut data, |s| &mut s.applied_then_reset);
                    return Answer::Reset;
                }
                AfterApply::Answer => {}
            }
            Answer::Now((status, Json(body)).into_response())
        })();
        match decided {
            Answer::Now(now) => now,
            Answer::Late(status, body) => {
                tokio::time::sleep(Duration::from_millis(fault.stall_ms)).await;
                (status, Json(body)).into_response()
            }
            Answer::Reset => {
                conn.trip();
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }

    fn read(&self, f: impl FnOnce(&SimSnapshot) -> Option<Value>) -> Response {
        let data = self.data.lock().unwrap_or_else(|e| e.into_inner());
        match f(&data.snap) {
            Some(v) => (StatusCode::OK, Json(v)).into_response(),
            None => {
                let (s, v) = error(StatusCode::NOT_FOUND, "no such record");
                (s, Json(v)).into_response()
            }
        }
    }
}

/// The connection a request came on, to reset it.
type Conn = ConnectInfo<ResetSwitch>;

/// The simulators' routes: each system's, per tenant
/// (`/{system}/tenants/{tenant}/…`), `GET /_state` and `/_devices`.
fn router(inner: Shared) -> Router {
    Router::new()
        .nest("/onu/tenants/{tenant}", onu::routes())
        .nest("/cpe/tenants/{tenant}", cpe::routes())
        .nest("/billing/tenants/{tenant}", billing::routes())
        .route("/_state", get(state))
        .merge(devices::routes())
        .with_state(inner)
}

async fn state(State(s): State<Shared>) -> Response {
    s.read(|snap| Some(to_value(snap)))
}

/// `?created_by=<key>` or `?subscriber_id=<id>`: whose resource an undo may
/// remove (see [`crate::adapters::Owner`]); neither removes it whoever it
/// belongs to.
#[derive(Debug, Deserialize)]
struct OwnerQuery {
    created_by: Option<String>,
    subscriber_id: Option<String>,
}

impl OwnerQuery {
    /// Whether a resource made by `made_by` for `subscriber` is the
    /// caller's to remove.
    fn owns(&self, made_by: Option<&str>, subscriber: &str) -> bool {
        self.created_by
            .as_deref()
            .is_none_or(|k| made_by == Some(k))
            && self
                .subscriber_id
                .as_deref()
                .is_none_or(|s| s == subscriber)
    }
}

/// The answer to an undo.
fn undone(serial: &str, changed: bool) -> (StatusCode, serde_json::Value) {
    (
        StatusCode::OK,
        json!({ "serial": serial, "changed": changed }),
    )
}
