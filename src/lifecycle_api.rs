//! `sagaflow.v1.LifecycleService`: address lifecycles, pools (listed with
//! their forecast; created, grown, re-thresholded and retired at run time,
//! audited under the caller's name) and reservations. It lives in the binary
//! because it joins the engine's API (auth, conversions) with the ISP
//! domain's repositories.

use std::sync::Arc;

use sagaflow_engine::api::auth::{Authenticator, Role};
use sagaflow_engine::api::{check_text, convert};
use sagaflow_engine::store::unreachable_database;
use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::lifecycle_service_server::LifecycleService;
use sagaflow_steps::adapters::AdapterError;
use sagaflow_steps::db::DomainDb;
use sagaflow_steps::ipam::forecast::{self, Forecast};
use sagaflow_steps::ipam::pools::{self, PoolUpdate};
use sagaflow_steps::ipam::repo as ipam;
use sagaflow_steps::ipam::reservations::{self, ReserveRequest};
use sagaflow_steps::ipam::{IpamBackends, IpamConfig, IpamError, PoolConfig, PoolUsage};
use sagaflow_steps::lifecycle::repo::AddressRecord;
use sagaflow_steps::lifecycle::repo::{self as lifecycle, LifecycleError};
use sagaflow_steps::lifecycle::{AddressState, Family};
use sagaflow_steps::notify::{LogNotifier, Notifier};
use tonic::{Request, Response, Status};

/// The LifecycleService implementation.
#[derive(Clone)]
pub struct LifecycleApi {
    db: DomainDb,
    auth: Arc<Authenticator>,
    /// Which backend each tenant's pools use.
    ipam: IpamConfig,
    /// The thresholds of a pool created without its own.
    default_thresholds: (u8, u8),
    /// Who hears of reservations made.
    notifier: Arc<dyn Notifier>,
    /// Each tenant's IPAM backend, which holds reservations too.
    backends: Arc<IpamBackends>,
}

impl LifecycleApi {
    pub fn new(db: DomainDb, auth: Arc<Authenticator>) -> Self {
        Self {
            db,
            auth,
            ipam: IpamConfig::default(),
            default_thresholds: (80, 100),
            notifier: Arc::new(LogNotifier),
            backends: Arc::new(IpamBackends::default()),
        }
    }

    /// With the IPAM backends the domain runs with.
    pub fn with_backends(mut self, backends: Arc<IpamBackends>) -> Self {
        self.backends = backends;
        self
    }

    /// With the notifier of `[domain.notify]`.
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = notifier;
        self
    }

    /// With the IPAM backends and default thresholds of the configuration.
    pub fn with_domain(mut self, ipam: IpamConfig, thresholds: (u8, u8)) -> Self {
        self.ipam = ipam;
        self.default_thresholds = thresholds;
        self
    }

    fn pool_pb(&self, tenant: &str, u: &PoolUsage, f: &Forecast) -> pb::Pool {
        pb::Pool {
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
            retired: u.pool.retired_at.is_some(),
            growth_per_day: f.growth_per_day,
            exhaustion_forecast: f.exhaustion_at.map(convert::timestamp),
            backend: self.ipam.kind_for(tenant).as_str().into(),
        }
    }

    /// A tenant's pool as the API shows it, by name.
    async fn pool_named(&self, tenant: &str, name: &str) -> Result<pb::Pool, Status> {
        let usage = ipam::utilization(&self.db, Some(tenant))
            .await
            .map_err(ipam_failed)?;
        let u = usage
            .iter()
            .find(|u| u.pool.name == name)
            .ok_or_else(|| Status::not_found(format!("pool {name:?} does not exist")))?;
        let f = forecast::forecasts(
            &self.db,
            tenant,
            std::slice::from_ref(u),
            chrono::Utc::now(),
        )
        .await
        .map_err(ipam_failed)?;
        Ok(self.pool_pb(tenant, u, f.get(&u.pool.id).unwrap_or(&Forecast::NONE)))
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
    match &e {
        IpamError::PoolExists { .. } => return Status::already_exists(e.to_string()),
        IpamError::UnknownPool { .. } | IpamError::NoPool { .. } => {
            return Status::not_found(e.to_string());
        }
        IpamError::InvalidPool { .. }
        | IpamError::PoolChanged { .. }
        | IpamError::NotInPool { .. } => return Status::invalid_argument(e.to_string()),
        IpamError::Retired { .. } | IpamError::Exhausted { .. } | IpamError::Taken { .. } => {
            return Status::failed_precondition(e.to_string());
        }
        // The IPAM backend (NetBox) did not answer or asks to wait: the
        // request changed nothing in sagaflow and may be retried.
        IpamError::External(
            AdapterError::Unavailable { .. }
            | AdapterError::Uncertain { .. }
            | AdapterError::Throttled { .. },
        ) => return Status::unavailable(format!("{e}; retry later")),
        _ => {}
    }
    let db = match &e {
        IpamError::Database(d) | IpamError::Lifecycle(LifecycleError::Database(d)) => Some(d),
        _ => None,
    };
    query_failed(&e, db)
}

