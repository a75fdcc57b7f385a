//! The address lifecycle: one contract for IPv4 addresses and IPv6 delegated
//! prefixes.
//!
//! ```text
//! PENDING ──► ALLOCATED ──► ACTIVE ⇄ SUSPENDED
//!                 │            │        │
//!                 └──────► REVOKING ◄───┘ ──► REVOKED (terminal)
//! every state but REVOKED ──► FAILED ──► PENDING (retry)
//! ```
//!
//! [`AddressState::check`] is the transition table, pure and in one place;
//! [`repo`] stores the records. A record in PENDING, ALLOCATED, ACTIVE,
//! SUSPENDED or REVOKING holds its address: no other record of the pool may
//! hold the same one.
//!
//! `model.rs` holds the states and the table, `repo.rs` the SQL,
//! `handlers.rs` the `lifecycle.*` step handlers.

mod handlers;
mod model;
pub mod repo;

pub use model::*;
