//! What the simulated devices do on their own, after the calls that set
//! them up: an activated ONU ranges (reports online) `onu_ranging_ms` after
//! its activation, unless its serial is in `onu_never_range`; a configured
//! CPE bootstraps and its inform reaches the workflow run that configured
//! it, through the [`InformHook`] (`SignalWorkflow`, as a real ACS's
//! notification hook), `cpe_inform_delay_ms` after the configuration,
//! unless its serial is in `cpe_silent`. `"*"` in a list stands for every
//! serial. Changeable while running ([`super::SimHandle::set_devices`],
//! `PUT /_devices`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing::get};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Inner, Shared, to_value};
use crate::cpe::InformTarget;

/// How the simulated devices behave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Devices {
    /// How long after its activation an ONU reports online.
    pub onu_ranging_ms: u64,
    /// Serials of ONUs that never range (`"*"`: none ranges).
    pub onu_never_range: Vec<String>,
    /// How long after its configuration a CPE's inform is sent.
    pub cpe_inform_delay_ms: u64,
    /// Serials of CPEs that never send their inform (`"*"`: none does).
    pub cpe_silent: Vec<String>,
}

impl Default for Devices {
    fn default() -> Self {
        Self {
            onu_ranging_ms: 500,
            onu_never_range: Vec::new(),
            cpe_inform_delay_ms: 200,
            cpe_silent: Vec::new(),
        }
    }
}

fn listed(list: &[String], serial: &str) -> bool {
    list.iter().any(|s| s == "*" || s == serial)
}

/// A CPE's bootstrap inform, for the run that configured it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inform {
    pub tenant: String,
    pub run_id: String,
    /// The signal's name (the configuration's [`InformTarget::signal`]).
    pub signal: String,
    /// `{serial}:{configuration's idempotency key}`: a repeat of the same
    /// inform is the same signal.
    pub key: String,
    /// `{"serial": …, "event": "1 BOOT", "at": …}`.
    pub payload: Value,
}

/// An inform that was not delivered: refused, or given up after
/// [`TRIES`] tries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LostInform {
    pub inform: Inform,
    /// The refusal, or the last try's error.
    pub reason: String,
}

/// Why an inform was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InformError {
    /// Worth another try (the server is not reachable yet, a 5xx).
    #[error("{0}")]
    Retry(String),
    /// Refused for good (the run finished, a bad token).
    #[error("{0}")]
    Refused(String),
}

/// Where informs go: sagaflow's `SignalWorkflow`, as a real ACS's
/// notification hook calls it.
#[async_trait]
pub trait InformHook: Send + Sync + 'static {
    async fn deliver(&self, inform: &Inform) -> Result<(), InformError>;
}

/// Tries of one inform before it is given up (one every [`RETRY_EVERY`]).
const TRIES: u32 = 120;
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// When each active ONU was activated, by (tenant, serial).
#[derive(Debug, Default)]
pub(super) struct DeviceState {
    activated: HashMap<(String, String), Instant>,
}

impl DeviceState {
    /// An ONU newly activated: it starts ranging now.
    pub(super) fn onu_activated(&mut self, tenant: &str, serial: &str) {
        self.activated
            .insert((tenant.to_owned(), serial.to_owned()), Instant::now());
    }

    pub(super) fn onu_deactivated(&mut self, tenant: &str, serial: &str) {
        self.activated
            .remove(&(tenant.to_owned(), serial.to_owned()));
    }
}