fn reservation(r: &AddressRecord) -> pb::Reservation {
    pb::Reservation {
        id: r.id.to_string(),
        pool_id: r.pool_id.to_string(),
        family: family(r.family) as i32,
        address: r.address.clone(),
        subscriber_id: r.subscriber_id.clone(),
        reason: r.metadata["reason"].as_str().unwrap_or_default().to_owned(),
        created_at: r.pending_at.map(convert::timestamp),
        expires_at: r.reserved_until.map(convert::timestamp),
        released: r.state != AddressState::Pending,
    }
}

/// A `uint32` field that must fit a `u8` (0: unset).
/// The longest pool name, subscriber id and address a request may carry.
const MAX_NAME: usize = 256;
/// The longest reason.
const MAX_REASON: usize = 1024;
/// The longest reservation, in days (ten years).
const MAX_RESERVATION_DAYS: u32 = 3650;

/// Checks a name-like field: 1 to [`MAX_NAME`] characters, no NUL.
fn check_name(field: &str, value: &str) -> Result<(), Status> {
    if value.trim().is_empty() {
        return Err(Status::invalid_argument(format!(
            "{field} must not be empty"
        )));
    }
    check_text(field, value, MAX_NAME)
}

/// Checks a requested address or prefix (`192.0.2.7`, `2001:db8:1::/56`):
/// it must be of the requested family, whatever pools the tenant has.
fn check_address(a: &str, fam: Family) -> Result<(), Status> {
    let (ip, len) = a.split_once('/').map_or((a, None), |(ip, l)| (ip, Some(l)));
    let (ok_family, max_len, name) = match (ip.parse::<std::net::IpAddr>(), fam) {
        (Ok(std::net::IpAddr::V4(_)), Family::Ipv4) => (true, 32, "IPv4"),
        (Ok(std::net::IpAddr::V6(_)), Family::Ipv6) => (true, 128, "IPv6"),
        (_, Family::Ipv4) => (false, 32, "IPv4"),
        (_, Family::Ipv6) => (false, 128, "IPv6"),
    };
    if ok_family && len.is_none_or(|l| l.parse::<u8>().is_ok_and(|l| l <= max_len)) {
        return Ok(());
    }
    Err(Status::invalid_argument(format!(
        "address {a:?} is not an {name} address or prefix"
    )))
}

