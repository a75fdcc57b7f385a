//! The TR-069 ACS simulator's routes, under `/cpe/tenants/{tenant}`:
//! `GET|PUT /devices/{serial}/config` and
//! `DELETE /devices/{serial}/config?created_by=…|subscriber_id=…`. A
//! configuration naming a run gets its inform later (see `devices.rs`).

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::{Conn, OwnerQuery, Shared, error, idempotency_key, to_value, undone};
use crate::cpe::{CpeConfig, CpeRecord};

pub(super) fn routes() -> Router<Shared> {
    Router::new().route(
        "/devices/{serial}/config",
        get(cpe_get).put(cpe_configure).delete(cpe_unconfigure),
    )
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
    let key_of = key.clone();
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
        if let Some(target) = &cfg.inform {
            s.cpe_configured(&tenant, &serial, key_of.as_deref(), target);
        }
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
