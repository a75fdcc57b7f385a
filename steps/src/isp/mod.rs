//! The ISP step handlers: provisioning, suspension, reactivation and
//! deprovisioning of a broadband subscriber, each step with its
//! compensation. Every handler is idempotent on its key: database effects
//! check the state they move from, external calls carry the idempotency key.
//!
//! Handlers read the run's context: the workflow input (see the schemas in
//! `workflows/`) plus earlier steps' outputs. `subscriber.verify` puts a
//! stored subscriber's data into the context under the same names the
//! provisioning input uses, so later steps of suspend, reactivate and
//! deprovision read them the same way.

mod errors;

use std::sync::Arc;

use sagaflow_engine::clock::Clock;
use sagaflow_engine::handler::{CallKind, Registry, StepError, StepOutput, StepRequest};
use serde_json::{Value, json};

use crate::adapters::Owner;
use crate::adapters::billing::{BillingAdapter, NewService};
use crate::adapters::cpe::{CpeAdapter, CpeConfig};
use crate::adapters::onu::{OnuActivation, OnuAdapter};
use crate::db::DomainDb;
use crate::ipam::{IpamError, repo as ipam};
use crate::lifecycle::repo::{self as lifecycle, AddressRecord};
use crate::lifecycle::{AddressState, Family};
use crate::maintenance::MaintenanceConfig;
use crate::notify::Notifier;
use crate::subscriber::repo as subscribers;
use crate::subscriber::{NewCustomer, NewProfile, NewSubscriber, SubscriberState};

/// The adapters and clock the ISP handlers use.
#[derive(Clone)]
pub struct DomainDeps {
    pub onu: Arc<dyn OnuAdapter>,
    pub cpe: Arc<dyn CpeAdapter>,
    pub billing: Arc<dyn BillingAdapter>,
    pub clock: Arc<dyn Clock>,
    /// Ages, thresholds and batch size of the maintenance jobs.
    pub maintenance: MaintenanceConfig,
    /// Where the maintenance jobs send notifications.
    pub notifier: Arc<dyn Notifier>,
}

impl std::fmt::Debug for DomainDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DomainDeps")
    }
}

/// Default bandwidth of a profile whose input names none, in kbit/s.
const DEFAULT_DOWNLOAD_KBPS: i64 = 100_000;
const DEFAULT_UPLOAD_KBPS: i64 = 20_000;
/// The delegated prefix length when the input names none.
const DEFAULT_PD_SIZE: u8 = 56;

type StepResult = Result<StepOutput, StepError>;

struct Isp {
    db: DomainDb,
    deps: DomainDeps,
}

fn invalid(message: impl Into<String>) -> StepError {
    StepError::fatal("invalid_input", message)
}

fn output(v: Value) -> StepOutput {
    match v {
        Value::Object(m) => m,
        _ => StepOutput::new(),
    }
}

