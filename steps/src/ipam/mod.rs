//! IPAM, built in: pools of IPv4 addresses and IPv6 delegated prefixes,
//! configured in [`PoolConfig`]s and stored in the database.
//!
//! An address is identified by its ordinal in the pool, so allocation never
//! enumerates a pool: the n-th IPv4 host or the n-th /56 of a /40 is computed
//! from n ([`PoolRange::nth`]). Allocation ([`repo::allocate`]) takes the
//! lowest free ordinal under a lock on the pool row (PostgreSQL) or in the
//! single writer's transaction (SQLite), and a unique index on held records
//! makes a duplicate impossible whatever happens.
//!
//! Who holds an allocation is a backend chosen per tenant
//! ([`backend::IpamBackend`]): the database (`builtin`) or NetBox
//! (`netbox/`); the address lifecycle stays in sagaflow either way.
//!
//! `model.rs` holds the types, `repo.rs` the SQL, `backend.rs` the trait and
//! the choice of backend, `netbox/` the NetBox backend, `handlers.rs` the
//! `ipam.*` step handlers.

pub mod backend;
pub mod forecast;
mod handlers;
mod model;
pub mod netbox;
pub mod pools;
pub mod repo;
pub mod reservations;

pub use backend::{BackendKind, Builtin, IpamBackend, IpamBackends, IpamConfig};
pub use model::*;
pub use netbox::{NetBox, NetBoxConfig};
