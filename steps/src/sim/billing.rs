//! The billing simulator's routes, under `/billing/tenants/{tenant}`:
//! `POST /services`, `GET|DELETE /services/{sub}` (a delete with
//! `?created_by=…` removes only what that create request made) and
//! `POST /services/{sub}/suspend|resume`.

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::conn::ResetSwitch;
use super::{Conn, Data, Inner, Shared, error, to_value};
use crate::billing::{BillingService, NewService, ServiceState};

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/services", post(billing_create))
        .route("/services/{sub}", get(billing_get).delete(billing_delete))
        .route("/services/{sub}/suspend", post(billing_suspend))
        .route("/services/{sub}/resume", post(billing_resume))
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