fn opt_str(req: &StepRequest, pointer: &str) -> Option<String> {
    req.context
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn opt_i64(req: &StepRequest, pointer: &str) -> Option<i64> {
    req.context.pointer(pointer).and_then(Value::as_i64)
}

fn flag(req: &StepRequest, pointer: &str) -> bool {
    req.context
        .pointer(pointer)
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

fn subscriber_id(req: &StepRequest) -> Result<String, StepError> {
    req.context_str("/subscriber_id").map(str::to_owned)
}

fn run(req: &StepRequest) -> String {
    req.run_id.to_string()
}

/// The forward key of the step (also when compensating): allocations are
/// found again by it.
fn forward_key(req: &StepRequest) -> String {
    format!("{}:{}", req.run_id, req.step)
}

/// Whose device an external undo may touch: a compensation only what its
/// step's forward request made, a forward removal only the subscriber's.
fn owner<'a>(req: &StepRequest, created_by: &'a str, subscriber: &'a str) -> Owner<'a> {
    match req.kind {
        CallKind::Compensate => Owner::Request(created_by),
        CallKind::Forward => Owner::Subscriber(subscriber),
    }
}

fn allocation_key(req: &StepRequest, family: Family) -> String {
    format!("{}:{}", forward_key(req), family.lower())
}

fn profile_numbers(req: &StepRequest) -> Result<(i64, i64, Option<i32>), StepError> {
    let vlan = match opt_i64(req, "/service_vlan") {
        None => None,
        Some(v) => Some(
            i32::try_from(v)
                .ok()
                .filter(|v| (1..=4094).contains(v))
                .ok_or_else(|| invalid(format!("service_vlan {v} is not a VLAN id (1-4094)")))?,
        ),
    };
    Ok((
        opt_i64(req, "/download_kbps").unwrap_or(DEFAULT_DOWNLOAD_KBPS),
        opt_i64(req, "/upload_kbps").unwrap_or(DEFAULT_UPLOAD_KBPS),
        vlan,
    ))
}

impl Isp {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.deps.clock.now()
    }

    // ---- records ----

    async fn create_customer(&self, req: StepRequest) -> StepResult {
        let c: NewCustomer = req
            .context
            .pointer("/customer")
            .cloned()
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| invalid("customer needs id, name and email"))?;
        let stored = subscribers::create_customer(
            &self.db,
            req.tenant_id.as_str(),
            &c,
            &run(&req),
            self.now(),
        )
        .await?;
        Ok(output(json!({ "customer_id": stored.id })))
    }

    async fn delete_customer(&self, req: StepRequest) -> StepResult {
        let id = req.context_str("/customer/id")?;
        subscribers::delete_customer_created_by(&self.db, req.tenant_id.as_str(), id, &run(&req))
            .await?;
        Ok(StepOutput::new())
    }

    async fn create_subscriber(&self, req: StepRequest) -> StepResult {
        let (download_kbps, upload_kbps, service_vlan) = profile_numbers(&req)?;
        let s = NewSubscriber {
            subscriber_id: subscriber_id(&req)?,
            customer_id: req.context_str("/customer/id")?.to_owned(),
            plan: req.context_str("/plan")?.to_owned(),
            onu_serial: req.context_str("/onu_serial")?.to_owned(),
            cpe_serial: req.context_str("/cpe_serial")?.to_owned(),
            nas: req.context.pointer("/nas").cloned().unwrap_or(Value::Null),
            enable_ipv6: flag(&req, "/enable_ipv6"),
            details: json!({
                "download_kbps": download_kbps,
                "upload_kbps": upload_kbps,
                "service_vlan": service_vlan,
                "ipv6_pd_size": opt_i64(&req, "/ipv6_pd_size"),
            }),
        };
        let stored = subscribers::create_subscriber(
            &self.db,
            req.tenant_id.as_str(),
            &s,
            &run(&req),
            self.now(),
        )
        .await?;
        Ok(output(json!({ "subscriber_state": stored.state })))
    }

    async fn delete_subscriber(&self, req: StepRequest) -> StepResult {
        subscribers::delete_subscriber_created_by(
            &self.db,
            req.tenant_id.as_str(),
            &subscriber_id(&req)?,
            &run(&req),
        )
        .await?;
        Ok(StepOutput::new())
    }

    async fn create_profile(&self, req: StepRequest) -> StepResult {
        let (download_kbps, upload_kbps, service_vlan) = profile_numbers(&req)?;
        let p = NewProfile {
            subscriber_id: subscriber_id(&req)?,
            plan: req.context_str("/plan")?.to_owned(),
            download_kbps,
            upload_kbps,
            service_vlan,
            ipv6: flag(&req, "/enable_ipv6"),
        };
        let stored = subscribers::create_profile(
            &self.db,
            req.tenant_id.as_str(),
            &p,
            &run(&req),
            self.now(),
        )
        .await?;
        Ok(output(json!({ "network_profile": stored })))
    }

    async fn delete_profile(&self, req: StepRequest) -> StepResult {
        subscribers::delete_profile_created_by(
            &self.db,
            req.tenant_id.as_str(),
            &subscriber_id(&req)?,
            &run(&req),
        )
        .await?;
        Ok(StepOutput::new())
    }

    async fn archive_profile(&self, req: StepRequest) -> StepResult {
        subscribers::archive_profile(
            &self.db,
            req.tenant_id.as_str(),
            &subscriber_id(&req)?,
            self.now(),
        )
        .await?;
        Ok(StepOutput::new())
    }

    async fn archive_subscriber(&self, req: StepRequest) -> StepResult {
        let archived = subscribers::archive_subscriber(
            &self.db,
            req.tenant_id.as_str(),
            &subscriber_id(&req)?,
            self.now(),
        )
        .await?;
        Ok(output(
            json!({ "subscriber_state": SubscriberState::Archived, "archived": archived }),
        ))
    }

    async fn set_state(&self, req: StepRequest, state: SubscriberState) -> StepResult {
        let sub = subscriber_id(&req)?;
        subscribers::set_subscriber_state(
            &self.db,
            req.tenant_id.as_str(),
            &sub,
            state,
            self.now(),
        )
        .await?
        .ok_or_else(|| {
            StepError::fatal("unknown_subscriber", format!("no live subscriber {sub}"))
        })?;
        Ok(output(json!({ "subscriber_state": state })))
    }

    /// Loads a live subscriber into the context.
    async fn verify(&self, req: StepRequest) -> StepResult {
        let tenant = req.tenant_id.as_str();
        let sub = subscriber_id(&req)?;
        let s = subscribers::get_subscriber(&self.db, tenant, &sub)
            .await?
            .ok_or_else(|| {
                StepError::fatal("unknown_subscriber", format!("no live subscriber {sub}"))
            })?;
        let held: Vec<AddressRecord> = lifecycle::for_subscriber(&self.db, tenant, &sub)
            .await?
            .into_iter()
            .filter(|r| r.state.holds_address())
            .collect();
        let address = |f: Family| {
            held.iter()
                .find(|r| r.family == f)
                .map(|r| r.address.clone())
        };
        let mut out = json!({
            "customer": { "id": s.customer_id },
            "plan": s.plan,
            "onu_serial": s.onu_serial,
            "cpe_serial": s.cpe_serial,
            "nas": s.nas,
            "enable_ipv6": s.enable_ipv6,
            "subscriber_state": s.state,
            "ipv4_address": address(Family::Ipv4),
            "ipv6_prefix": address(Family::Ipv6),
        });
        for k in ["download_kbps", "upload_kbps", "service_vlan"] {
            if let Some(v) = s.details.get(k).filter(|v| !v.is_null()) {
                out[k] = v.clone();
            }
        }
        Ok(output(out))
    }

    // ---- addresses ----

    async fn allocate_one(
        &self,
        req: &StepRequest,
        family: Family,
    ) -> Result<AddressRecord, IpamError> {
        let tenant = req.tenant_id.as_str();
        let (pool_name, pd) = match family {
            Family::Ipv4 => (opt_str(req, "/ipv4_pool"), None),
            Family::Ipv6 => {
                let pd = opt_i64(req, "/ipv6_pd_size")
                    .and_then(|v| u8::try_from(v).ok())
                    .unwrap_or(DEFAULT_PD_SIZE);
                (opt_str(req, "/ipv6_pool"), Some(pd))
            }
        };
        let pool = ipam::choose_pool(&self.db, tenant, family, pool_name.as_deref(), pd).await?;
        let key = allocation_key(req, family);
        let sub = subscriber_id(req).unwrap_or_default();
        ipam::allocate(
            &self.db,
            &ipam::AllocateRequest {
                pool: &pool,
                subscriber_id: &sub,
                key: &key,
                run_id: &run(req),
                metadata: json!({ "pool": pool.name }),
            },
            self.now(),
        )
        .await
    }

    async fn allocate(&self, req: StepRequest) -> StepResult {
        subscriber_id(&req)?;
        let v4 = self.allocate_one(&req, Family::Ipv4).await?;
        let mut out = json!({
            "ipv4_address": v4.address,
            "ipv4_record_id": v4.id,
        });
        if flag(&req, "/enable_ipv6") {
            match self.allocate_one(&req, Family::Ipv6).await {
                Ok(v6) => {
                    out["ipv6_prefix"] = json!(v6.address);
                    out["ipv6_record_id"] = json!(v6.id);
                }
                Err(e) => {
                    // Applied in part: the IPv4 address is held. The error
                    // is `uncertain`, so a step that gives up is compensated
                    // (ipam.release, by this step's allocation keys) instead
                    // of leaking the address.
                    let e = StepError::from(e);
                    let message = format!(
                        "IPv4 {} allocated, IPv6 failed ({}): {e}",
                        v4.address,
                        e.kind()
                    );
                    return Err(if e.is_retryable() {
                        StepError::retryable("uncertain", message)
                    } else {
                        StepError::fatal("uncertain", message)
                    });
                }
            }
        }
        Ok(output(out))
    }

    /// Releases what this step allocated (found by its allocation keys).
    async fn release_allocation(&self, req: StepRequest) -> StepResult {
        for family in Family::ALL {
            if let Some(rec) = ipam::by_allocation_key(
                &self.db,
                req.tenant_id.as_str(),
                &allocation_key(&req, family),
            )
            .await?
            {
                ipam::release(
                    &self.db,
                    req.tenant_id.as_str(),
                    rec.id,
                    &run(&req),
                    self.now(),
                )
                .await?;
            }
        }
        Ok(StepOutput::new())
    }

    /// Releases every address the subscriber holds.
    async fn release_subscriber(&self, req: StepRequest) -> StepResult {
        let tenant = req.tenant_id.as_str();
        let records = lifecycle::for_subscriber(&self.db, tenant, &subscriber_id(&req)?).await?;
        let mut released = Vec::new();
        for r in records.into_iter().filter(|r| r.state.holds_address()) {
            let r = ipam::release(&self.db, tenant, r.id, &run(&req), self.now()).await?;
            released.push(r.address);
        }
        Ok(output(json!({ "released": released })))
    }

    /// The subscriber's records of `family` (all when `None`) in the run's
    /// tenant; with `this_run`, only those this run allocated (their
    /// allocation key starts with the run id).
    async fn records(
        &self,
        req: &StepRequest,
        family: Option<Family>,
        this_run: bool,
    ) -> Result<Vec<AddressRecord>, StepError> {
        let tenant = req.tenant_id.as_str();
        let records = lifecycle::for_subscriber(&self.db, tenant, &subscriber_id(req)?).await?;
        let prefix = format!("{}:", req.run_id);
        Ok(records
            .into_iter()
            .filter(|r| family.is_none_or(|f| f == r.family))
            .filter(|r| {
                !this_run
                    || r.allocation_key
                        .as_deref()
                        .is_some_and(|k| k.starts_with(&prefix))
            })
            .collect())
    }

    /// Moves the subscriber's records of `family` (all when `None`; only
    /// this run's allocations with `this_run`) that are in one of `from` to
    /// `to`. Returns the records moved.
    async fn move_records(
        &self,
        req: &StepRequest,
        (family, this_run): (Option<Family>, bool),
        from: &[AddressState],
        to: AddressState,
    ) -> Result<Vec<AddressRecord>, StepError> {
        let tenant = req.tenant_id.as_str();
        let records = self.records(req, family, this_run).await?;
        let mut moved = Vec::new();
        for r in records.into_iter().filter(|r| from.contains(&r.state)) {
            moved.push(
                lifecycle::transition(&self.db, tenant, r.id, to, &run(req), self.now()).await?,
            );
        }
        Ok(moved)
    }

    /// Activates what this run allocated (its allocation step ran earlier
    /// in the same run).
    async fn activate(&self, req: StepRequest, family: Family) -> StepResult {
        use AddressState::*;
        let moved = self
            .move_records(&req, (Some(family), true), &[Allocated], Active)
            .await?;
        if moved.is_empty() {
            let active = self
                .records(&req, Some(family), true)
                .await?
                .into_iter()
                .any(|r| r.state == Active);
            if !active {
                return match family {
                    // No prefix was asked for: nothing to do.
                    Family::Ipv6 => Ok(output(json!({ "ipv6_lifecycle": "skipped" }))),
                    Family::Ipv4 => Err(StepError::fatal(
                        "no_address",
                        "the subscriber has no allocated IPv4 address to activate",
                    )),
                };
            }
        }
        Ok(output(
            json!({ format!("{}_lifecycle", family.lower()): Active }),
        ))
    }

    /// Forward (deprovisioning): revokes the subscriber's addresses. As the
    /// undo of an activation: only what this run allocated, so an undo
    /// whose activation never ran leaves another run's addresses alone.
    async fn revoke(&self, req: StepRequest, family: Family) -> StepResult {
        use AddressState::*;
        let this_run = req.kind == CallKind::Compensate;
        self.move_records(
            &req,
            (Some(family), this_run),
            &[Allocated, Active, Suspended],
            Revoking,
        )
        .await?;
        Ok(output(
            json!({ format!("{}_lifecycle", family.lower()): Revoking }),
        ))
    }

    async fn suspend_addresses(&self, req: StepRequest) -> StepResult {
        use AddressState::*;
        let moved = self
            .move_records(&req, (None, false), &[Active], Suspended)
            .await?;
        Ok(output(json!({ "suspended_addresses": moved.len() })))
    }

    async fn resume_addresses(&self, req: StepRequest) -> StepResult {
        use AddressState::*;
        let moved = self
            .move_records(&req, (None, false), &[Suspended], Active)
            .await?;
        Ok(output(json!({ "resumed_addresses": moved.len() })))
    }

    // ---- external systems ----

    async fn onu_activate(&self, req: StepRequest) -> StepResult {
        let (download_kbps, upload_kbps, service_vlan) = profile_numbers(&req)?;
        let act = OnuActivation {
            subscriber_id: subscriber_id(&req)?,
            plan: req.context_str("/plan")?.to_owned(),
            download_kbps,
            upload_kbps,
            service_vlan,
        };
        let serial = req.context_str("/onu_serial")?;
        self.deps
            .onu
            .activate(req.tenant_id.as_str(), &req.idempotency_key, serial, &act)
            .await?;
        Ok(output(json!({ "onu_state": "ACTIVE" })))
    }

    /// As the undo of `onu.activate`: deactivates only the activation that
    /// step's request made (`created_by`), also when its outcome is
    /// unknown. As a forward step (deprovisioning): deactivates the ONU if
    /// it is active for this subscriber.
    async fn onu_deactivate(&self, req: StepRequest) -> StepResult {
        let serial = req.context_str("/onu_serial")?;
        let (created_by, sub) = (forward_key(&req), subscriber_id(&req)?);
        let changed = self
            .deps
            .onu
            .deactivate(
                req.tenant_id.as_str(),
                &req.idempotency_key,
                serial,
                owner(&req, &created_by, &sub),
            )
            .await?;
        Ok(output(
            json!({ "onu_state": "INACTIVE", "onu_changed": changed }),
        ))
    }

    async fn cpe_configure(&self, req: StepRequest) -> StepResult {
        let sub = subscriber_id(&req)?;
        let cfg = CpeConfig {
            pppoe_username: opt_str(&req, "/radius/username").unwrap_or_else(|| sub.clone()),
            subscriber_id: sub,
            plan: req.context_str("/plan")?.to_owned(),
            ipv4_address: opt_str(&req, "/ipv4_address"),
            ipv6_prefix: opt_str(&req, "/ipv6_prefix"),
        };
        let serial = req.context_str("/cpe_serial")?;
        self.deps
            .cpe
            .configure(req.tenant_id.as_str(), &req.idempotency_key, serial, &cfg)
            .await?;
        Ok(output(json!({ "cpe_configured": true })))
    }

    /// Like `onu_deactivate`: as an undo, removes only the configuration
    /// `cpe.configure`'s request made; forward, the subscriber's.
    async fn cpe_unconfigure(&self, req: StepRequest) -> StepResult {
        let serial = req.context_str("/cpe_serial")?;
        let (created_by, sub) = (forward_key(&req), subscriber_id(&req)?);
        let changed = self
            .deps
            .cpe
            .unconfigure(
                req.tenant_id.as_str(),
                &req.idempotency_key,
                serial,
                owner(&req, &created_by, &sub),
            )
            .await?;
        Ok(output(
            json!({ "cpe_configured": false, "cpe_changed": changed }),
        ))
    }

    async fn billing_create(&self, req: StepRequest) -> StepResult {
        let svc = NewService {
            subscriber_id: subscriber_id(&req)?,
            customer_id: req.context_str("/customer/id")?.to_owned(),
            plan: req.context_str("/plan")?.to_owned(),
        };
        let created = self
            .deps
            .billing
            .create_service(req.tenant_id.as_str(), &req.idempotency_key, &svc)
            .await?;
        Ok(output(
            json!({ "billing_service_id": created.service_id, "billing_state": created.state }),
        ))
    }

    /// The undo of `billing_create`: deletes only the service that step's
    /// request created (its idempotency key is `<run>:<step>`), never one
    /// the subscriber had before, also when the create's outcome is unknown.
    async fn billing_delete(&self, req: StepRequest) -> StepResult {
        let created_by = forward_key(&req);
        self.deps
            .billing
            .delete_service(
                req.tenant_id.as_str(),
                &req.idempotency_key,
                &subscriber_id(&req)?,
                &created_by,
            )
            .await?;
        Ok(StepOutput::new())
    }

    async fn billing_suspend(&self, req: StepRequest) -> StepResult {
        let svc = self
            .deps
            .billing
            .suspend(
                req.tenant_id.as_str(),
                &req.idempotency_key,
                &subscriber_id(&req)?,
            )
            .await?;
        Ok(output(json!({ "billing_state": svc.state })))
    }

    async fn billing_resume(&self, req: StepRequest) -> StepResult {
        let svc = self
            .deps
            .billing
            .resume(
                req.tenant_id.as_str(),
                &req.idempotency_key,
                &subscriber_id(&req)?,
            )
            .await?;
        Ok(output(json!({ "billing_state": svc.state })))
    }
}

