//! The maintenance jobs: handlers of the `lifecycle_cleanup`,
//! `lifecycle_metrics`, `capacity_check` and `reservation_expiry` workflows,
//! which the default schedules start.
//!
//! | handler | does |
//! |---|---|
//! | `maintenance.report_leaks` | lists ALLOCATED records older than `allocated_stale_hours` (leaks) |
//! | `maintenance.lifecycle_cleanup` | purges old REVOKED records in batches, counts leaks, finishes stuck REVOKING records |
//! | `maintenance.lifecycle_metrics` | record counts and pool use → a stored snapshot (the gauges are `gauges.rs`'s) |
//! | `maintenance.capacity_check` | pool levels against thresholds; a notification per crossing |
//! | `maintenance.reservation_expiry` | expired reservations released, audited, their owners notified |
//! | `maintenance.run_retention` | finished runs and their events, fires, snapshots, audit rows and progress past their ages deleted in batches |
//!
//! Every job works on the run's tenant. Ages, thresholds and the batch size
//! come from [`MaintenanceConfig`] (`[domain.maintenance]`). The handlers
//! hold no SQL: they call the lifecycle, IPAM and progress repositories.
//!
//! `gauges.rs` exports the record and pool gauges from the database at
//! every gauge refresh. `model.rs` holds the configuration, error and counts, `repo.rs` the SQL
//! of the stored progress and of the retention deletes in the maintenance
//! tables, `handlers.rs` the step handlers, `retention.rs` the retention
//! job (the runs and fires it deletes through the engine's store).

pub mod gauges;
mod handlers;
mod model;
pub mod repo;
mod retention;

pub(crate) use handlers::Job;
pub use handlers::register;
pub use model::*;
pub use retention::{RetentionConfig, RetentionCounts, RunRetentionRule, TenantRunAges};
