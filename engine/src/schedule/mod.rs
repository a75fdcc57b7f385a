//! Cron schedules: workflows started on a cron rhythm, exactly once per fire
//! however many engine replicas run.
//!
//! - [`cron`]: five-field expressions in an IANA zone, with the DST rules.
//! - [`plan`]: what a schedule does at a given moment (pure: which fires
//!   start, are skipped, missed or buffered, under its overlap and catch-up
//!   policies).
//! - [`scheduler`]: the component each replica runs; it finds due schedules
//!   and fires them. A fire is claimed by inserting `(schedule, scheduled
//!   time)` into `schedule_fires` (unique) in the same transaction that
//!   creates the run and advances the schedule (fenced by its revision), so
//!   no leader election is needed.
//! - [`service`]: the engine API (`Engine::create_schedule` and friends) and
//!   seeding of default schedules.
//! - [`seeds`]: the default schedules' file (`workflows/schedules.toml`),
//!   parsed and checked.
//! - [`model`]: the schedule, its policies and fire records.
//!
//! `docs/schedules.md` describes the behaviour for operators.

pub mod cron;
pub mod model;
pub mod plan;
pub mod scheduler;
pub mod seeds;
mod service;

pub use cron::CronSpec;
pub use model::*;
pub use scheduler::{SchedulerHandle, SchedulerOptions, TickReport};
pub use seeds::{SEED_FILE, SeedFile, SeedFileError, SeedSchedule};
pub use service::{NewSchedule, SeedReport};