fn narrow(field: &str, v: u32) -> Result<Option<u8>, Status> {
    if v == 0 {
        return Ok(None);
    }
    u8::try_from(v)
        .map(Some)
        .map_err(|_| Status::invalid_argument(format!("{field} {v} is out of range")))
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
        let tenant = p.tenant.as_str();
        let forecasts = forecast::forecasts(&self.db, tenant, &usage, chrono::Utc::now())
            .await
            .map_err(ipam_failed)?;
        Ok(Response::new(pb::ListPoolsResponse {
            pools: usage
                .iter()
                .map(|u| {
                    let f = forecasts.get(&u.pool.id).unwrap_or(&Forecast::NONE);
                    self.pool_pb(tenant, u, f)
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
        let p = self.auth.authorize(request.metadata(), Role::Admin)?;
        let r = request.into_inner();
        let tenant = p.tenant.as_str();
        let cidr = r.cidr.parse().map_err(|_| {
            Status::invalid_argument(format!(
                "cidr {:?} is not a range such as 100.64.0.0/16 or 2001:db8::/40",
                r.cidr
            ))
        })?;
        check_name("name", &r.name)?;
        let mut c = PoolConfig::new(tenant, &r.name, cidr);
        c.prefix_length = narrow("prefix_length", r.prefix_length)?;
        c.warning_percent = narrow("warning_threshold_percent", r.warning_threshold_percent)?
            .or(Some(self.default_thresholds.0));
        c.critical_percent = narrow("critical_threshold_percent", r.critical_threshold_percent)?
            .or(Some(self.default_thresholds.1));
        pools::create_pool(&self.db, &c, &p.name, chrono::Utc::now())
            .await
            .map_err(ipam_failed)?;
        Ok(Response::new(self.pool_named(tenant, &r.name).await?))
    }

    async fn update_pool(
        &self,
        request: Request<pb::UpdatePoolRequest>,
    ) -> Result<Response<pb::Pool>, Status> {
        let p = self.auth.authorize(request.metadata(), Role::Admin)?;
        let r = request.into_inner();
        let tenant = p.tenant.as_str();
        check_name("name", &r.name)?;
        let cidr = if r.cidr.is_empty() {
            None
        } else {
            Some(r.cidr.parse().map_err(|_| {
                Status::invalid_argument(format!("cidr {:?} is not a range", r.cidr))
            })?)
        };
        let change = PoolUpdate {
            cidr,
            warning_percent: narrow("warning_threshold_percent", r.warning_threshold_percent)?,
            critical_percent: narrow("critical_threshold_percent", r.critical_threshold_percent)?,
        };
        pools::update_pool(
            &self.db,
            tenant,
            &r.name,
            &change,
            &p.name,
            chrono::Utc::now(),
        )
        .await
        .map_err(ipam_failed)?;
        Ok(Response::new(self.pool_named(tenant, &r.name).await?))
    }

    async fn retire_pool(
        &self,
        request: Request<pb::RetirePoolRequest>,
    ) -> Result<Response<pb::Pool>, Status> {
        let p = self.auth.authorize(request.metadata(), Role::Admin)?;
        let r = request.into_inner();
        let tenant = p.tenant.as_str();
        check_name("name", &r.name)?;
        pools::retire_pool(&self.db, tenant, &r.name, &p.name, chrono::Utc::now())
            .await
            .map_err(ipam_failed)?;
        Ok(Response::new(self.pool_named(tenant, &r.name).await?))
    }

    async fn reserve_address(
        &self,
        request: Request<pb::ReserveAddressRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let p = self.auth.authorize(request.metadata(), Role::Operator)?;
        let r = request.into_inner();
        check_name("subscriber_id", &r.subscriber_id)?;
        check_text("pool", &r.pool, MAX_NAME)?;
        check_text("address", &r.address, MAX_NAME)?;
        check_text("reason", &r.reason, MAX_REASON)?;
        if r.expires_in_days > MAX_RESERVATION_DAYS {
            return Err(Status::invalid_argument(format!(
                "expires_in_days {} is over {MAX_RESERVATION_DAYS}",
                r.expires_in_days
            )));
        }
        let fam = match pb::AddressFamily::try_from(r.family) {
            Ok(pb::AddressFamily::Ipv4) => Family::Ipv4,
            Ok(pb::AddressFamily::Ipv6) => Family::Ipv6,
            _ => return Err(Status::invalid_argument("family must be IPV4 or IPV6")),
        };
        if !r.address.is_empty() {
            check_address(&r.address, fam)?;
        }
        let req = ReserveRequest {
            tenant: p.tenant.as_str(),
            subscriber_id: &r.subscriber_id,
            pool: Some(r.pool.as_str()).filter(|s| !s.is_empty()),
            family: fam,
            address: Some(r.address.as_str()).filter(|s| !s.is_empty()),
            expires_in_days: r.expires_in_days,
            reason: &r.reason,
            owner: &p.name,
        };
        let backend = self.backends.for_tenant(p.tenant.as_str());
        let rec = reservations::reserve(
            &self.db,
            backend.as_ref(),
            self.notifier.as_ref(),
            &req,
            chrono::Utc::now(),
        )
        .await
        .map_err(ipam_failed)?;
        Ok(Response::new(reservation(&rec)))
    }

    async fn list_reservations(
        &self,
        request: Request<pb::ListReservationsRequest>,
    ) -> Result<Response<pb::ListReservationsResponse>, Status> {
        let p = self.auth.authorize(request.metadata(), Role::Operator)?;
        let r = request.into_inner();
        check_text("subscriber_id", &r.subscriber_id, MAX_NAME)?;
        let subscriber = Some(r.subscriber_id.as_str()).filter(|s| !s.is_empty());
        let all = reservations::list(&self.db, p.tenant.as_str(), subscriber)
            .await
            .map_err(ipam_failed)?;
        Ok(Response::new(pb::ListReservationsResponse {
            reservations: all.iter().map(reservation).collect(),
        }))
    }

    async fn release_reservation(
        &self,
        request: Request<pb::ReleaseReservationRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let p = self.auth.authorize(request.metadata(), Role::Operator)?;
        let r = request.into_inner();
        let id: i64 = r.id.parse().map_err(|_| {
            Status::invalid_argument(format!("id {:?} is not a reservation id", r.id))
        })?;
        let tenant = p.tenant.as_str();
        let backend = self.backends.for_tenant(tenant);
        let rec = reservations::release(
            &self.db,
            backend.as_ref(),
            tenant,
            id,
            &p.name,
            chrono::Utc::now(),
        )
        .await
        .map_err(|e| match e {
            IpamError::Lifecycle(LifecycleError::NotFound(_)) => {
                Status::not_found(format!("reservation {id} does not exist"))
            }
            e => ipam_failed(e),
        })?;
        Ok(Response::new(reservation(&rec)))
    }
}