/// Every handler name this module registers.
pub const HANDLERS: [&str; 28] = [
    "customer.create",
    "customer.delete",
    "subscriber.create",
    "subscriber.delete",
    "subscriber.verify",
    "subscriber.mark_suspended",
    "subscriber.mark_active",
    "subscriber.archive",
    "network_profile.create",
    "network_profile.delete",
    "network_profile.archive",
    "ipam.allocate",
    "ipam.release",
    "ipam.release_subscriber",
    "lifecycle.activate_ipv4",
    "lifecycle.activate_ipv6",
    "lifecycle.revoke_ipv4",
    "lifecycle.revoke_ipv6",
    "lifecycle.suspend",
    "lifecycle.resume",
    "onu.activate",
    "onu.deactivate",
    "cpe.configure",
    "cpe.unconfigure",
    "billing.create_service",
    "billing.delete_service",
    "billing.suspend",
    "billing.resume",
];

/// Registers the ISP handlers.
pub fn register(registry: &mut Registry, db: DomainDb, deps: DomainDeps) {
    let isp = Arc::new(Isp { db, deps });
    macro_rules! reg {
        ($name:literal, |$i:ident, $r:ident| $call:expr) => {{
            let isp = isp.clone();
            registry.register_fn($name, move |$r: StepRequest| {
                let $i = isp.clone();
                async move { $call.await }
            });
        }};
    }
    reg!("customer.create", |i, r| i.create_customer(r));
    reg!("customer.delete", |i, r| i.delete_customer(r));
    reg!("subscriber.create", |i, r| i.create_subscriber(r));
    reg!("subscriber.delete", |i, r| i.delete_subscriber(r));
    reg!("subscriber.verify", |i, r| i.verify(r));
    reg!("subscriber.mark_suspended", |i, r| i
        .set_state(r, SubscriberState::Suspended));
    reg!("subscriber.mark_active", |i, r| i
        .set_state(r, SubscriberState::Active));
    reg!("subscriber.archive", |i, r| i.archive_subscriber(r));
    reg!("network_profile.create", |i, r| i.create_profile(r));
    reg!("network_profile.delete", |i, r| i.delete_profile(r));
    reg!("network_profile.archive", |i, r| i.archive_profile(r));
    reg!("ipam.allocate", |i, r| i.allocate(r));
    reg!("ipam.release", |i, r| i.release_allocation(r));
    reg!("ipam.release_subscriber", |i, r| i.release_subscriber(r));
    reg!("lifecycle.activate_ipv4", |i, r| i
        .activate(r, Family::Ipv4));
    reg!("lifecycle.activate_ipv6", |i, r| i
        .activate(r, Family::Ipv6));
    reg!("lifecycle.revoke_ipv4", |i, r| i.revoke(r, Family::Ipv4));
    reg!("lifecycle.revoke_ipv6", |i, r| i.revoke(r, Family::Ipv6));
    reg!("lifecycle.suspend", |i, r| i.suspend_addresses(r));
    reg!("lifecycle.resume", |i, r| i.resume_addresses(r));
    reg!("onu.activate", |i, r| i.onu_activate(r));
    reg!("onu.deactivate", |i, r| i.onu_deactivate(r));
    reg!("cpe.configure", |i, r| i.cpe_configure(r));
    reg!("cpe.unconfigure", |i, r| i.cpe_unconfigure(r));
    reg!("billing.create_service", |i, r| i.billing_create(r));
    reg!("billing.delete_service", |i, r| i.billing_delete(r));
    reg!("billing.suspend", |i, r| i.billing_suspend(r));
    reg!("billing.resume", |i, r| i.billing_resume(r));
}
