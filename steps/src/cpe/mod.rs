//! The CPE, configured through the TR-069 ACS (the ACS pushes the
//! subscriber's parameters to the router at its next inform). `client.rs`
//! holds the adapter (trait and HTTP client), `handlers.rs` the step handlers.

mod client;
mod handlers;

pub use client::*;
