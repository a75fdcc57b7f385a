//! The one list of every step handler sagaflow ships: [`HANDLERS`] gives
//! each handler's name (as workflow files use it), its domain and the
//! function that runs it, and every registration reads it. The handlers
//! themselves are in their domain's `handlers.rs`.
//!
//! The ISP handlers (subscriber, IPAM, lifecycle, ONU, CPE, billing)
//! provision, suspend, reactivate and deprovision a broadband subscriber,
//! each step with its compensation. Every handler is idempotent on its key:
//! database effects check the state they move from, external calls carry
//! the idempotency key.

use std::sync::Arc;

use futures::future::BoxFuture;
use sagaflow_engine::handler::{Registry, StepRequest};

use crate::context::StepResult;
use crate::db::DomainDb;
use crate::deps::{DomainDeps, Isp};
use crate::lifecycle::Family;
use crate::maintenance::Job;
use crate::radius::Op;
use crate::subscriber::SubscriberState;

/// The domain a handler belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// Customers, subscribers and network profiles.
    Subscriber,
    Ipam,
    Lifecycle,
    Onu,
    Cpe,
    Billing,
    Radius,
    Maintenance,
    /// The effect ledger that verifies the engine's promise end to end
    /// (its handlers exist with the `test-ledger` feature only).
    Ledger,
}

/// An ISP handler: a method of [`Isp`].
pub(crate) type IspFn = fn(Arc<Isp>, StepRequest) -> BoxFuture<'static, StepResult>;

/// How a handler runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Run {
    Isp(IspFn),
    Maintenance(Job),
    Radius(Op),
    #[cfg(feature = "test-ledger")]
    Ledger,
}

/// One step handler: its name, its domain and how it runs.
#[derive(Debug, Clone, Copy)]
pub struct Handler {
    pub name: &'static str,
    pub domain: Domain,
    pub(crate) run: Run,
}

const fn h(name: &'static str, domain: Domain, run: Run) -> Handler {
    Handler { name, domain, run }
}

/// An ISP handler calling a method of [`Isp`].
macro_rules! isp {
    (|$i:ident, $r:ident| $call:expr) => {
        Run::Isp(|$i, $r| Box::pin(async move { $call.await }))
    };
}

use Domain::*;

