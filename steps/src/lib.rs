//! # sagaflow-steps
//!
//! The step handlers sagaflow ships and the adapters they call. Each handler
//! implements the engine's [`StepHandler`](sagaflow_engine::handler::StepHandler)
//! and is idempotent on the step's idempotency key, because the engine runs
//! every step at least once.
//!
//! - [`lifecycle`]: the address lifecycle (states, transition table, records);
//! - [`ipam`]: address pools and race-free allocation;
//! - [`subscriber`]: customers, subscribers, network profiles;
//! - [`adapters`]: ONU/OLT, CPE (TR-069 ACS) and billing over HTTP;
//! - [`sim`]: simulators of those three systems;
//! - [`isp`]: the provisioning handlers, with their compensations;
//! - [`maintenance`]: the maintenance jobs' handlers (cleanup, metrics,
//!   capacity checks, reservation expiry);
//! - [`notify`]: notifications, to a webhook or the log;
//! - [`setup`]: domain configuration and start-up.
//!
//! [`register`] puts the handlers into a registry under the names workflow
//! files use.

pub mod adapters;
pub mod db;
pub mod ipam;
pub mod isp;
pub mod ledger;
pub mod lifecycle;
pub mod maintenance;
pub mod notify;
pub mod radius;
pub mod setup;
pub mod sim;
pub mod subscriber;

use sagaflow_engine::handler::Registry;

pub use db::DomainDb;
pub use isp::DomainDeps;
pub use setup::{DomainConfig, DomainRuntime};

/// What the handlers need from the process that runs them.
#[derive(Debug, Clone, Default)]
pub struct Deps {
    /// The engine's PostgreSQL pool, when the engine runs on PostgreSQL.
    pub postgres: Option<sqlx::PgPool>,
    /// The SQLite store's writer pool, when the engine runs on SQLite.
    pub sqlite: Option<sqlx::SqlitePool>,
    /// The `[radius]` configuration.
    pub radius: radius::RadiusConfig,
    /// The ISP domain's adapters; without them the ISP handlers are not
    /// registered.
    pub domain: Option<DomainDeps>,
}

impl Deps {
    /// The database of the domain tables: the engine's own.
    pub fn domain_db(&self) -> Option<DomainDb> {
        match (&self.postgres, &self.sqlite) {
            (Some(pg), _) => Some(DomainDb::Postgres(pg.clone())),
            (None, Some(lite)) => Some(DomainDb::Sqlite(lite.clone())),
            (None, None) => None,
        }
    }
}

/// Registers every handler whose dependencies are available.
pub fn register(registry: &mut Registry, deps: &Deps) {
    if let Some(pool) = &deps.postgres {
        ledger::register(registry, pool.clone());
    }
    if let (Some(db), Some(domain)) = (deps.domain_db(), &deps.domain) {
        isp::register(registry, db.clone(), domain.clone());
        maintenance::register(registry, db, domain.clone());
    }
    radius::register(registry, deps);
}
