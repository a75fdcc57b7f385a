//! The simulators' HTTP routes: the ONU/OLT gateway under `/onu`, the ACS
//! under `/cpe`, billing under `/billing`, each per tenant
//! (`/{system}/tenants/{tenant}/…`), and `GET /_state`. Each write goes
//! through [`Inner::serve`] (faults, idempotency, effect log).

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::conn::ResetSwitch;
use super::{Data, Inner, Shared, error, idempotency_key, to_value};
use crate::billing::{BillingService, NewService, ServiceState};
use crate::cpe::{CpeConfig, CpeRecord};
use crate::onu::{OnuActivation, OnuStatus};

/// The connection a request came on, to reset it.
type Conn = ConnectInfo<ResetSwitch>;

pub(super) fn router(inner: Shared) -> Router {
    let onu = Router::new()
        .route("/onus/{serial}", get(onu_get))
        .route("/onus/{serial}/activate", post(onu_activate))
        .route("/onus/{serial}/deactivate", post(onu_deactivate));
    let cpe = Router::new().route(
        "/devices/{serial}/config",
        get(cpe_get).put(cpe_configure).delete(cpe_unconfigure),
    );
    let billing = Router::new()
        .route("/services", post(billing_create))
        .route("/services/{sub}", get(billing_get).delete(billing_delete))
        .route("/services/{sub}/suspend", post(billing_suspend))
        .route("/services/{sub}/resume", post(billing_resume));
    Router::new()
        .nest("/onu/tenants/{tenant}", onu)
        .nest("/cpe/tenants/{tenant}", cpe)
        .nest("/billing/tenants/{tenant}", billing)
        .route("/_state", get(state))
        .with_state(inner)
}

async fn state(State(s): State<Shared>) -> Response {
    s.read(|snap| Some(to_value(snap)))
}

async fn onu_get(
    State(s): State<Shared>,
    Path((tenant, serial)): Path<(String, String)>,
) -> Response {
    s.read(|snap| snap.tenant(&tenant).onus.get(&serial).map(to_value))
}

