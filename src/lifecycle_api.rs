//! `sagaflow.v1.LifecycleService`: the read side of address lifecycles and
//! pools. It lives in the binary because it joins the engine's API (auth,
//! conversions) with the ISP domain's repositories.

use std::sync::Arc;

use sagaflow_engine::api::auth::{Authenticator, Role};
use sagaflow_engine::api::convert;
use sagaflow_engine::store::unreachable_database;
use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::lifecycle_service_server::LifecycleService;
use sagaflow_steps::db::DomainDb;
use sagaflow_steps::ipam::IpamError;
use sagaflow_steps::ipam::repo as ipam;
use sagaflow_steps::lifecycle::repo::{self as lifecycle, LifecycleError};
use sagaflow_steps::lifecycle::{AddressState, Family};
use tonic::{Request, Response, Status};

/// The LifecycleService implementation.
#[derive(Clone)]
pub struct LifecycleApi {
    db: DomainDb,
    auth: Arc<Authenticator>,
}

impl LifecycleApi {
    pub fn new(db: DomainDb, auth: Arc<Authenticator>) -> Self {
        Self { db, auth }
    }

    pub fn into_service(self) -> pb::lifecycle_service_server::LifecycleServiceServer<Self> {
        pb::lifecycle_service_server::LifecycleServiceServer::new(self)
    }
}

/// A failed query: UNAVAILABLE when the database could not be reached or no
/// pool connection came free in time, as on the other services; otherwise
/// INTERNAL with a reference that is logged with the detail.
fn query_failed(e: &dyn std::fmt::Display, db: Option<&sqlx::Error>) -> Status {
    let reference = uuid::Uuid::now_v7();
    if db.is_some_and(unreachable_database) {
        tracing::warn!(%reference, error = %e, "lifecycle query: store unavailable");
        return Status::unavailable(format!(
            "the store is unavailable; retry later (ref {reference})"
        ));
    }
    tracing::error!(%reference, error = %e, "lifecycle query failed");
    Status::internal(format!("internal error (ref {reference})"))
}

fn lifecycle_failed(e: LifecycleError) -> Status {
    let db = match &e {
        LifecycleError::Database(d) => Some(d),
        _ => None,
    };
    query_failed(&e, db)
}

fn ipam_failed(e: IpamError) -> Status {
    let db = match &e {
        IpamError::Database(d) | IpamError::Lifecycle(LifecycleError::Database(d)) => Some(d),
        _ => None,
    };
    query_failed(&e, db)
}

pub fn family(f: Family) -> pb::AddressFamily {
    match f {
        Family::Ipv4 => pb::AddressFamily::Ipv4,
        Family::Ipv6 => pb::AddressFamily::Ipv6,
    }
}

pub fn state(s: AddressState) -> pb::LifecycleState {
    match s {
        AddressState::Pending => pb::LifecycleState::Pending,
        AddressState::Allocated => pb::LifecycleState::Allocated,
        AddressState::Active => pb::LifecycleState::Active,
        AddressState::Suspended => pb::LifecycleState::Suspended,
        AddressState::Revoking => pb::LifecycleState::Revoking,
        AddressState::Revoked => pb::LifecycleState::Revoked,
        AddressState::Failed => pb::LifecycleState::Failed,
    }
}

#[tonic::async_trait]
impl LifecycleService for LifecycleApi {
    async fn get_subscriber_addresses(
        &self,
        request: Request<pb::GetSubscriberAddressesRequest>,
    ) -> Result<Response<pb::GetSubscriberAddressesResponse>, Status> {
        let p = self.auth.authorize(request.metadata(), Role::Crm)?;
        let sub = &request.get_ref().subscriber_id;
        if sub.is_empty() || sub.chars().count() > 256 || sub.contains('\0') {
            return Err(Status::invalid_argument(
                "subscriber_id must be 1 to 256 characters without NUL",
            ));
        }
        let records = lifecycle::for_subscriber(&self.db, p.tenant.as_str(), sub)
            .await
            .map_err(lifecycle_failed)?;
        let ts = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(convert::timestamp);
        Ok(Response::new(pb::GetSubscriberAddressesResponse {
            addresses: records
                .iter()
                .map(|r| pb::AddressRecord {
                    id: r.id.to_string(),
                    subscriber_id: r.subscriber_id.clone(),
                    pool_id: r.pool_id.to_string(),
                    family: family(r.family) as i32,
                    address: r.address.clone(),
                    state: state(r.state) as i32,
                    allocated_at: ts(r.allocated_at),
                    activated_at: ts(r.activated_at),
                    suspended_at: ts(r.suspended_at),
                    revoked_at: ts(r.revoked_at),
                    metadata: Some(sagaflow_proto::json::json_to_struct(&r.metadata)),
                    workflow_id: r.workflow_id.clone().unwrap_or_default(),
                })
                .collect(),
        }))
    }