impl Inner {
    fn devices(&self) -> Devices {
        self.devices
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `GET …/onus/{serial}`: the active ONU and whether it is online.
    pub(super) fn onu_link(&self, tenant: &str, serial: &str) -> Option<Value> {
        let devices = self.devices();
        let data = self.data.lock().unwrap_or_else(|e| e.into_inner());
        let status = data.snap.tenant(tenant).onus.get(serial)?;
        let since = data
            .devices
            .activated
            .get(&(tenant.to_owned(), serial.to_owned()));
        let online = !listed(&devices.onu_never_range, serial)
            && since.is_some_and(|t| t.elapsed() >= Duration::from_millis(devices.onu_ranging_ms));
        let mut v = to_value(status);
        if let Some(o) = v.as_object_mut() {
            o.insert("online".into(), Value::Bool(online));
        }
        Some(v)
    }

    /// A CPE was configured for `target`'s run: its inform is sent after
    /// the delay (unless it is silent), retried until delivered, refused or
    /// [`TRIES`] tries; delivered ones are in the snapshot's `informs`, the
    /// others in its `informs_lost`.
    pub(super) fn cpe_configured(
        self: &Arc<Self>,
        tenant: &str,
        serial: &str,
        key: Option<&str>,
        target: &InformTarget,
    ) {
        let devices = self.devices();
        if listed(&devices.cpe_silent, serial) {
            return;
        }
        let inform = Inform {
            tenant: tenant.to_owned(),
            run_id: target.run_id.clone(),
            signal: target.signal.clone(),
            key: format!("{serial}:{}", key.unwrap_or_default()),
            payload: json!({
                "serial": serial,
                "event": "1 BOOT",
                "at": chrono::Utc::now().to_rfc3339(),
            }),
        };
        let (me, delay) = (self.clone(), devices.cpe_inform_delay_ms);
        tokio::spawn(async move {
            tokio::select! {
                () = me.stop.cancelled() => {}
                () = me.send_inform(inform, Duration::from_millis(delay)) => {}
            }
        });
    }

    async fn send_inform(&self, inform: Inform, delay: Duration) {
        tokio::time::sleep(delay).await;
        let mut last = String::new();
        for _ in 0..TRIES {
            let hook = self.hook.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let result = match hook {
                Some(h) => h.deliver(&inform).await,
                None => Err(InformError::Retry("no inform hook installed".into())),
            };
            match result {
                Ok(()) => {
                    let mut data = self.data.lock().unwrap_or_else(|e| e.into_inner());
                    data.snap.informs.push(inform);
                    return;
                }
                Err(InformError::Refused(e)) => {
                    tracing::warn!(run = %inform.run_id, error = %e, "CPE inform refused");
                    return self.lost(inform, format!("refused: {e}"));
                }
                Err(InformError::Retry(e)) => {
                    tracing::debug!(run = %inform.run_id, error = %e, "CPE inform not delivered yet");
                    last = e;
                }
            }
            tokio::time::sleep(RETRY_EVERY).await; // the hook's retry interval
        }
        tracing::warn!(run = %inform.run_id, error = %last, "CPE inform given up");
        self.lost(inform, format!("given up after {TRIES} tries: {last}"));
    }

    fn lost(&self, inform: Inform, reason: String) {
        let mut data = self.data.lock().unwrap_or_else(|e| e.into_inner());
        data.snap.informs_lost.push(LostInform { inform, reason });
    }
}

/// `GET|PUT /_devices`: the devices' behaviour, to read or replace.
pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/_devices", get(devices_get).put(devices_put))
}

async fn devices_get(State(s): State<Shared>) -> Response {
    (StatusCode::OK, Json(to_value(&s.devices()))).into_response()
}

async fn devices_put(State(s): State<Shared>, Json(d): Json<Devices>) -> Response {
    *s.devices.lock().unwrap_or_else(|e| e.into_inner()) = d.clone();
    (StatusCode::OK, Json(to_value(&d))).into_response()
}

/// Informs signalled to an engine in the same process (`Engine::signal`),
/// for tests and benchmarks without a gRPC server; `serve` and `dev`
/// signal over gRPC instead.
pub struct EngineInform(pub sagaflow_engine::Engine);

#[async_trait]
impl InformHook for EngineInform {
    async fn deliver(&self, inform: &Inform) -> Result<(), InformError> {
        use sagaflow_engine::error::Error;
        let run_id = inform
            .run_id
            .parse()
            .map_err(|_| InformError::Refused(format!("no run id: {}", inform.run_id)))?;
        let req = sagaflow_engine::engine::SignalRequest {
            tenant_id: sagaflow_engine::ids::TenantId::new(&inform.tenant),
            run_id,
            name: inform.signal.clone(),
            payload: inform.payload.clone(),
            idempotency_key: inform.key.clone(),
            actor: "acs-simulator".into(),
        };
        match self.0.signal(req).await {
            Ok(_) => Ok(()),
            Err(e @ (Error::FailedPrecondition(_) | Error::InvalidArgument(_))) => {
                Err(InformError::Refused(e.to_string()))
            }
            Err(e) => Err(InformError::Retry(e.to_string())),
        }
    }
}