async fn onu_activate(
    State(s): State<Shared>,
    Path((tenant, serial)): Path<(String, String)>,
    ConnectInfo(conn): Conn,
    headers: HeaderMap,
    Json(act): Json<OnuActivation>,
) -> Response {
    let key = idempotency_key(&headers);
    s.serve(("onu.activate", &tenant), &headers, &conn, |d| {
        let activated_by = match d.records(&tenant).onus.get(&serial) {
            Some(cur) if cur.activation.subscriber_id != act.subscriber_id => {
                return error(
                    StatusCode::CONFLICT,
                    format!(
                        "ONU {serial} is active for subscriber {}",
                        cur.activation.subscriber_id
                    ),
                );
            }
            // Still the first request's activation.
            Some(cur) => cur.activated_by.clone(),
            None => key,
        };
        let status = OnuStatus {
            serial: serial.clone(),
            activation: act,
            activated_by,
        };
        d.records(&tenant).onus.insert(serial, status.clone());
        (StatusCode::OK, to_value(&status))
    })
    .await
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

async fn onu_deactivate(
    State(s): State<Shared>,
    Path((tenant, serial)): Path<(String, String)>,
    Query(q): Query<OwnerQuery>,
    ConnectInfo(conn): Conn,
    headers: HeaderMap,
) -> Response {
    s.serve(("onu.deactivate", &tenant), &headers, &conn, |d| {
        let owned = d
            .snap
            .tenant(&tenant)
            .onus
            .get(&serial)
            .is_some_and(|o| q.owns(o.activated_by.as_deref(), &o.activation.subscriber_id));
        if owned {
            d.records(&tenant).onus.remove(&serial);
        }
        undone(&serial, owned)
    })
    .await
}

async fn cpe_get(
    State(s): State<Shared>,
    Path((tenant, serial)): Path<(String, String)>,
) -> Response {
    s.read(|snap| snap.tenant(&tenant).cpes.get(&serial).map(to_value))
}

async fn cpe_configure(
    State(s): State<Shared>,
    Path((tenant, serial)): Path<(String, String)>,
    ConnectInfo(conn): Conn,
    headers: HeaderMap,
    Json(cfg): Json<CpeConfig>,
) -> Response {
    let key = idempotency_key(&headers);
    s.serve(("cpe.configure", &tenant), &headers, &conn, |d| {
        let configured_by = match d.records(&tenant).cpes.get(&serial) {
            Some(cur) if cur.config.subscriber_id != cfg.subscriber_id => {
                return error(
                    StatusCode::CONFLICT,
                    format!(
                        "CPE {serial} is configured for subscriber {}",
                        cur.config.subscriber_id
                    ),
                );
            }
            // Still the first request's configuration.
            Some(cur) => cur.configured_by.clone(),
            None => key,
        };
        let record = CpeRecord {
            config: cfg,
            configured_by,
        };
        let body = json!({ "serial": serial, "config": record.config, "configured_by": record.configured_by });
        d.records(&tenant).cpes.insert(serial, record);
        (StatusCode::OK, body)
    })
    .await
}

async fn cpe_unconfigure(
    State(s): State<Shared>,
    Path((tenant, serial)): Path<(String, String)>,
    Query(q): Query<OwnerQuery>,
    ConnectInfo(conn): Conn,
    headers: HeaderMap,
) -> Response {
    s.serve(("cpe.unconfigure", &tenant), &headers, &conn, |d| {
        let owned = d
            .snap
            .tenant(&tenant)
            .cpes
            .get(&serial)
            .is_some_and(|c| q.owns(c.configured_by.as_deref(), &c.config.subscriber_id));
        if owned {
            d.records(&tenant).cpes.remove(&serial);
        }
        undone(&serial, owned)
    })
    .await
}

async fn billing_get(
    State(s): State<Shared>,
    Path((tenant, sub)): Path<(String, String)>,
) -> Response {
    s.read(|snap| snap.tenant(&tenant).services.get(&sub).map(to_value))
}

async fn billing_create(
    State(s): State<Shared>,
    Path(tenant): Path<String>,
    ConnectInfo(conn): Conn,
    headers: HeaderMap,
    Json(new): Json<NewService>,
) -> Response {
    s.serve(("billing.create", &tenant), &headers, &conn, |d| {
        if d.records(&tenant).services.contains_key(&new.subscriber_id) {
            return error(
                StatusCode::CONFLICT,
                format!("subscriber {} has a service already", new.subscriber_id),
            );
        }
        d.next_service += 1;
        let svc = BillingService {
            service_id: format!("svc-{}", d.next_service),
            subscriber_id: new.subscriber_id.clone(),
            customer_id: new.customer_id,
            plan: new.plan,
            state: ServiceState::Active,
        };
        d.records(&tenant)
            .services
            .insert(new.subscriber_id, svc.clone());
        (StatusCode::CREATED, to_value(&svc))
    })
    .await
}

async fn set_service_state(
    s: &Inner,
    op: &str,
    (tenant, sub): (String, String),
    (headers, conn): (&HeaderMap, &ResetSwitch),
    to: ServiceState,
) -> Response {
    s.serve((op, &tenant), headers, conn, |d| {
        match d.records(&tenant).services.get_mut(&sub) {
            None => error(
                StatusCode::NOT_FOUND,
                format!("service of subscriber {sub}"),
            ),
            Some(svc) => {
                svc.state = to;
                (StatusCode::OK, to_value(svc))
            }
        }
    })
    .await
}

async fn billing_suspend(
    State(s): State<Shared>,
    Path((tenant, sub)): Path<(String, String)>,
    ConnectInfo(conn): Conn,
    headers: HeaderMap,
) -> Response {
    set_service_state(
        &s,
        "billing.suspend",
        (tenant, sub),
        (&headers, &conn),
        ServiceState::Suspended,
    )
    .await
}

async fn billing_resume(
    State(s): State<Shared>,
    Path((tenant, sub)): Path<(String, String)>,
    ConnectInfo(conn): Conn,
    headers: HeaderMap,
) -> Response {
    set_service_state(
        &s,
        "billing.resume",
        (tenant, sub),
        (&headers, &conn),
        ServiceState::Active,
    )
    .await
}

/// `?created_by=<key>`: delete the service only if the create request
/// with that idempotency key made it (an undo never removes a service
/// someone else created).
#[derive(Debug, Deserialize)]
struct DeleteQuery {
    created_by: Option<String>,
}

async fn billing_delete(
    State(s): State<Shared>,
    Path((tenant, sub)): Path<(String, String)>,
    Query(q): Query<DeleteQuery>,
    ConnectInfo(conn): Conn,
    headers: HeaderMap,
) -> Response {
    s.serve(("billing.delete", &tenant), &headers, &conn, |d| {
        let made_by_key = |d: &Data, key: &str| {
            let created = d
                .answer(&tenant, "billing.create", key)
                .filter(|(status, _)| *status == StatusCode::CREATED)
                .and_then(|(_, v)| v["service_id"].as_str());
            let current = d.snap.tenant(&tenant).services.get(&sub);
            created.is_some() && created == current.map(|s| s.service_id.as_str())
        };
        let allowed = match &q.created_by {
            None => true,
            Some(key) => made_by_key(d, key),
        };
        let was = allowed && d.records(&tenant).services.remove(&sub).is_some();
        (
            StatusCode::OK,
            json!({ "subscriber_id": sub, "changed": was }),
        )
    })
    .await
}
