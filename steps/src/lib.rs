//! # sagaflow-steps
//!
//! The step handlers sagaflow ships and the adapters they call. Each handler
//! implements the engine's [`StepHandler`](sagaflow_engine::handler::StepHandler)
//! and is idempotent on the step's idempotency key, because the engine runs
//! every step at least once.
//!
//! - [`handlers`]: the one table of every handler ([`HANDLERS`]: name,
//!   domain, function), from which registration is done;
//! - [`deps`]: what the ISP handlers need ([`DomainDeps`]); `context`: how
//!   they read a step's request;
//! - one folder per domain, each with its types (`model.rs`), SQL
//!   (`repo.rs`) or external client (`client.rs`), and step handlers
//!   (`handlers.rs`): [`subscriber`] (customers, subscribers, network
//!   profiles), [`ipam`] (address pools and race-free allocation),
//!   [`lifecycle`] (the address lifecycle), [`onu`] (ONU/OLT), [`cpe`]
//!   (CPE through the TR-069 ACS), [`billing`], [`radius`] and
//!   [`maintenance`] (cleanup, metrics, capacity checks, reservation expiry);
//! - [`adapters`]: what the ONU, CPE and billing clients share (errors,
//!   endpoints, undo ownership, JSON over HTTP);
//! - [`sim`]: simulators of those three systems;
//! - [`notify`]: notifications, to a webhook or the log;
//! - [`setup`]: domain configuration and start-up;
//! - [`migrations`]: the domain's tables, applied after the engine's;
//! - `ledger` (feature `test-ledger`, tests only): handlers whose effect is
//!   a row in a ledger table, to verify the engine end to end.
//!
//! [`register`] puts the handlers into a registry under the names workflow
//! files use.

pub mod adapters;
pub mod billing;
mod context;
pub mod cpe;
pub mod db;
pub mod deps;
pub mod handlers;
pub mod ipam;
#[cfg(feature = "test-ledger")]
pub mod ledger;
pub mod lifecycle;
pub mod maintenance;
pub mod migrations;
pub mod notify;
pub mod onu;
pub mod radius;
pub mod setup;
pub mod sim;
pub mod subscriber;

use sagaflow_engine::handler::Registry;

pub use db::DomainDb;
pub use deps::DomainDeps;
pub use handlers::HANDLERS;
pub use migrations::test_support;
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
    /// The engine's store, which `run_retention` deletes finished runs and
    /// schedule fires through.
    pub runs: Option<std::sync::Arc<dyn sagaflow_engine::store::RetentionStore>>,
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
    #[cfg(feature = "test-ledger")]
    if let Some(pool) = &deps.postgres {
        ledger::register(registry, pool.clone());
    }
    if let (Some(db), Some(domain)) = (deps.domain_db(), &deps.domain) {
        handlers::register_isp(registry, db.clone(), domain.clone());
        maintenance::register(registry, db, domain.clone(), deps.runs.clone());
    }
    radius::register(registry, deps);
}
