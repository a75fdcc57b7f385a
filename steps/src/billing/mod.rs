//! Billing: the subscriber's recurring service. `client.rs` holds the
//! adapter (trait and HTTP client), `handlers.rs` the step handlers.

mod client;
mod handlers;

pub use client::*;
