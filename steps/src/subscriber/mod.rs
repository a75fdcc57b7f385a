//! The provisioning system's own view of its customers, their subscribers
//! (one broadband line each) and the subscribers' network profiles. A
//! deprovisioned subscriber and its profile are archived, not deleted; a
//! failed provisioning deletes what it created.
//!
//! `model.rs` holds the types, `repo.rs` the SQL, `handlers.rs` the
//! `customer.*`, `subscriber.*` and `network_profile.*` step handlers.

mod handlers;
mod model;
pub mod repo;

pub use model::*;