/// Every step handler.
pub const HANDLERS: &[Handler] = &[
    h(
        "customer.create",
        Subscriber,
        isp!(|i, r| i.create_customer(r)),
    ),
    h(
        "customer.delete",
        Subscriber,
        isp!(|i, r| i.delete_customer(r)),
    ),
    h(
        "subscriber.create",
        Subscriber,
        isp!(|i, r| i.create_subscriber(r)),
    ),
    h(
        "subscriber.delete",
        Subscriber,
        isp!(|i, r| i.delete_subscriber(r)),
    ),
    h("subscriber.verify", Subscriber, isp!(|i, r| i.verify(r))),
    h(
        "subscriber.mark_suspended",
        Subscriber,
        isp!(|i, r| i.set_state(r, SubscriberState::Suspended)),
    ),
    h(
        "subscriber.mark_active",
        Subscriber,
        isp!(|i, r| i.set_state(r, SubscriberState::Active)),
    ),
    h(
        "subscriber.archive",
        Subscriber,
        isp!(|i, r| i.archive_subscriber(r)),
    ),
    h(
        "network_profile.create",
        Subscriber,
        isp!(|i, r| i.create_profile(r)),
    ),
    h(
        "network_profile.delete",
        Subscriber,
        isp!(|i, r| i.delete_profile(r)),
    ),
    h(
        "network_profile.archive",
        Subscriber,
        isp!(|i, r| i.archive_profile(r)),
    ),
    h("ipam.allocate", Ipam, isp!(|i, r| i.allocate(r))),
    h("ipam.release", Ipam, isp!(|i, r| i.release_allocation(r))),
    h(
        "ipam.release_subscriber",
        Ipam,
        isp!(|i, r| i.release_subscriber(r)),
    ),
    h(
        "lifecycle.activate_ipv4",
        Lifecycle,
        isp!(|i, r| i.activate(r, Family::Ipv4)),
    ),
    h(
        "lifecycle.activate_ipv6",
        Lifecycle,
        isp!(|i, r| i.activate(r, Family::Ipv6)),
    ),
    h(
        "lifecycle.revoke_ipv4",
        Lifecycle,
        isp!(|i, r| i.revoke(r, Family::Ipv4)),
    ),
    h(
        "lifecycle.revoke_ipv6",
        Lifecycle,
        isp!(|i, r| i.revoke(r, Family::Ipv6)),
    ),
    h(
        "lifecycle.suspend",
        Lifecycle,
        isp!(|i, r| i.suspend_addresses(r)),
    ),
    h(
        "lifecycle.resume",
        Lifecycle,
        isp!(|i, r| i.resume_addresses(r)),
    ),
    h("onu.activate", Onu, isp!(|i, r| i.onu_activate(r))),
    h("onu.await_online", Onu, isp!(|i, r| i.onu_await_online(r))),
    h("onu.deactivate", Onu, isp!(|i, r| i.onu_deactivate(r))),
    h("cpe.configure", Cpe, isp!(|i, r| i.cpe_configure(r))),
    h("cpe.unconfigure", Cpe, isp!(|i, r| i.cpe_unconfigure(r))),
    h(
        "billing.create_service",
        Billing,
        isp!(|i, r| i.billing_create(r)),
    ),
    h(
        "billing.delete_service",
        Billing,
        isp!(|i, r| i.billing_delete(r)),
    ),
    h(
        "billing.suspend",
        Billing,
        isp!(|i, r| i.billing_suspend(r)),
    ),
    h("billing.resume", Billing, isp!(|i, r| i.billing_resume(r))),
    h(
        "radius.create_account",
        Radius,
        Run::Radius(Op::CreateAccount),
    ),
    h(
        "radius.delete_account",
        Radius,
        Run::Radius(Op::DeleteAccount),
    ),
    h("radius.suspend", Radius, Run::Radius(Op::Suspend)),
    h("radius.resume", Radius, Run::Radius(Op::Resume)),
    h("radius.coa", Radius, Run::Radius(Op::Coa)),
    h("radius.disconnect", Radius, Run::Radius(Op::Disconnect)),
    h(
        "maintenance.report_leaks",
        Maintenance,
        Run::Maintenance(Job::ReportLeaks),
    ),
    h(
        "maintenance.lifecycle_cleanup",
        Maintenance,
        Run::Maintenance(Job::Cleanup),
    ),
    h(
        "maintenance.lifecycle_metrics",
        Maintenance,
        Run::Maintenance(Job::Metrics),
    ),
    h(
        "maintenance.capacity_check",
        Maintenance,
        Run::Maintenance(Job::Capacity),
    ),
    h(
        "maintenance.reservation_expiry",
        Maintenance,
        Run::Maintenance(Job::Reservations),
    ),
    h(
        "maintenance.run_retention",
        Maintenance,
        Run::Maintenance(Job::Retention),
    ),
    #[cfg(feature = "test-ledger")]
    h("ledger.apply", Ledger, Run::Ledger),
    #[cfg(feature = "test-ledger")]
    h("ledger.revert", Ledger, Run::Ledger),
];

/// The names of the handlers of `domain`, in table order.
pub fn names(domain: Domain) -> impl Iterator<Item = &'static str> {
    HANDLERS
        .iter()
        .filter(move |h| h.domain == domain)
        .map(|h| h.name)
}

/// Registers the ISP handlers (subscriber, IPAM, lifecycle, ONU, CPE,
/// billing).
pub(crate) fn register_isp(registry: &mut Registry, db: DomainDb, deps: DomainDeps) {
    let isp = Arc::new(Isp { db, deps });
    for handler in HANDLERS {
        if let Run::Isp(f) = handler.run {
            let isp = isp.clone();
            registry.register_fn(handler.name, move |r: StepRequest| f(isp.clone(), r));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_handler_name_is_listed_once_under_its_domain_prefix() {
        let names: BTreeSet<_> = HANDLERS.iter().map(|h| h.name).collect();
        assert_eq!(names.len(), HANDLERS.len(), "a name is listed twice");
        for h in HANDLERS {
            let prefix = h.name.split('.').next().unwrap_or_default();
            let expected = match prefix {
                "customer" | "subscriber" | "network_profile" => Subscriber,
                "ipam" => Ipam,
                "lifecycle" => Lifecycle,
                "onu" => Onu,
                "cpe" => Cpe,
                "billing" => Billing,
                "radius" => Radius,
                "maintenance" => Maintenance,
                "ledger" => Ledger,
                other => panic!("{}: unknown prefix {other}", h.name),
            };
            assert_eq!(h.domain, expected, "{}", h.name);
        }
    }
}