    async fn list_pools(
        &self,
        request: Request<pb::ListPoolsRequest>,
    ) -> Result<Response<pb::ListPoolsResponse>, Status> {
        let p = self.auth.authorize(request.metadata(), Role::Crm)?;
        let usage = ipam::utilization(&self.db, Some(p.tenant.as_str()))
            .await
            .map_err(ipam_failed)?;
        Ok(Response::new(pb::ListPoolsResponse {
            pools: usage
                .iter()
                .map(|u| pb::Pool {
                    id: u.pool.id.to_string(),
                    name: u.pool.name.clone(),
                    family: family(u.pool.family) as i32,
                    cidr: u.pool.cidr.to_string(),
                    prefix_length: u32::from(u.pool.prefix_length),
                    capacity: u.capacity().max(0) as u64,
                    in_use: u.in_use.max(0) as u64,
                    utilization_percent: u.percent(),
                    warning_threshold_percent: u32::from(u.pool.warning_percent),
                    critical_threshold_percent: u32::from(u.pool.critical_percent),
                    // Pools come from the configuration and the built-in
                    // IPAM; retiring and forecasts are not built yet.
                    retired: false,
                    growth_per_day: 0.0,
                    exhaustion_forecast: None,
                    backend: "builtin".into(),
                })
                .collect(),
        }))
    }

    async fn get_lifecycle_summary(
        &self,
        request: Request<pb::GetLifecycleSummaryRequest>,
    ) -> Result<Response<pb::GetLifecycleSummaryResponse>, Status> {
        let p = self.auth.authorize(request.metadata(), Role::Crm)?;
        let counts = lifecycle::counts(&self.db, p.tenant.as_str())
            .await
            .map_err(lifecycle_failed)?;
        Ok(Response::new(pb::GetLifecycleSummaryResponse {
            counts: counts
                .iter()
                .map(|c| pb::StateCount {
                    family: family(c.family) as i32,
                    state: state(c.state) as i32,
                    count: c.count.max(0) as u64,
                })
                .collect(),
        }))
    }

    async fn create_pool(
        &self,
        request: Request<pb::CreatePoolRequest>,
    ) -> Result<Response<pb::Pool>, Status> {
        self.auth.authorize(request.metadata(), Role::Admin)?;
        Err(convert::not_yet("CreatePool"))
    }

    async fn update_pool(
        &self,
        request: Request<pb::UpdatePoolRequest>,
    ) -> Result<Response<pb::Pool>, Status> {
        self.auth.authorize(request.metadata(), Role::Admin)?;
        Err(convert::not_yet("UpdatePool"))
    }

    async fn retire_pool(
        &self,
        request: Request<pb::RetirePoolRequest>,
    ) -> Result<Response<pb::Pool>, Status> {
        self.auth.authorize(request.metadata(), Role::Admin)?;
        Err(convert::not_yet("RetirePool"))
    }

    async fn reserve_address(
        &self,
        request: Request<pb::ReserveAddressRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        self.auth.authorize(request.metadata(), Role::Operator)?;
        Err(convert::not_yet("ReserveAddress"))
    }

    async fn list_reservations(
        &self,
        request: Request<pb::ListReservationsRequest>,
    ) -> Result<Response<pb::ListReservationsResponse>, Status> {
        self.auth.authorize(request.metadata(), Role::Operator)?;
        Err(convert::not_yet("ListReservations"))
    }

    async fn release_reservation(
        &self,
        request: Request<pb::ReleaseReservationRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        self.auth.authorize(request.metadata(), Role::Operator)?;
        Err(convert::not_yet("ReleaseReservation"))
    }
}
