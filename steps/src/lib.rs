//! # sagaflow-steps
//!
//! The step handlers sagaflow ships and the adapters they call. Each handler
//! implements the engine's [`StepHandler`](sagaflow_engine::handler::StepHandler)
//! and is idempotent on the step's idempotency key, because the engine runs
//! every step at least once.
//!
//! [`register`] puts them into a registry under the names workflow files use.

pub mod ledger;
pub mod radius;

use sagaflow_engine::handler::Registry;

/// What the handlers need from the process that runs them.
#[derive(Debug, Clone, Default)]
pub struct Deps {
    /// The engine's PostgreSQL pool, when the engine runs on PostgreSQL.
    pub postgres: Option<sqlx::PgPool>,
    /// A pool on the engine's SQLite database, when the engine runs on SQLite.
    pub sqlite: Option<sqlx::SqlitePool>,
    /// The `[radius]` configuration.
    pub radius: radius::RadiusConfig,
}

/// Registers every handler whose dependencies are available.
pub fn register(registry: &mut Registry, deps: &Deps) {
    if let Some(pool) = &deps.postgres {
        ledger::register(registry, pool.clone());
    }
    radius::register(registry, deps);
}
