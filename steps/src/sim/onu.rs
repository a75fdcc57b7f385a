//! The ONU/OLT gateway simulator's routes, under `/onu/tenants/{tenant}`:
//! `GET /onus/{serial}` (with `online` once it ranged, see `devices.rs`), `POST /onus/{serial}/activate` and
//! `POST /onus/{serial}/deactivate?created_by=…|subscriber_id=…`.

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::{Conn, OwnerQuery, Shared, error, idempotency_key, to_value, undone};
use crate::onu::{OnuActivation, OnuStatus};

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/onus/{serial}", get(onu_get))
        .route("/onus/{serial}/activate", post(onu_activate))
        .route("/onus/{serial}/deactivate", post(onu_deactivate))
}

async fn onu_get(
    State(s): State<Shared>,
    Path((tenant, serial)): Path<(String, String)>,
) -> Response {
    match s.onu_link(&tenant, &serial) {
        Some(v) => (StatusCode::OK, Json(v)).into_response(),
        None => {
            let (s, v) = error(StatusCode::NOT_FOUND, "no such record");
            (s, Json(v)).into_response()
        }
    }
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
            None => {
                d.devices.onu_activated(&tenant, &serial);
                key
            }
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
            d.devices.onu_deactivated(&tenant, &serial);
        }
        undone(&serial, owned)
    })
    .await
}
